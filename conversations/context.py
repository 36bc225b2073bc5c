"""The history that fits the model: which part of the shown thread a reply is sent.

The budget of a turn is the credential's context window for the model (or the smaller
limit the gateway stated, `GatewayCredential.window_for`) less the reply's `max_tokens`.
When the thread does not fit, the oldest whole exchanges are left out (never the system
prompt, never the new message) until it fills `CHAT_CONTEXT_REFILL` of the budget: room
for several turns before the next cut, so one cut (and its summary, and the cached prefix)
serves many turns. What was left out is replaced by a summary the same model writes
(`CHAT_CONTEXT_SUMMARY`), stored with the reply and reused until the next overflow.

Counting is exact where the gateway counted: the last reply on the thread stored the
prompt tokens it was sent (input + cache read + cache write); when this turn keeps its
cut, the prompt is that count plus an estimate of what came after (`conversations.tokens`).

Pure functions: the generation calls them around its upstream requests.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from conversations import tokens

SUMMARY_HEADING = (
    "Summary of the earlier part of this conversation (its messages are not repeated):"
)

# The gateway's words for a prompt over the model's window: Anthropic's "prompt is too
# long: 210000 tokens > 200000 maximum", and the OpenAI-style wording other gateways use.
TOO_LONG = re.compile(
    r"prompt is too long|too many (?:input )?tokens|context[ _](?:length|window|limit)|"
    r"maximum context|input is too long|exceeds? the (?:model'?s? )?(?:maximum|max)",
    re.I,
)
STATED = re.compile(r"(\d[\d,]*)\s*tokens?\s*>\s*(\d[\d,]*)")
# Anthropic's other wording: "input length and `max_tokens` exceed context limit: 188240 +
# 21333 > 200000".
STATED_WITH_REPLY = re.compile(r"(\d[\d,]*)\s*\+\s*(\d[\d,]*)\s*>\s*(\d[\d,]*)")


@dataclass(frozen=True)
class Previous:
    """What the last finished reply on the thread was sent (its stored `context`)."""

    reply_id: str
    first_id: str | None  # the first message sent; None: the thread from its start
    summary: str
    prompt_tokens: int | None  # counted by the gateway, cached tokens included
    # `prompt_digest` of the model and system prompt it was sent: the count holds for this
    # turn only if neither changed since (the Model select, the conversation's settings).
    digest: str = ""


@dataclass(frozen=True)
class Fitted:
    start: int  # index in the history of the first entry sent
    summary: str  # the summary kept (reused), "" when there is none yet
    needs_summary: bool  # entries before `start` are left out and need a (new) summary
    tokens: int  # the prompt's tokens, estimated (exact prefix where known)
    budget: int
    # Where the last reply's history started: the entries newly left out are those from
    # here to `start` (the new summary builds on the previous one, which covers the rest).
    previous_start: int = 0


class TooLong(Exception):
    """The new message alone (with the system prompt) does not fit the budget."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(tokens, budget)
        self.tokens = tokens
        self.budget = budget

    @property
    def message(self) -> str:
        return _(
            "This message is too long for the model: it takes about %(tokens)s tokens, and "
            "the model has room for %(budget)s besides its reply. Shorten it, split it into "
            "several messages, or attach less."
        ) % {"tokens": f"{self.tokens:,}", "budget": f"{max(0, self.budget):,}"}


def budget(window: int, max_tokens: int) -> int:
    return window - max_tokens


