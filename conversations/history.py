"""What a reply is sent of its conversation, and its one second try.

`Sending.events()` is what the generation streams from: the shown thread fitted into the
model's window (`conversations.context`), the left-out part replaced by a summary the
same model writes (through `upstream`, once per overflow), the stable prefix marked
cacheable where the credential enables it. A gateway that still refuses the prompt as too
long, before the first token, gets it once more with more left out, fitted to the limit
it stated (remembered for the credential and model: later turns fit at the first try).

`Sending.context` is then what the reply stores (`Message.context`): where the model's
memory began, the summary, the window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from django.conf import settings

from conversations import attachments, context, services, tokens, upstream
from conversations.services.turns import TurnPlan

logger = logging.getLogger(__name__)

# Codes of a refusal that a shorter prompt may cure.
TOO_LONG_CODES = ("prompt_too_long", "request_too_large")
# Without a stated limit, the second try is sent this share of the first's estimate.
SHRINK_WITHOUT_LIMIT = 0.6
# Fitting a history this long is done off the event loop (regular expressions over it).
LONG_HISTORY = 200
SUMMARY_TIMEOUT = 60.0


class Sending:
    def __init__(self, plan: TurnPlan) -> None:
        self.plan = plan
        self.context: dict[str, Any] | None = None
        self._fitted: context.Fitted | None = None
        self._sent_estimate = 0

    async def events(self) -> AsyncIterator[upstream.Event]:
        """The reply's events. Raises `upstream.UpstreamError`, also for a message too
        long on its own (`message_too_long_for_model`)."""
        plan = self.plan
        window = plan.credential.window_for(plan.model)
        request = await self._request(
            context.budget(window, plan.max_tokens), window, plan.previous, scale=1.0
        )
        try:
            async for event in upstream.stream_reply(plan.credential, request):
                yield event
            return
        except upstream.UpstreamError as exc:
            # A refusal of the prompt always comes before any event.
            if exc.code not in TOO_LONG_CODES:
                raise
            refusal = exc
        request = await self._after_refusal(refusal, window)
        async for event in upstream.stream_reply(plan.credential, request):
            yield event

    async def _after_refusal(
        self, refusal: upstream.UpstreamError, window: int
    ) -> upstream.TurnRequest:
        plan = self.plan
        previous = plan.previous
        if previous is not None:
            # Its count was of another prompt: keep its cut and summary, not its count.
            previous = context.Previous(
                previous.reply_id, previous.first_id, previous.summary, None, previous.digest
            )
        scale = 1.0
        if refusal.stated is not None:
            counted, limit = refusal.stated
            window = min(window, limit)
            await services.events.call(
                services.credentials.remember_context_limit,
                plan.credential.credential_id,
                plan.model,
                limit,
            )
            if self._sent_estimate:
                scale = max(1.0, counted / self._sent_estimate)
            budget = context.budget(window, plan.max_tokens)
        else:
            budget = int(self._sent_estimate * SHRINK_WITHOUT_LIMIT)
        logger.info(
            "The gateway refused the prompt of %s as too long (%s); trying once with %d tokens",
            plan.message_public_id,
            refusal.stated,
            budget,
        )
        try:
            return await self._request(budget, window, previous, scale=scale)
        except upstream.UpstreamError as exc:
            if exc.code == "message_too_long_for_model":
                raise
            raise refusal from None

    async def _request(
        self,
        budget: int,
        window: int,
        previous: context.Previous | None,
        *,
        scale: float,
    ) -> upstream.TurnRequest:
        plan = self.plan
        history, ids = plan.history, list(plan.history_ids)
        fit_args = (history, ids, plan.system, budget)
        fit_kwargs: dict[str, Any] = {
            "previous": previous,
            "digest": context.prompt_digest(plan.model, plan.system),
            "summarise": settings.CHAT_CONTEXT_SUMMARY,
            "refill": settings.CHAT_CONTEXT_REFILL,
            "summary_allowance": settings.CHAT_CONTEXT_SUMMARY_TOKENS,
            "scale": scale,
        }
        try:
            if len(history) > LONG_HISTORY:
                fitted = await asyncio.to_thread(context.fit, *fit_args, **fit_kwargs)
            else:
                fitted = context.fit(*fit_args, **fit_kwargs)
        except context.TooLong as exc:
            raise upstream.UpstreamError("message_too_long_for_model", exc.message) from None
        summary = fitted.summary
        if fitted.needs_summary:
            summary = await self._summarise(
                fitted.summary, history[fitted.previous_start : fitted.start], budget
            )
        kept = history[fitted.start :]
        if any("attachments" in message for message in kept):
            # Files are read from storage (a disk, or S3 over the network): off the loop.
            # Only those of the messages sent: a left-out file is never read.
            kept = await asyncio.to_thread(
                attachments.expand,
                kept,
                services.attachments.read,
                images=plan.credential.vision,
                pdfs=plan.credential.pdf,
            )
        system = context.with_summary(plan.system, summary)
        self._sent_estimate = tokens.of_text(system) + sum(
            tokens.of_message(message) for message in history[fitted.start :]
        )
        self._fitted = fitted
        self.context = {
            # As the page names messages (with dashes); the history's ids are bare hex.
            "first": str(UUID(ids[fitted.start])) if fitted.start and ids[fitted.start] else None,
            "omitted": fitted.start,
            "summary": summary if fitted.start else "",
            "window": window,
            "estimate": self._sent_estimate,
            "digest": context.prompt_digest(plan.model, plan.system),
        }
        return upstream.TurnRequest(
            model=plan.model,
            messages=kept,
            max_tokens=plan.max_tokens,
            system=system,
            temperature=plan.temperature,
            top_p=plan.top_p,
            cache=plan.credential.prompt_caching,
        )

    async def _summarise(
        self, previous_summary: str, left_out: list[dict[str, Any]], budget: int
    ) -> str:
        """A summary of what is newly left out, building on the previous one. Written by the
        conversation's model; a failure keeps the previous summary (the reply goes on)."""
        plan = self.plan
        room = budget - settings.CHAT_CONTEXT_SUMMARY_TOKENS
        question = context.summary_request(previous_summary, left_out, max(room, 0))
        request = upstream.TurnRequest(
            model=plan.model,
            messages=[{"role": "user", "content": question}],
            max_tokens=settings.CHAT_CONTEXT_SUMMARY_TOKENS,
        )
        try:
            summary = await upstream.complete_text(
                plan.credential, request, timeout=SUMMARY_TIMEOUT
            )
        except upstream.UpstreamError as exc:
            logger.warning(
                "The summary for %s failed (%s); the earlier summary is kept",
                plan.message_public_id,
                exc.code,
            )
            return previous_summary
        return summary.strip() or previous_summary
