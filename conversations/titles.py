"""Generated titles: a short title asked of the same model after a conversation's first
exchange, paced so that titles never compete with the replies people are waiting for.

A title is cosmetic; the first token of someone's reply is not. So a title request waits
while turns are being started in this process (a burst of sends), starts at most
TITLES_PER_SECOND times a second, and at most TITLES_AT_ONCE are in flight. On any failure
the automatic title (the question's first words) simply stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from django.utils.translation import gettext as _

from conversations import services, upstream
from conversations.services.turns import TurnPlan

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Title requests in flight per process; the rest wait their turn.
TITLES_AT_ONCE = 4
# ... and they start at most this often: a hundred first replies ending together would
# otherwise ask for a hundred titles in the same second, while other replies stream.
TITLES_PER_SECOND = 10.0
# A generated title waits while turns are being started, at most this long.
TITLE_WAIT_FOR_STARTS = 30.0


class TitlePacer:
    """When a title request may go: after the turns being started, spaced, a few at once.

    Takes a clock and a sleep so that tests can run its schedule without waiting.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._next_at = 0.0
        # Turns between "send" received and stored (see `starting`).
        self._starting = 0
        # The semaphore and the "no turn starting" event, with the loop they belong to.
        self._loop_bound: dict[str, tuple[asyncio.AbstractEventLoop, Any]] = {}

    def _of_this_loop(self, name: str, make: Callable[[], T]) -> T:
        """An asyncio primitive kept in `name`, made again if the event loop changed
        (tests run each on a loop of its own; one bound to a closed loop never wakes)."""
        loop = asyncio.get_running_loop()
        kept = self._loop_bound.get(name)
        if kept is None or kept[0] is not loop:
            kept = self._loop_bound[name] = (loop, make())
        return kept[1]

    def slot(self) -> asyncio.Semaphore:
        """Bounds the title requests in flight."""
        return self._of_this_loop("slots", lambda: asyncio.Semaphore(TITLES_AT_ONCE))

    async def pace(self) -> None:
        """Until this request's turn: at most TITLES_PER_SECOND start per second."""
        now = self.clock()
        start = max(now, self._next_at)
        self._next_at = start + 1 / TITLES_PER_SECOND
        if start > now:
            await self.sleep(start - now)

    def _settled(self) -> asyncio.Event:
        def make() -> asyncio.Event:
            event = asyncio.Event()
            if self._starting == 0:
                event.set()
            return event

        return self._of_this_loop("settled", make)

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Count a turn being started for as long as the block runs (in the event loop)."""
        self._starting += 1
        self._settled().clear()
        try:
            yield
        finally:
            self._starting -= 1
            if self._starting == 0:
                self._settled().set()

    async def starts_settled(self, timeout: float) -> None:
        """Until no turn is being started in this process, or `timeout` seconds passed."""
        try:
            await asyncio.wait_for(self._settled().wait(), timeout)
        except TimeoutError:
            pass


async def name_conversation(plan: TurnPlan, answer: str, pacer: TitlePacer) -> None:
    """Ask the same gateway, with the same credential, for a short title of the first
    exchange, and store it unless the person chose a title meanwhile."""
    prompt = _(
        "Write a title of at most six words for this conversation, in its language. "
        "Reply with the title only.\n\nUser: %(question)s\n\nAssistant: %(answer)s"
    ) % {"question": plan.question_text[:1000], "answer": answer[:1000]}
    request = upstream.TurnRequest(
        model=plan.model, messages=[{"role": "user", "content": prompt}], max_tokens=30
    )
    try:
        await pacer.starts_settled(TITLE_WAIT_FOR_STARTS)
        await pacer.pace()
        async with pacer.slot():
            title = await upstream.complete_text(plan.credential, request)
    except upstream.UpstreamError as exc:
        logger.info("No generated title for %s: %s", plan.conversation_public_id, exc.code)
        return
    await services.events.call(
        services.conversations.set_generated_title, plan.conversation_id, title
    )
