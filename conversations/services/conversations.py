"""Conversations: create, rename, delete, settings, generated titles, and the row helpers the
turn services share.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import frames, rows
from conversations.models import Conversation
from conversations.services import ServiceError, credentials, events, search_index
from conversations.text import clean

logger = logging.getLogger(__name__)


def create_conversation(
    owner: AbstractBaseUser,
    *,
    title: str = "",
    model: Any = None,
    allowed: tuple[str, ...] = (),
) -> Conversation:
    """A new conversation; with `model` (the home page's Model select), that model, which
    must be one of `allowed` (refused as `choose_model` refuses it, nothing created)."""
    if model:
        _check_model(model, allowed)
    return Conversation.objects.create(
        owner=owner, title=clean(title).strip()[:200], model=model or ""
    )


def get_conversation(user: AbstractBaseUser, public_id: UUID | str) -> Conversation | None:
    """The conversation if `user` owns it. Another person's looks exactly like a missing one."""
    if not user.is_authenticated:
        return None
    return Conversation.objects.filter(public_id=public_id, owner=user).first()


def rename_conversation(conversation: Conversation, title: Any) -> Conversation:
    if isinstance(title, str):
        title = clean(title)
    if not isinstance(title, str) or not title.strip():
        raise ServiceError("invalid_title", _("A title cannot be empty."))
    title = " ".join(title.split())
    if len(title) > 200:
        raise ServiceError("invalid_title", _("A title can have at most 200 characters."))
    with transaction.atomic():
        conversation.title = title
        conversation.title_is_custom = True
        conversation.save(update_fields=["title", "title_is_custom"])
        search_index.index_title(conversation)
        events.broadcast_on_commit(conversation.public_id, frames.conversation(conversation))
    return conversation


def delete_conversation(conversation: Conversation) -> None:
    """Delete a conversation with its messages and their search entries."""
    public_id = conversation.public_id
    with transaction.atomic():
        conversation.delete()
        events.broadcast_on_commit(public_id, {"type": "deleted"})
        # A reply still being written would go on costing tokens for nothing: the process
        # writing it stops it (its final save then finds no row and does nothing).
        events._group_send_on_commit(
            events.control_group(public_id), events.stop_request(public_id)
        )


def delete_conversations(conversations: Iterable[Conversation]) -> int:
    """Delete several conversations in one transaction, each as `delete_conversation` does
    (the admin's bulk action). Returns how many."""
    with transaction.atomic():
        # A list first: SQLite must not iterate a table while rows of it are deleted.
        doomed = list(conversations)
        for conversation in doomed:
            delete_conversation(conversation)
    return len(doomed)


def delete_user(user: AbstractBaseUser, *, by: AbstractBaseUser | None = None) -> None:
    """Delete a person's account (the admin; `by`: who). Their conversations go first, as
    `delete_conversation` does: replies stop and open pages are told; their credentials
    too, each kept in the audit as deleted. The rest of what the account owns (search
    entries) goes with it."""
    with transaction.atomic():
        delete_conversations(Conversation.objects.filter(owner=user))
        credentials.delete_credentials_of(user, by=by)
        user.delete()


def update_settings(conversation: Conversation, **values: Any) -> Conversation:
    """Apply validated settings (see forms.ConversationSettingsForm); used from the next turn."""
    allowed = {"system_prompt", "model", "temperature", "top_p", "max_tokens"}
    unknown = set(values) - allowed
    if unknown:
        raise ServiceError(
            "invalid_settings",
            _("Unknown settings: %(names)s") % {"names": ", ".join(sorted(unknown))},
        )
    for name, value in values.items():
        setattr(conversation, name, clean(value) if isinstance(value, str) else value)
    conversation.save(update_fields=[*values, "updated_at"])
    return conversation


def choose_model(conversation: Conversation, model: Any, allowed: tuple[str, ...]) -> Conversation:
    """The model of the conversation's next turns, one of `allowed` (the person's credential's
    models); anything else is refused and nothing changes. Turns check it again
    (`credentials.check_model`): the credential may change later."""
    _check_model(model, allowed)
    return update_settings(conversation, model=model)


def _check_model(model: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(model, str) or model not in allowed:
        raise ServiceError(
            "model_not_allowed",
            _("Choose one of the models your API key allows: %(models)s.")
            % {"models": ", ".join(allowed) or _("none")},
        )


def pin(conversation: Conversation, pinned: bool) -> Conversation:
    """Pin a conversation on top of the list, or unpin it. Pinning an archived conversation
    brings it back to the list: a pin is for what one keeps coming back to."""
    now = timezone.now()
    values: dict[str, Any] = {"pinned_at": now if pinned else None}
    if pinned:
        values["archived_at"] = None
    return _mark(conversation, values)


def archive(conversation: Conversation, archived: bool) -> Conversation:
    """Move a conversation out of the list (to the Archived page), or back. An archived
    conversation is no longer pinned; search and its URL still find it."""
    values: dict[str, Any] = {"archived_at": timezone.now() if archived else None}
    if archived:
        values["pinned_at"] = None
    return _mark(conversation, values)


def _mark(conversation: Conversation, values: dict[str, Any]) -> Conversation:
    # An update, not a save: pinning or archiving is not activity, so `updated_at` (the
    # list's order, auto_now) stays as it was.
    Conversation.objects.filter(pk=conversation.pk).update(**values)
    for name, value in values.items():
        setattr(conversation, name, value)
    return conversation


def set_generated_title(conversation_id: int, title: str) -> Conversation | None:
    """A title summarised by the model; only replaces the automatic one (first words)."""
    title = " ".join(clean(title).split()).strip("\"'“”「」《》 ")[:80]
    if not title:
        return None
    with transaction.atomic():
        conversation = locked(conversation_id)
        if conversation is None or conversation.title_is_custom:
            return None
        conversation.title = title
        update_row(conversation_id, title=title)
        search_index.index_title(conversation)
        events.broadcast_on_commit(conversation.public_id, frames.conversation(conversation))
    return conversation


def current(conversation: Conversation) -> Conversation:
    """The conversation's row as it is now, locked for this transaction."""
    current = locked(conversation.pk)
    if current is None:
        # Deleted from another tab while this one stayed open.
        raise ServiceError("conversation_deleted", _("This conversation was deleted."))
    return current


def locked(conversation_id: int) -> Conversation | None:
    """The conversation's row, locked for this transaction (turn path: see `rows`)."""
    db = rows.database()
    return rows.one(
        db, Conversation, rows.by_pk(db, Conversation), [conversation_id], for_update=True
    )


def update_row(conversation_id: int, **values: Any) -> None:
    db = rows.database()
    rows.update(db, Conversation, values, rows.by_pk(db, Conversation), [conversation_id])


def fallback_title(content: str, limit: int = 60) -> str:
    words = " ".join(content.split())
    if len(words) <= limit:
        return words
    cut = words[:limit].rsplit(" ", 1)[0] if " " in words[:limit] else words[:limit]
    return cut + "…"
