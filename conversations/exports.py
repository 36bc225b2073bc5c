"""Conversation exports: Markdown for people, JSON for programs (same ids as the websocket)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.utils.translation import gettext as _

from conversations.attachments import size
from conversations.models import Attachment, Conversation, Message


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def messages_for_export(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("id"))


def _attachments(messages: list[Message]) -> dict[int, list[Attachment]]:
    by_message: dict[int, list[Attachment]] = defaultdict(list)
    ids = [m.pk for m in messages if m.role == Message.Role.USER]
    for attachment in Attachment.objects.filter(message_id__in=ids).order_by("position", "id"):
        by_message[attachment.message_id].append(attachment)
    return by_message


def as_json(conversation: Conversation) -> dict[str, Any]:
    """The active thread in `messages`; replies replaced by regenerate or edit stay in it,
    marked with `superseded_at`, so nothing the model produced is missing from an export."""
    messages = messages_for_export(conversation)
    files = _attachments(messages)
    return {
        "conversation": {
            "id": str(conversation.public_id),
            "title": conversation.display_title,
            "system_prompt": conversation.system_prompt,
            "model": conversation.model,
            "temperature": conversation.temperature,
            "top_p": conversation.top_p,
            "max_tokens": conversation.max_tokens,
            "created_at": _iso(conversation.created_at),
            "updated_at": _iso(conversation.updated_at),
        },
        "messages": [
            {
                "id": str(m.public_id),
                "role": m.role,
                "content": m.content,
                "thinking": m.thinking,
                "status": m.status,
                "created_at": _iso(m.created_at),
                "model": m.model,
                "stop_reason": m.stop_reason or None,
                "usage": {"input_tokens": m.input_tokens, "output_tokens": m.output_tokens},
                "error": {"code": m.error_code, "message": m.error_message}
                if m.error_code
                else None,
                "superseded_at": _iso(m.superseded_at),
                "attachments": [
                    {
                        "id": str(a.public_id),
                        "name": a.name,
                        "media_type": a.media_type,
                        "size": a.size,
                    }
                    for a in files.get(m.pk, [])
                ],
            }
            for m in messages
        ],
    }


def as_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += [
            "> " + _("System prompt:"),
            *[f"> {line}" for line in conversation.system_prompt.splitlines()],
            "",
        ]
    messages = messages_for_export(conversation)
    files = _attachments(messages)
    for m in messages:
        who = (
            _("You")
            if m.role == Message.Role.USER
            else _("Assistant (%(model)s)") % {"model": m.model}
            if m.model
            else _("Assistant")
        )
        notes = []
        if m.status != Message.Status.COMPLETE:
            notes.append(str(m.get_status_display()))
        if m.superseded_at:
            notes.append(_("previous version"))
        suffix = f" — {', '.join(notes)}" if notes else ""
        lines += [
            f"## {who} · {m.created_at:%Y-%m-%d %H:%M} UTC{suffix}",
            "",
            m.content or "_({})_".format(_("empty")),
            "",
        ]
        attached = files.get(m.pk, [])
        if attached:
            lines += [
                *[
                    "- "
                    + _("Attached: %(name)s (%(media_type)s, %(size)s)")
                    % {"name": a.name, "media_type": a.media_type, "size": size(a.size)}
                    for a in attached
                ],
                "",
            ]
        if m.error_code:
            lines += [
                "> "
                + _("Error `%(code)s`: %(message)s")
                % {"code": m.error_code, "message": m.error_message},
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"
