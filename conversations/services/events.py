"""Frames to the pages, sent after the transaction that caused them commits.

A service running under `call` queues its channel-layer messages in an outbox, and `call`
sends them once the service has returned (so after commit), in order, outside the
database thread; plain synchronous callers (views, the admin, commands) send on commit.
Also the names of the conversation's groups and the stop request every process obeys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from conversations import frames, layers
from conversations.models import Message

logger = logging.getLogger(__name__)


T = TypeVar("T")


def group_name(conversation_public_id: UUID | str) -> str:
    return f"conv.{UUID(str(conversation_public_id)).hex}"


async def broadcast(conversation_public_id: UUID | str, frame: dict[str, Any]) -> None:
    """Send one protocol frame to every socket of the conversation, in any process."""
    await send_to_group(group_name(conversation_public_id), frame)


async def send_to_group(group: str, frame: dict[str, Any]) -> None:
    """`broadcast` for a caller that already knows the group's name (once per token)."""
    await get_channel_layer().group_send(group, {"type": "chat.frame", "frame": frame})


def control_group(conversation_public_id: UUID | str) -> str:
    """The group of the process writing this conversation's reply: it takes stop and
    snapshot requests from any process (see `generation.Registry`)."""
    return f"ctl.{UUID(str(conversation_public_id)).hex}"


def stop_request(conversation_public_id: UUID | str) -> dict[str, Any]:
    """The control-group message that stops this conversation's reply, in any process."""
    return {"type": "generation.stop", "conversation": str(conversation_public_id)}


# A channel-layer message, or a function that builds it where it is sent: a `done` frame
# renders Markdown, which must not hold up the database thread every socket shares.
LayerMessage = dict[str, Any] | Callable[[], dict[str, Any]]

# Channel-layer messages queued by a service running under `call`: its caller sends them,
# in order, once the service has returned (so after its transaction committed).
_outbox: ContextVar[list[tuple[str, LayerMessage]] | None] = ContextVar("outbox", default=None)


def broadcast_on_commit(conversation_public_id: UUID, frame: dict[str, Any]) -> None:
    _group_send_on_commit(group_name(conversation_public_id), _chat_frame(frame))


def broadcast_done_on_commit(conversation_public_id: UUID, reply: Message) -> None:
    """`broadcast_on_commit` of the reply's `done` frame, built by the sender (see `call`)."""
    _group_send_on_commit(
        group_name(conversation_public_id), lambda: _chat_frame(frames.done(reply))
    )


def _chat_frame(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat.frame", "frame": frame}


def _group_send_on_commit(group: str, message: LayerMessage) -> None:
    def deliver() -> None:
        outbox = _outbox.get()
        if outbox is not None:
            outbox.append((group, message))
        else:
            # Called from plain synchronous code (a view, the admin, a command).
            async_to_sync(get_channel_layer().group_send)(group, _built(message))

    transaction.on_commit(deliver)


def _built(message: LayerMessage) -> dict[str, Any]:
    return message() if callable(message) else message


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service from async code: in the database thread, then send its frames.

    Never blocks the database thread on the event loop (which a broadcast from inside the
    thread would), keeps the frames in the order the service produced them, and builds the
    ones the service left to build (`LayerMessage`) here, in the event loop.
    """

    def run() -> tuple[T, list[tuple[str, LayerMessage]]]:
        outbox: list[tuple[str, LayerMessage]] = []
        token = _outbox.set(outbox)
        try:
            return function(*args, **kwargs), outbox
        finally:
            _outbox.reset(token)

    result, outbox = await database_sync_to_async(run)()
    layer = get_channel_layer()
    for group, deferred in outbox:
        message = _built(deferred)
        # The change is committed whatever happens to the layer: a frame lost in an outage
        # is made good by the pages' resync (seq gaps, a reply followed in silence).
        await layers.best_effort(partial(layer.group_send, group, message), message["type"])
    return result
