"""Reaching the process that writes a conversation's reply, from any process.

Each process has one channel on the layer; while it writes a conversation's reply, that
channel is in the conversation's control group. Stop and snapshot requests are sent to
the group, so they reach the writer wherever it runs; what they mean is the registry's
business (`generation.Registry.on_control`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer

from conversations import services

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ControlChannel:
    """This process's address for control requests, and the task that reads it."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._channel: str | None = None
        self._listener: asyncio.Task[None] | None = None

    async def _address(self) -> str:
        loop = asyncio.get_running_loop()
        if self._listener is None or self._listener.done() or self._listener.get_loop() is not loop:
            self._channel = await get_channel_layer().new_channel()
            self._listener = loop.create_task(self._listen(self._channel), name="control")
        assert self._channel is not None
        return self._channel

    async def join(self, conversation_public_id: UUID) -> None:
        channel = await self._address()
        await get_channel_layer().group_add(
            services.events.control_group(conversation_public_id), channel
        )

    async def leave(self, conversation_public_id: UUID) -> None:
        if self._channel is not None:
            await get_channel_layer().group_discard(
                services.events.control_group(conversation_public_id), self._channel
            )

    async def _listen(self, channel: str) -> None:
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A Redis hiccup must not end this process's control of its replies.
                logger.exception("Receiving control messages failed; retrying")
                await asyncio.sleep(1)
                continue
            try:
                await self._handle(message)
            except Exception:
                logger.exception("Control message %s failed", message.get("type"))

    def close(self) -> asyncio.Task[None] | None:
        """Stop listening; returns the listener task (cancelled) for the caller to await."""
        listener, self._listener, self._channel = self._listener, None, None
        if listener is not None:
            listener.cancel()
        return listener


async def request_stop(conversation_public_id: UUID) -> None:
    """Ask whichever process writes this conversation's reply to stop it."""
    await get_channel_layer().group_send(
        services.events.control_group(conversation_public_id),
        services.events.stop_request(conversation_public_id),
    )


async def request_snapshot(conversation_public_id: UUID, reply_to: str) -> None:
    """Ask the writing process to send `chat.snapshot` with the exact text to `reply_to`."""
    await get_channel_layer().group_send(
        services.events.control_group(conversation_public_id),
        {
            "type": "generation.snapshot",
            "conversation": str(conversation_public_id),
            "reply_to": reply_to,
        },
    )
