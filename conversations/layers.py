"""Channel layers: the single-process layer, and riding out a shared layer's outages.

The single-process layer is Channels' in-memory layer, made cheap per message.

The stock layer sweeps every channel and group for expired messages on each send and
receive, starts a task per group member, and deep-copies every message: costs that grow
with the number of open sockets and were measured to dominate at 50+ streams
(docs/performance.md). Messages here are built fresh by the sender and never mutated
after sending, so one object can go to every member. A channel's queue is also kept from
one message to the next instead of being dropped when empty and built again (the stock
layer builds two or three queues per message delivered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.utils.module_loading import import_string

SWEEP_INTERVAL = 1.0


class LocalChannelLayer(InMemoryChannelLayer):
    _swept_at = 0.0

    def _clean_expired(self) -> None:
        # Expiry is a minute; sweeping once a second is exact enough.
        now = time.monotonic()
        if now - self._swept_at < SWEEP_INTERVAL:
            return
        self._swept_at = now
        super()._clean_expired()
        # Queues nobody reads from or writes to any more (a consumer that closed).
        for channel, queue in list(self.channels.items()):
            if queue.empty() and not queue._getters:  # type: ignore[attr-defined]
                del self.channels[channel]

    def _queue(self, channel: str) -> asyncio.Queue[Any]:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._clean_expired()
        self._put(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        except BaseException:
            # The reader left (a closing consumer cancels its read): forget an empty queue.
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise
        return message

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        # Member names were validated when they joined.
        for channel in list(self.groups.get(group, {})):
            try:
                self._put(channel, message)
            except ChannelFull:
                # At-most-once, like every channel layer: the client sees the seq gap.
                pass


def is_shared(alias: str = "default") -> bool:
    """Whether the channel layer reaches other processes. On a single-process layer this
    process is the only one serving (see `lifecycle.recover_at_start`)."""
    backend = settings.CHANNEL_LAYERS[alias]["BACKEND"]
    local = issubclass(import_string(backend), InMemoryChannelLayer)
    return not local


# --- Riding out a shared layer's outages ------------------------------------------------------
# A shared layer (Redis) can fail for a moment: a restart, a failover, a dropped connection.
# Callers retry what must happen (joining a group) a few times with growing pauses, and give
# up with `LayerUnavailable` after about LAYER_PATIENCE seconds; what may be lost (a delta:
# pages notice the seq gap) is tried once and logged.
LAYER_PATIENCE = 10.0
FIRST_PAUSE = 0.1
LONGEST_PAUSE = 2.0

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LayerUnavailable(Exception):
    """The channel layer kept failing for LAYER_PATIENCE seconds."""


async def retrying(
    call: Callable[[], Awaitable[T]],
    what: str,
    *,
    patience: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`await call()`, again after each failure with pauses doubling from FIRST_PAUSE, until
    it succeeds or `patience` seconds (LAYER_PATIENCE by default) have passed since the first
    failure (then `LayerUnavailable`).

    Any exception counts as a failure of the layer: channels-redis raises redis-py's errors,
    OSError and TimeoutError, and a layer's errors have no common base class.
    """
    deadline: float | None = None  # from the first failure: `call` may wait long (receive)
    delay = FIRST_PAUSE
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if deadline is None:
                deadline = clock() + (LAYER_PATIENCE if patience is None else patience)
            if clock() + delay > deadline:
                logger.error("Channel layer unavailable for %s: %r", what, exc)
                raise LayerUnavailable(what) from exc
            logger.warning("Channel layer failed for %s (%r); retrying in %.1f s", what, exc, delay)
        await pause(delay)
        delay = min(delay * 2, LONGEST_PAUSE)


async def best_effort(call: Callable[[], Awaitable[Any]], what: str) -> bool:
    """`await call()` once; a failure of the layer is logged, not raised. Returns success."""
    try:
        await call()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.warning("Channel layer failed for %s: %r", what, exc)
        return False
    return True
