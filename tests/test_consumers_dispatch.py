"""`consumers.dispatch_in_order`, the consumer's dispatch loop: the messages of several sources
handled one at a time in arrival order, a failing source's error raised, nothing left running.

Kept apart from test_consumers.py so that it goes with the function if the loop is ever
replaced by Channels' own `await_many_dispatch`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conversations import consumers
from conversations.consumers import dispatch_in_order


class Recorder:
    """A dispatch that takes its time, notes overlaps, and stops the loop after `stop_after`."""

    def __init__(self, stop_after: int) -> None:
        self.handled: list[Any] = []
        self.seen: asyncio.Queue[Any] = asyncio.Queue()
        self.busy = False
        self.overlaps = 0
        self.stop_after = stop_after

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.busy:
            self.overlaps += 1
        self.busy = True
        await asyncio.sleep(0)  # let the readers run while this message is being handled
        await asyncio.sleep(0)
        self.handled.append(message["n"])
        self.seen.put_nowait(message["n"])
        self.busy = False
        if len(self.handled) == self.stop_after:
            raise Done


class Done(Exception):
    pass


async def test_messages_of_several_sources_are_handled_one_at_a_time_in_arrival_order():
    first: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    second: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for n, source in enumerate([first, second, second, first, second, first]):
        source.put_nowait({"n": n})
    dispatch = Recorder(stop_after=6)
    with pytest.raises(Done):
        await asyncio.wait_for(dispatch_in_order([first.get, second.get], dispatch), 5)
    # Each source's own messages keep their order; none is handled twice or skipped.
    assert sorted(dispatch.handled) == list(range(6))
    assert [n for n in dispatch.handled if n in (0, 3, 5)] == [0, 3, 5]
    assert [n for n in dispatch.handled if n in (1, 2, 4)] == [1, 2, 4]
    assert dispatch.overlaps == 0


async def test_messages_arriving_over_time_are_handled_as_they_arrive():
    first: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    second: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    dispatch = Recorder(stop_after=4)
    loop = asyncio.create_task(dispatch_in_order([first.get, second.get], dispatch))
    for n, source in enumerate([second, first, first, second]):
        source.put_nowait({"n": n})
        assert await asyncio.wait_for(dispatch.seen.get(), 5) == n
    with pytest.raises(Done):
        await asyncio.wait_for(loop, 5)
    assert dispatch.handled == [0, 1, 2, 3]


async def test_a_failing_source_raises_its_error_and_the_other_readers_are_cancelled():
    cancelled = asyncio.Event()

    async def waits_forever() -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def fails() -> dict[str, Any]:
        raise ConnectionError("the layer went away")

    async def dispatch(message: dict[str, Any]) -> None:
        raise AssertionError(f"nothing to dispatch, got {message}")

    with pytest.raises(ConnectionError, match="the layer went away"):
        await asyncio.wait_for(dispatch_in_order([waits_forever, fails], dispatch), 5)
    assert cancelled.is_set()


async def test_every_reader_is_cancelled_and_awaited_when_the_loop_ends():
    sources: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sources.put_nowait({"n": 0})
    waiting: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    before = asyncio.all_tasks()
    with pytest.raises(Done):
        await asyncio.wait_for(
            dispatch_in_order([sources.get, waiting.get], Recorder(stop_after=1)), 5
        )
    # No reader is left pending once the loop has returned.
    assert asyncio.all_tasks() == before


async def test_a_busy_dispatch_reads_only_a_few_messages_ahead():
    reads = 0
    release = asyncio.Event()

    async def endless() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"n": reads}

    async def slow(message: dict[str, Any]) -> None:
        await release.wait()

    loop = asyncio.create_task(dispatch_in_order([endless], slow))
    for _ in range(200):
        await asyncio.sleep(0)
    # One being handled, READ_AHEAD queued, one waiting to be put: then the source rests.
    assert reads <= consumers.READ_AHEAD + 2
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop, 5)
