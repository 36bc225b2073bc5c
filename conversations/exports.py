"""Conversation exports: Markdown for people, JSON for programs (same ids as the websocket)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from conversations import services, tree
from conversations.attachments import size
from conversations.models import Conversation, Message


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def as_json(conversation: Conversation) -> dict[str, Any]:
    """Every version of every message, oldest first, each with its `parent_id` and whether
    it is on the shown thread (`active`): nothing the model produced is missing."""
    messages, shown = tree.every_version(conversation)
    public_ids = {m.pk: m.public_id for m in messages}
    files = services.attachments.of_messages(
        [m.pk for m in messages if m.role == Message.Role.USER]
    )
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
                "usage": {
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "cache_read_input_tokens": m.cache_read_input_tokens,
                    "cache_creation_input_tokens": m.cache_creation_input_tokens,
                },
                # What of the thread a reply was sent (`conversations.history`): the export
                # keeps every message, and says which ones the model no longer saw.
                "context": m.context or None,
                "error": {"code": m.error_code, "message": m.error_message}
                if m.error_code
                else None,
                "parent_id": str(public_ids[m.parent_id]) if m.parent_id else None,
                "active": m.pk in shown,
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
    """The shown thread, for people (the JSON export has every version)."""
    lines = [f"# {conversation.display_title}", ""]
    if conversation.system_prompt:
        lines += [
            "> " + _("System prompt:"),
            *[f"> {line}" for line in conversation.system_prompt.splitlines()],
            "",
        ]
    thread = tree.shown_thread(conversation)
    files = services.attachments.of_messages([shown.message.pk for shown in thread])
    for shown in thread:
        m = shown.message
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
        if shown.versions > 1:
            notes.append(
                _("version %(version)d of %(versions)d")
                % {"version": shown.version, "versions": shown.versions}
            )
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
