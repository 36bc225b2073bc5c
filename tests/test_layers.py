"""The single-process channel layer: every member gets each group message once, in order;
a full member loses only its own messages; closed readers leave nothing behind."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from conversations import layers
from conversations.layers import LocalChannelLayer


async def test_a_group_message_reaches_every_member_once_in_order():
    layer = LocalChannelLayer()
    members = [await layer.new_channel() for _ in range(3)]
    for channel in members:
        await layer.group_add("chat", channel)
    for n in range(5):
        await layer.group_send("chat", {"type": "chat.frame", "n": n})
    for channel in members:
        assert [(await layer.receive(channel))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    await layer.group_discard("chat", members[0])
    await layer.group_send("chat", {"type": "chat.frame", "n": 5})
    assert [(await layer.receive(c))["n"] for c in members[1:]] == [5, 5]
    # The member that left got nothing more.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(members[0]), 0.05)


async def test_a_full_member_loses_only_its_own_messages():
    layer = LocalChannelLayer(capacity=2)
    slow, fast = await layer.new_channel(), await layer.new_channel()
    for channel in (slow, fast):
        await layer.group_add("chat", channel)
    for n in range(2):
        await layer.group_send("chat", {"type": "chat.frame", "n": n})
    assert (await layer.receive(fast))["n"] == 0
    # `slow` is full: the group message still reaches `fast`, and a direct send says so.
    await layer.group_send("chat", {"type": "chat.frame", "n": 2})
    with pytest.raises(ChannelFull):
        await layer.send(slow, {"type": "chat.frame", "n": 3})
    assert [(await layer.receive(fast))["n"] for _ in range(2)] == [1, 2]
    assert [(await layer.receive(slow))["n"] for _ in range(2)] == [0, 1]


async def test_a_reader_that_leaves_takes_its_queue_with_it(monkeypatch):
    layer = LocalChannelLayer()
    channel = await layer.new_channel()
    reader = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    await layer.send(channel, {"type": "chat.frame"})
    assert (await reader) == {"type": "chat.frame"}
    # Kept between messages while its consumer lives ...
    assert channel in layer.channels
    reader = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    # ... and gone once the consumer stopped reading.
    assert channel not in layer.channels
    # A channel that got messages and never a reader goes when they expire; one emptied by
    # a reader that then left without waiting again goes at the next sweep.
    other = await layer.new_channel()
    await layer.send(other, {"type": "chat.frame"})
    await layer.receive(other)
    assert other in layer.channels
    monkeypatch.setattr(layers, "SWEEP_INTERVAL", 0.0)
    await layer.send(await layer.new_channel(), {"type": "x"})  # any call sweeps
    assert other not in layer.channels


class FakeClock:
    """A clock the retry loop reads and advances by the pauses it takes."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


async def test_a_layer_call_is_retried_with_growing_pauses_until_it_succeeds():
    clock = FakeClock()
    failures = iter([ConnectionError("redis restarting")] * 4)

    async def call() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "joined"

    result = await layers.retrying(call, "a test", clock=clock, pause=clock.pause)
    assert result == "joined"
    assert clock.pauses == [0.1, 0.2, 0.4, 0.8]


async def test_a_layer_that_stays_down_is_given_up_after_its_patience():
    clock = FakeClock()

    async def call() -> None:
        raise OSError("connection refused")

    with pytest.raises(layers.LayerUnavailable):
        await layers.retrying(call, "a test", patience=5.0, clock=clock, pause=clock.pause)
    # Pauses double (at most LONGEST_PAUSE); the next one (2.0) would end past the patience.
    assert clock.pauses == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert clock.now <= 5.0


async def test_patience_counts_from_the_first_failure_not_from_a_long_wait():
    # A receive may wait for minutes before Redis goes away; that wait is not patience spent.
    clock = FakeClock()
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            clock.now += 600  # a long, quiet wait, then the failure
            raise ConnectionError("gone")
        return "message"

    assert await layers.retrying(call, "a test", clock=clock, pause=clock.pause) == "message"


async def test_best_effort_reports_a_failure_instead_of_raising():
    async def fails() -> None:
        raise ConnectionError("down")

    async def works() -> None:
        return None

    assert await layers.best_effort(fails, "a test") is False
    assert await layers.best_effort(works, "a test") is True
