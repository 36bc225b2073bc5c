"""What the model was sent of the shown thread, for the page: where its memory begins
(`_context_marker.html`), how full its window was (`_context_gauge.html`), and a reply's
own note (`_context_note.html`). Read from the replies' stored `context`
(`conversations.history`), as the `done` frame's `context` carries it
(`frames.context_of`)."""

from __future__ import annotations

from typing import Any

from django import template

from conversations import frames
from conversations.models import Message

register = template.Library()


@register.simple_tag
def context_note(shown: Any) -> dict[str, Any] | None:
    """The `context` of the last reply on the shown thread that stored one (`shown`: the
    `tree.Shown` items a page renders), or None."""
    for item in reversed(list(shown or ())):
        message = getattr(item, "message", item)
        if getattr(message, "role", None) == Message.Role.ASSISTANT and message.context:
            note = frames.context_of(message)
            window, used = note.get("window"), note.get("prompt_tokens")
            note["percent"] = min(100, round(100 * used / window)) if window and used else 0
            # Past this the gauge shows a warning: the next overflow is near.
            note["high"] = round(window * 0.8) if window else 1
            return note
    return None


@register.filter
def reply_context(message: Message) -> dict[str, Any] | None:
    """A reply's own `context`, as the `done` frame carries it; None without one."""
    if getattr(message, "context", None):
        return frames.context_of(message)
    return None
