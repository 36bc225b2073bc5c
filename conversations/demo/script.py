"""The offline demo gateway's script language: how it answers one request.

A `Script` says what the gateway does with a request: the reply (a text, or numbered
words), thinking, and the ways it can misbehave (error statuses, stalls, cuts, malformed
events, NULs). Tests queue scripts in the process; the demo and browser tests write a
directive inside the last user message, e.g. ``[[fake status=429 retry_after=3]]`` or
``[[fake words=400 token_delay=0.05]]``. Without one, the reply is a short demo answer
about the question (`demo_reply`), and a title request gets `demo_title`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

DIRECTIVE = re.compile(r"\[\[fake\s*([^\]]*)\]\]")
TOKEN = re.compile(r"\s*\S+|\s+")

DEMO_MODEL = "offline-demo"


@dataclass
class Script:
    """How the gateway answers one request. Counts are in tokens of the reply."""

    text: str | None = None  # the reply; by default a short demo answer about the question
    words: int | None = None  # instead of `text`: a reply of this many numbered words
    # Instead of `text`: the reply as exactly these deltas, one per event (tests that need
    # to say where a delta ends, e.g. `<scr` in one and `ipt>` in the next). Not available
    # as a directive.
    chunks: list[str] | None = None
    thinking: str = ""  # streamed first, as a `thinking` block
    unknown_block: bool = False  # an extra block of a type no client knows
    status: int = 200  # an HTTP error status with an Anthropic-style JSON error body
    error_message: str = ""  # that body's message (default: "Fake gateway error <status>")
    retry_after: str | None = None
    json_error_200: bool = False  # status 200 with a JSON error body (seen on CloudBase)
    headers_delay: float = 0.0  # silence before the response headers
    token_delay: float | None = None  # seconds between tokens (default: the gateway's)
    stall_after: int | None = None  # go silent after N tokens, keep the connection open
    cut_after: int | None = None  # close the connection after N tokens
    sse_error_after: int | None = None  # an SSE `error` event after N tokens
    sse_error_type: str = "overloaded_error"
    malformed_after: int | None = None  # a broken SSE data line after N tokens
    end_after: int | None = None  # end the body cleanly after N tokens, no message_stop
    stop_reason: str = "end_turn"
    close_connection: bool = False  # refuse the request by closing the socket at once
    # A NUL character (U+0000) at the end of every token of the reply. A `text` may hold
    # NULs and lone surrogates too: they travel as the JSON escapes \u0000 and \ud800.
    nul: bool = False

    @classmethod
    def from_directive(cls, text: str) -> Script | None:
        match = DIRECTIVE.search(text)
        if match is None:
            return None
        kwargs: dict[str, Any] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for pair in match.group(1).split():
            name, _, raw = pair.partition("=")
            if name not in types or name == "chunks":
                continue
            kind = str(types[name])
            if "bool" in kind:
                kwargs[name] = raw.lower() in ("", "1", "true", "yes")
            elif "int" in kind:
                kwargs[name] = int(raw)
            elif "float" in kind:
                kwargs[name] = float(raw)
            else:
                kwargs[name] = raw.replace("_", " ") if name == "text" else raw
        return cls(**kwargs)


def demo_reply(body: dict[str, Any]) -> str:
    """A deterministic answer that shows what the app does with a real one."""
    messages = body.get("messages") or []
    last = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            last = (
                content
                if isinstance(content, str)
                else " ".join(
                    part.get("text", "") for part in content or [] if isinstance(part, dict)
                )
            )
            break
    question = DIRECTIVE.sub("", last).strip()
    quoted = question if len(question) <= 120 else question[:117] + "..."
    turns = sum(1 for m in messages if m.get("role") == "user")
    attached = _attached(messages)
    return (
        f"This reply comes from the **offline demo model**, not a real one. You wrote: “{quoted}”\n\n"
        f"{attached}"
        f"It is turn {turns} of this conversation, and the whole history was sent with it. "
        "Replies render as Markdown, for example a list:\n\n"
        "- streamed token by token\n- stored as it arrives\n- kept when you reload\n\n"
        "and code:\n\n```python\nprint('hello from the demo gateway')\n```\n"
    )


def _attached(messages: list[dict[str, Any]]) -> str:
    """A sentence on the files of the last user message, as a real model would see them."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return ""
        kinds = [part.get("type") for part in content or [] if isinstance(part, dict)]
        files = [
            part.get("text", "").split("\n", 1)[0][len("File: ") :]
            for part in content or []
            if isinstance(part, dict) and str(part.get("text", "")).startswith("File: ")
        ]
        said = []
        if kinds.count("image"):
            said.append(f"{kinds.count('image')} image(s)")
        if kinds.count("document"):
            said.append(f"{kinds.count('document')} PDF document(s)")
        if files:
            said.append("the file(s) " + ", ".join(f"`{name}`" for name in files))
        return (
            f"You attached {' and '.join(said)}; a real model would read them.\n\n" if said else ""
        )
    return ""


def demo_title(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    last = messages[-1].get("content", "") if messages else ""
    text = last if isinstance(last, str) else ""
    question = text.split("User:", 1)[1] if "User:" in text else text
    question = question.split("Assistant:", 1)[0]
    words = DIRECTIVE.sub("", question).split()
    return "Demo: " + " ".join(words[:5]) if words else "Demo conversation"


def numbered_words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(1, count + 1))