def fit(
    history: list[dict[str, Any]],
    ids: list[str],
    system: str,
    budget_tokens: int,
    *,
    previous: Previous | None = None,
    digest: str = "",
    summarise: bool = True,
    refill: float = 0.75,
    summary_allowance: int = 1024,
    scale: float = 1.0,
) -> Fitted:
    """Where the history sent starts. `ids` holds the public id of each entry's first
    message; `scale` (>= 1) inflates estimates after the gateway counted more than them.

    Raises `TooLong` when not even the new message fits.
    """
    if not history:
        return Fitted(0, "", False, 0, budget_tokens)
    estimates: dict[int, int] = {}

    def est(index: int) -> int:
        if index not in estimates:
            estimates[index] = round(tokens.of_message(history[index]) * scale)
        return estimates[index]

    base = round(tokens.of_text(system) * scale) + tokens.MESSAGE_OVERHEAD
    last = len(history) - 1
    start = 0
    summary = ""
    if previous is not None and previous.first_id is not None and previous.first_id in ids:
        start = ids.index(previous.first_id)
        summary = previous.summary
    total = (
        _known_total(previous, ids, start, est) if previous and previous.digest == digest else None
    )
    if total is None:
        summary_tokens = round(tokens.of_text(summary) * scale) if summary else 0
        total = base + summary_tokens + _sum_from(start, last, est)
    if total <= budget_tokens:
        return Fitted(start, summary, False, total, budget_tokens)

    # Overflow: leave out whole exchanges (a user entry starts each) from the oldest kept.
    allowance = summary_allowance if summarise else 0
    target = int(budget_tokens * refill)
    from_end = [0] * (len(history) + 1)
    for index in range(last, -1, -1):
        from_end[index] = from_end[index + 1] + est(index)
        if base + allowance + from_end[index] > budget_tokens:
            break  # everything before leaves out at least this much: no need to count it
    best: int | None = None
    for cut in range(start + 1, last + 1):
        if history[cut].get("role") != "user" or from_end[cut] == 0:
            continue
        needed = base + allowance + from_end[cut]
        if needed <= target:
            best = cut
            break
        if needed <= budget_tokens and best is None:
            best = cut
    if best is None:
        raise TooLong(base + est(last), budget_tokens)
    return Fitted(best, summary, summarise, base + allowance + from_end[best], budget_tokens, start)


def _sum_from(start: int, last: int, est: Any) -> int:
    return sum(est(index) for index in range(start, last + 1))


def prompt_digest(model: str, system: str) -> str:
    """What the gateway's count of a prompt depends on besides its messages."""
    return hashlib.sha256(f"{model}\0{system}".encode()).hexdigest()[:16]


def _known_total(previous: Previous | None, ids: list[str], start: int, est: Any) -> int | None:
    """The gateway's own count of the prefix the last reply was sent, plus estimates of
    what followed, when this turn keeps that reply's cut and summary."""
    if previous is None or not previous.prompt_tokens or previous.reply_id not in ids:
        return None
    first = ids.index(previous.first_id) if previous.first_id in ids else 0
    if first != start:
        return None
    reply_at = ids.index(previous.reply_id)
    return previous.prompt_tokens + sum(est(index) for index in range(reply_at, len(ids)))


def with_summary(system: str, summary: str) -> str:
    """The system prompt a reply is sent: the conversation's own, then the summary."""
    if not summary:
        return system
    block = f"{SUMMARY_HEADING}\n{summary}"
    return f"{system}\n\n{block}" if system else block


def summary_request(
    previous_summary: str, left_out: list[dict[str, Any]], budget_tokens: int
) -> str:
    """The question that asks the model for a summary of `left_out` (the entries newly
    left out), building on the summary of what was left out before. Cut from its oldest
    end to the budget: the summary request must fit the window too."""
    lines: list[str] = []
    used = tokens.of_text(previous_summary)
    for message in reversed(left_out):
        text = _plain(message)
        cost = tokens.of_text(text) + tokens.MESSAGE_OVERHEAD
        if used + cost > budget_tokens:
            break
        used += cost
        speaker = "User" if message.get("role") == "user" else "Assistant"
        lines.append(f"{speaker}: {text}")
    lines.reverse()
    parts = [
        "Summarise the conversation below for yourself, to continue it later without "
        "its messages: keep names, facts, numbers, decisions, open questions and what the "
        "user asked you to remember. Write in the conversation's language, at most 300 words, "
        "no preamble."
    ]
    if previous_summary:
        parts.append(f"Summary of what came before it:\n{previous_summary}")
    parts.append("Conversation:\n" + "\n\n".join(lines))
    return "\n\n".join(parts)


def _plain(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    names = [getattr(a, "name", "") for a in message.get("attachments") or ()]
    if names:
        text += "\n[attached: " + ", ".join(names) + "]"
    return text


def stated_limit(detail: str) -> tuple[int, int] | None:
    """(tokens sent, the limit) from a refusal such as "prompt is too long: 210000 tokens
    > 200000 maximum"; None when the refusal states no figures."""
    with_reply = STATED_WITH_REPLY.search(detail or "")
    found = STATED.search(detail or "")
    if with_reply:
        sent, _reply, limit = (int(group.replace(",", "")) for group in with_reply.groups())
    elif found:
        sent, limit = (int(group.replace(",", "")) for group in found.groups())
    else:
        return None
    return (sent, limit) if limit > 0 else None


def is_too_long(detail: str) -> bool:
    return bool(TOO_LONG.search(detail or ""))
