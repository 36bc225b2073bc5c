"""Long conversations (issue 19): the bytes sent upstream per turn of one conversation of
500 turns, against the bundled gateway holding the credential's context window.

Each turn runs the app's own path minus the socket: `services.turns.start_turn` stores the
question and the placeholder, `history.Sending` fits the thread (writing a summary through
the gateway when it overflows) and streams the reply over real HTTP through the SDK, and
`services.replies.finish_reply` saves it with its usage and context. The gateway records
each request's Content-Length: the bytes sent upstream for that turn.

Without fitting, turn n re-sends the whole thread (growing linearly, and failing once it
outgrows the window); with it, the bytes stop growing once the budget is reached.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench import environment
from bench.inprocess import Text

TURNS = 500
REPORTED = (10, 100, 500)
# A small model's window: the budget is reached within the first hundred turns.
WINDOW = 16_000
MAX_TOKENS = 1_024
SYSTEM = "You are a helpful assistant. Answer precisely and keep earlier facts in mind."


def long_conversation() -> dict[str, Any]:
    from channels.db import database_sync_to_async
    from django.conf import settings

    from conversations import history, services, upstream
    from conversations.demo.script import Script
    from conversations.demo.server import FakeGateway
    from conversations.models import Conversation
    from conversations.services.replies import Outcome

    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    db = database_sync_to_async
    text = Text(19)
    gateway = FakeGateway(token_delay=0.0, context_limit=WINDOW).start_in_thread()
    user = environment.make_user("bench-context")
    services.credentials.set_api_key(
        user, key="sk-bench-long", base_url=gateway.base_url, context_window=WINDOW
    )
    conversation = services.conversations.create_conversation(user)
    Conversation.objects.filter(pk=conversation.pk).update(
        system_prompt=SYSTEM, max_tokens=MAX_TOKENS
    )
    sent: list[int] = []
    whole: list[int] = []
    seconds: list[float] = []
    failed = 0

    async def run() -> None:
        nonlocal failed
        for turn in range(1, TURNS + 1):
            question = f"Turn {turn}. {text.sentence()} {text.sentence()}"
            gateway.enqueue(Script(text=" ".join(text.sentence() for _ in range(3))))
            started = time.perf_counter()
            start = await db(services.turns.start_turn)(user, conversation, question)
            plan = start.plan
            assert plan is not None
            sending = history.Sending(plan)
            parts: list[str] = []
            finished: Any = None
            status, code = "complete", ""
            try:
                async for event in sending.events():
                    if isinstance(event, upstream.TextDelta):
                        parts.append(event.text)
                    elif isinstance(event, upstream.Finished):
                        finished = event
            except upstream.UpstreamError as exc:
                status, code, failed = "error", exc.code, failed + 1
            outcome = Outcome(
                status=status,
                content="".join(parts),
                stop_reason=getattr(finished, "stop_reason", ""),
                model=plan.model,
                input_tokens=getattr(finished, "input_tokens", None),
                output_tokens=getattr(finished, "output_tokens", None),
                error_code=code,
                error_message=code,
                context=sending.context,
            )
            await db(services.replies.finish_reply)(plan, outcome)
            seconds.append(time.perf_counter() - started)
            sent.append(int(gateway.requests[-1].headers.get("content-length", "0")))
            # What replaying the whole thread would have sent (the messages alone).
            whole.append(sum(len(m["content"].encode()) for m in plan.history))
        await upstream.close_clients()

    try:
        asyncio.run(run())
    finally:
        gateway.stop_thread()
    summaries = sum(
        "Summarise the conversation" in str(r.body["messages"][0]["content"])
        for r in gateway.side_requests
    )
    after_budget = sent[99:]
    return {
        "window_tokens": WINDOW,
        "turns": TURNS,
        "bytes_sent": {str(n): sent[n - 1] for n in REPORTED},
        "whole_thread_bytes": {str(n): whole[n - 1] for n in REPORTED},
        "max_bytes_turns_100_to_500": max(after_budget),
        "max_bytes_turns_100_to_200": max(sent[99:200]),
        "max_bytes_turns_400_to_500": max(sent[399:]),
        "summaries_written": summaries,
        "refused_by_gateway": gateway.refused_too_long,
        "failed_turns": failed,
        "median_turn_ms": round(statistics.median(seconds) * 1000, 1),
        "median_turn_ms_last_100": round(statistics.median(seconds[-100:]) * 1000, 1),
    }
