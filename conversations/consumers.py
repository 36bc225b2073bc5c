"""The conversation websocket: transport only. It authorises, parses, calls a turn action,
and relays the conversation group's frames; generations live in `generation.registry`."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from conversations import (
    control,
    frames,
    generation,
    languages,
    layers,
    lifecycle,
    protocol,
    services,
)
from conversations.generation import db
from conversations.services import ServiceError

logger = logging.getLogger(__name__)

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_FOUND = 4404
# The socket kept sending frames after it was told it sends too many.
CLOSE_TOO_MANY_FRAMES = 4429
# The channel layer stayed unreachable (Redis down for longer than layers.LAYER_PATIENCE):
# "try again later"; the page reconnects with backoff and resyncs from the database.
CLOSE_TRY_AGAIN = 1013
# A socket relaying a streaming reply that has heard nothing of it for this long checks
# the database: a `done` lost in a layer outage (or a dead owner) is then found there.
FOLLOW_SILENCE_SECONDS = 10.0
# How long a new socket retries getting its channel from the layer before it closes with
# CLOSE_TRY_AGAIN: under Daphne's websocket_connect_timeout (5 s) for the handshake.
NEW_CHANNEL_PATIENCE = 3.0
# How long a socket waits for the process owning a reply to send its exact text.
SNAPSHOT_WAIT_SECONDS = 1.0


# Messages read ahead of the one being handled, per consumer. Small: a socket whose client
# does not read stops taking frames from the channel layer soon, as with Channels' own loop
# (the layer's per-channel capacity then drops what a slow socket cannot take).
READ_AHEAD = 16

Receive = Callable[[], Awaitable[dict[str, Any]]]


async def dispatch_in_order(
    sources: list[Receive], dispatch: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """Handle the messages of several sources one at a time, in the order they arrive.

    What Channels' `await_many_dispatch` does, for less per message: it makes a new task
    and an `asyncio.wait` for every message, four event-loop callbacks a relayed frame;
    here one long-lived reader per source feeds one bounded queue, two callbacks a frame.
    A reader that fails hands its exception to the loop, which raises it.
    """
    inbox: asyncio.Queue[tuple[dict[str, Any] | None, BaseException | None]] = asyncio.Queue(
        READ_AHEAD
    )

    async def read(source: Receive) -> None:
        try:
            while True:
                await inbox.put((await source(), None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the loop below raises it
            await inbox.put((None, exc))

    readers = [asyncio.create_task(read(source)) for source in sources]
    try:
        while True:
            message, error = await inbox.get()
            if error is not None:
                raise error
            assert message is not None
            await dispatch(message)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


class FrameBudget:
    """A token bucket: `rate` frames a second on average, bursts of up to `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.updated = clock()
        # Frames refused since the last one let through.
        self.refused = 0

    def take(self) -> bool:
        if self.rate <= 0:
            return True  # CHAT_WS_FRAMES_PER_SECOND=0: no limit
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused = 0
            return True
        self.refused += 1
        return False


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    budget: FrameBudget | None = None
    # Set once the socket is being closed for flooding: frames still queued are dropped.
    _closing = False
    # While (message_id, seq): deltas of that reply up to seq are already in `state`.
    _seen: tuple[str, int] | None = None
    # Frames held back until the `state` of a reply streaming in another process is known.
    _held: list[dict[str, Any]] | None = None
    _fallback: dict[str, Any] | None = None
    _wait_task: asyncio.Task[None] | None = None
    # The streaming reply this socket relays, and when it last heard of it (`_follow`).
    _following: str | None = None
    _heard_at = 0.0
    _follow_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        # AsyncConsumer.__call__ with a leaner dispatch loop (see `dispatch_in_order`), and a
        # layer that may be down for a moment (Redis restarting).
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        # Messages this consumer posts to itself (timers), handled in turn with the rest.
        self._local: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sources: list[Receive] = [receive, self._local.get]
        try:
            # Before the handshake is answered, so within Daphne's 5 s for it (the pub/sub
            # layer subscribes the new channel in Redis); the page reconnects after 1013.
            self.channel_name = await layers.retrying(
                self.channel_layer.new_channel, "a socket", patience=NEW_CHANNEL_PATIENCE
            )
        except layers.LayerUnavailable:
            self.channel_name = ""  # `connect` closes with CLOSE_TRY_AGAIN
        else:
            sources.append(self._receive_from_layer)
        try:
            await dispatch_in_order(sources, self.dispatch)
        except StopConsumer:
            pass

    async def _receive_from_layer(self) -> dict[str, Any]:
        try:
            return await layers.retrying(
                functools.partial(self.channel_layer.receive, self.channel_name), "a socket"
            )
        except layers.LayerUnavailable:
            return {"type": "chat.layer_down"}

    async def chat_layer_down(self, event: dict[str, Any]) -> None:
        self._closing = True
        await self.close(code=CLOSE_TRY_AGAIN)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a close code can only travel on an open socket.
            await self.accept()
            await self.close(code=CLOSE_NOT_SIGNED_IN)
            return
        public_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await db(services.conversations.get_conversation)(user, public_id)
        if conversation is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.conversation = conversation
        self.budget = FrameBudget(settings.CHAT_WS_FRAMES_PER_SECOND, settings.CHAT_WS_FRAME_BURST)
        # Accepted first: Daphne drops a handshake the app has not answered within 5 s
        # (its websocket_connect_timeout), and joining may wait for Redis for longer; the
        # page waits for `state` meanwhile.
        await self.accept()
        # Join before the snapshot: every delta after it is queued for us, none is missed.
        group = services.events.group_name(conversation.public_id)
        try:
            if not self.channel_name:
                raise layers.LayerUnavailable("a socket")
            await layers.retrying(
                functools.partial(self.channel_layer.group_add, group, self.channel_name),
                "a socket",
            )
        except layers.LayerUnavailable:
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.group = group
        lifecycle.sockets.add(self)
        generation.registry.ensure_ticker()
        snapshot = generation.registry.local_snapshot(conversation.public_id)
        if snapshot is None:
            stored = await services.events.call(services.replies.stored_snapshot, conversation.pk)
            if stored is not None:
                # Written by another process: ask its owner for the exact text, and hold
                # the deltas that arrive meanwhile. Its last checkpoint is the fallback.
                self._held = []
                self._fallback = stored
                asked = await layers.best_effort(
                    functools.partial(
                        control.request_snapshot,
                        conversation.public_id,
                        self.channel_name,
                    ),
                    "a snapshot",
                )
                if asked:
                    self._wait_task = asyncio.create_task(self._snapshot_deadline())
                    return
                snapshot = stored
        await self._send_state(snapshot)

    async def disconnect(self, code: int) -> None:
        lifecycle.sockets.discard(self)
        for task in (self._wait_task, self._follow_task):
            if task is not None:
                task.cancel()
        if self.group is not None:
            await layers.best_effort(
                functools.partial(self.channel_layer.group_discard, self.group, self.channel_name),
                "a closing socket",
            )

    async def _send_state(self, snapshot: dict[str, Any] | None) -> None:
        if snapshot is not None:
            self._seen = (snapshot["message_id"], snapshot["seq"])
            self._follow(snapshot["message_id"])
        await self.send_json(frames.state(snapshot))
        held, self._held = self._held, None
        for frame in held or []:
            await self._relay(frame)
        if generation.registry.draining:
            await self.chat_restart({"final": False})

    async def _snapshot_deadline(self) -> None:
        await asyncio.sleep(SNAPSHOT_WAIT_SECONDS)
        self._local.put_nowait({"type": "chat.snapshot_timeout"})

    # --- the process restarts (lifecycle) ----------------------------------------------
    def restart_soon(self, *, final: bool) -> None:
        self._local.put_nowait({"type": "chat.restart", "final": final})

    async def chat_restart(self, event: dict[str, Any]) -> None:
        """Close with 1012 so the page reconnects elsewhere or later; while the drain lets a
        reply written here go on, its sockets stay to relay it to its end."""
        if self._closing:
            return
        writing_here = generation.registry.local_snapshot(self.conversation.public_id)
        if not event["final"] and writing_here is not None:
            return
        self._closing = True
        await self.close(code=lifecycle.CLOSE_SERVICE_RESTART)

    async def chat_snapshot(self, event: dict[str, Any]) -> None:
        if self._held is not None:
            await self._send_state(event["snapshot"])

    async def chat_snapshot_timeout(self, event: dict[str, Any]) -> None:
        if self._held is not None:
            # No owner answered (it died, or just finished): its checkpoint, then whatever
            # arrived meanwhile; a client that sees a gap resyncs.
            await self._send_state(self._fallback)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.group is None or self._closing:
            return
        # Refusals, and the error text a reply started here may store, in the page's language.
        with translation.override(languages.language_from_scope(self.scope)):
            await self._receive(text_data, bytes_data)

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        # Before anything else, so a flood costs neither parsing nor the database.
        if self.budget is not None and not self.budget.take():
            await self._refuse_flood(self.budget)
            return
        client_id = None
        try:
            value = protocol.decode(text_data, bytes_data, max_bytes=settings.CHAT_MAX_FRAME_BYTES)
            client_id = protocol.client_id_of(value)
            frame = protocol.parse(value)
            await self.dispatch_frame(frame)
        except (protocol.ProtocolError, ServiceError) as exc:
            # Echo the refused send's client_id: its page gives that text back to the person.
            await self.send_json(frames.error(exc.code, exc.message, client_id=client_id))
            if exc.code == "server_restarting":
                # Refused for a restart: the page sends it again once it has reconnected.
                await self.chat_restart({"final": False})
        except services.STORAGE_ERRORS:
            # The database refused or could not take this frame's work (its transaction
            # rolled back): an error frame, not a socket closed with 1011 that the page
            # reconnects and re-sends into.
            logger.exception("A frame of conversation %s failed in the database", self.group)
            await self.send_json(
                frames.error(
                    "database_error",
                    _("The server could not store this, so nothing was changed. Try again."),
                    client_id=client_id,
                )
            )

    async def _refuse_flood(self, budget: FrameBudget) -> None:
        if budget.refused == 1:
            # Once per burst: answering every refused frame would double the flood.
            await self.send_json(
                frames.error(
                    "too_many_frames",
                    _("Too many frames: at most %(rate)s a second. Slow down.")
                    % {"rate": f"{budget.rate:g}"},
                )
            )
        elif budget.refused > budget.burst:
            # Still flooding after the warning: a client that does not listen. Nothing more
            # is read from it or relayed to it.
            self._closing = True
            if self.group is not None:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=CLOSE_TOO_MANY_FRAMES)

    async def dispatch_frame(self, frame: protocol.ClientFrame) -> None:
        if isinstance(frame, protocol.Send):
            start = await generation.send(
                self.user, self.conversation, frame.content, frame.client_id, frame.attachments
            )
            if start.plan is None:
                # A resend of a stored message: tell this socket, start nothing.
                parent = start.user_message.parent
                await self.send_json(
                    frames.message(
                        start.user_message, parent_id=parent.public_id if parent else None
                    )
                )
        elif isinstance(frame, protocol.Stop):
            await generation.stop(self.conversation)
        elif isinstance(frame, protocol.Regenerate):
            await generation.regenerate(self.user, self.conversation, frame.message_id)
        elif isinstance(frame, protocol.Edit):
            await generation.edit(self.user, self.conversation, frame.message_id, frame.content)
        elif isinstance(frame, protocol.Switch):
            # Only what the pages show changes: nothing to generate.
            await services.events.call(services.threads.switch, self.conversation, frame.message_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels (4.2+) makes a round trip to the database thread before every handler to
        # close stale connections. Here it is never needed: this consumer, and the turn
        # actions of `generation` it calls, reach the database only through
        # `database_sync_to_async` (`db`, `services.events.call`), which closes them around each
        # call in that thread anyway (tests/test_database_thread.py). Skipping it keeps relayed
        # deltas (which touch no database) and received frames from queueing behind the
        # database work of the whole process.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if message["type"] == "chat.frame" and self._closing:
            return
        await handler(message)

    async def chat_frame(self, event: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(event["frame"])
            return
        await self._relay(event["frame"])

    async def _relay(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("delta", "thinking"):
            if self._seen is not None:
                message_id, seq = self._seen
                if frame["message_id"] == message_id:
                    if frame["seq"] <= seq:
                        return
                    self._seen = None
            self._follow(frame["message_id"])
        elif kind == "message":
            message = frame["message"]
            if message["role"] == "assistant" and message["status"] == "streaming":
                self._follow(message["id"])
        elif kind == "done" and frame["message_id"] == self._following:
            self._following = None
        await self.send_json(frame)
        if kind == "deleted":
            await self.close(code=CLOSE_NOT_FOUND)
        elif kind == "done" and generation.registry.draining:
            # The reply this socket stayed for has ended: nothing more is written here.
            await self.chat_restart({"final": True})

    # --- a reply followed in silence ---------------------------------------------------
    def _follow(self, message_id: str) -> None:
        """Note that this socket relays `message_id`, streaming, and heard of it just now.

        Frames are at-most-once (a layer outage, a full channel): a page whose `done` was
        lost would show the reply as being written forever. After FOLLOW_SILENCE_SECONDS
        without a frame of it, the socket asks the database instead (`chat_silence`).
        """
        self._following = message_id
        self._heard_at = time.monotonic()
        if self._follow_task is None or self._follow_task.done():
            self._follow_task = asyncio.create_task(self._watch_silence())

    async def _watch_silence(self) -> None:
        while self._following is not None:
            quiet = time.monotonic() - self._heard_at
            if quiet < FOLLOW_SILENCE_SECONDS:
                await asyncio.sleep(FOLLOW_SILENCE_SECONDS - quiet)
                continue
            self._heard_at = time.monotonic()
            self._local.put_nowait({"type": "chat.silence", "message_id": self._following})

    async def chat_silence(self, event: dict[str, Any]) -> None:
        if event["message_id"] != self._following:
            return
        reply = await services.events.call(
            services.replies.finished_reply, self.conversation.pk, event["message_id"]
        )
        if reply is not None and event["message_id"] == self._following:
            # Rendered here, not in the database thread every socket shares.
            await self._relay(frames.done(reply))
