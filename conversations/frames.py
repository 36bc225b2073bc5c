"""The server-to-client frames of websocket protocol v1 (see docs/protocol.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.urls import reverse

from conversations.models import Attachment, Message
from conversations.rendering import render_markdown

if TYPE_CHECKING:
    from conversations.tree import Shown


def message(
    msg: Message,
    *,
    parent_id: UUID | None = None,
    version: int = 1,
    versions: int = 1,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message was stored. `version` counts from 1 among the messages with the same parent
    and role; `versions` is how many there are; `attachments` as `attachment` describes
    them (none by default)."""
    return {
        "type": "message",
        "message": _message(msg, parent_id, version, versions, attachments or []),
    }


def _message(
    msg: Message,
    parent_id: UUID | None,
    version: int,
    versions: int,
    attachments: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": str(msg.public_id),
        "role": msg.role,
        "content": msg.content,
        "status": msg.status,
        "client_id": msg.client_id or None,
        "parent_id": str(parent_id) if parent_id is not None else None,
        "version": version,
        "versions": versions,
        "attachments": attachments,
    }


def thread(
    shown: list[Shown],
    attachments: dict[int, list[dict[str, Any]]] | None = None,
    *,
    older: bool = False,
) -> dict[str, Any]:
    """The shown thread changed (switch, regenerate, edit): its newest messages, root side
    first, each with its attachments (`attachments`: by message id); `older` when more
    of the thread is above the first (all of it otherwise)."""
    files = attachments or {}
    return {
        "type": "thread",
        "older": older,
        "messages": [
            _message(s.message, s.parent_id, s.version, s.versions, files.get(s.message.pk, []))
            for s in shown
        ],
    }


def attachment(item: Attachment, conversation_public_id: UUID | str) -> dict[str, Any]:
    """An attachment as the upload answer, the `message` frame and the export JSON give it."""
    return {
        "id": str(item.public_id),
        "name": item.name,
        "media_type": item.media_type,
        "size": item.size,
        "url": reverse(
            "attachment",
            kwargs={"public_id": conversation_public_id, "attachment_id": item.public_id},
        ),
    }


def delta(message_id: UUID | str, seq: int, text: str) -> dict[str, Any]:
    return {"type": "delta", "message_id": str(message_id), "seq": seq, "text": text}


def thinking(message_id: UUID | str, seq: int, text: str) -> dict[str, Any]:
    """Reasoning text; shares the `seq` counter with `delta` so gaps are seen in both."""
    return {"type": "thinking", "message_id": str(message_id), "seq": seq, "text": text}


def stored_html(msg: Message) -> str:
    """A final reply's HTML: the one stored with it, else (a reply a dead process left,
    saved with no HTML) rendered now."""
    return msg.html if msg.html_version else render_markdown(msg.content)


def done(msg: Message) -> dict[str, Any]:
    # May render Markdown and highlight code (a reply saved without its HTML): build it in
    # the event loop, never in the database thread every socket shares (see
    # `services.replies.finish_reply` and `services.events.call`).
    frame: dict[str, Any] = {
        "type": "done",
        "message_id": str(msg.public_id),
        "status": msg.status,
        "content": msg.content,
        "html": stored_html(msg),
        "thinking": msg.thinking,
        "usage": {
            "input_tokens": msg.input_tokens,
            "output_tokens": msg.output_tokens,
            "cache_read_input_tokens": msg.cache_read_input_tokens,
            "cache_creation_input_tokens": msg.cache_creation_input_tokens,
        },
        "stop_reason": msg.stop_reason or None,
        "model": msg.model,
    }
    if msg.context is not None:
        frame["context"] = context_of(msg)
    if msg.error_code:
        frame["error"] = {"code": msg.error_code, "message": msg.error_message}
    return frame


def context_of(msg: Message) -> dict[str, Any]:
    """What of the thread a reply was sent, for the page's marker and gauge: the first
    message sent (null: from the start), how many entries were left out, whether a summary
    stands for them, the window, and the prompt's tokens (the gateway's count, cache
    included, or the estimate)."""
    stored = msg.context if isinstance(msg.context, dict) else {}
    counted = msg.input_tokens
    if counted is not None:
        counted += (msg.cache_read_input_tokens or 0) + (msg.cache_creation_input_tokens or 0)
    return {
        "first_id": stored.get("first"),
        "omitted": stored.get("omitted", 0),
        "summarised": bool(stored.get("summary")),
        "window": stored.get("window"),
        "prompt_tokens": counted if counted is not None else stored.get("estimate"),
    }


def error(
    code: str, text: str, message_id: UUID | str | None = None, *, client_id: str | None = None
) -> dict[str, Any]:
    """A failed reply (`message_id`) or a refused frame. A refusal echoes the refused frame's
    `client_id`, so the page knows which of its sends to give back to the composer."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": text}
    if message_id is not None:
        frame["message_id"] = str(message_id)
    if client_id:
        frame["client_id"] = client_id
    return frame


def state(generation: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "state", "generation": generation}


def conversation(conv: Any) -> dict[str, Any]:
    """The conversation's title changed (renamed, or named after the first exchange)."""
    return {
        "type": "conversation",
        "conversation": {"id": str(conv.public_id), "title": conv.display_title},
    }


def superseded(message_ids: list[UUID]) -> dict[str, Any]:
    """Messages a regenerate or an edit took off the shown thread (kept as versions). For
    clients older than the `thread` frame, which say the same and more."""
    return {"type": "superseded", "message_ids": [str(m) for m in message_ids]}
