"""Riding out a shared channel layer's outages (Redis restarting, failing over).

The single-process deployment uses Channels' own `InMemoryChannelLayer`
(`chatsite/settings.py`); docs/performance.md, round 4, measured the private copy this
module held before against it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
