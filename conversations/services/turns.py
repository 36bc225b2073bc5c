"""Turns: a person's message and the reply placeholder stored together (send, regenerate,
edit), the plan a generation runs from, and the history sent upstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import frames, rows
from conversations.credentials import GatewayCredential
from conversations.models import ApiCredential, Conversation, Message
from conversations.services import (
    ServiceError,
    attachments,
    conversations,
    credentials,
    events,
    replies,
)
from conversations.text import clean

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnPlan:
    """Everything a generation needs, decided inside the transaction that stored the turn."""

    conversation_id: int
    conversation_public_id: UUID
    owner_id: int
    message_id: int
    message_public_id: UUID
    credential: GatewayCredential
    # The Messages API `messages` for this reply, read in the transaction that stored the
    # turn (one trip to the database thread less before the first token).
    history: list[dict[str, Any]]
    model: str
    system: str
    temperature: float | None
    top_p: float | None
    max_tokens: int
    # The first exchange of a conversation without a chosen title: name it afterwards.
    name_after: bool = False
    # The automatic title this turn gave the conversation: indexed by `finish_reply`.
    first_title: str = ""
    # The question this turn stored (none for a regenerate): indexed by `finish_reply` with
    # the reply, and the text a first exchange's generated title is asked from.
    question_id: int | None = None
    question_text: str = ""


@dataclass(frozen=True)
class TurnStart:
    user_message: Message
    assistant_message: Message | None
    plan: TurnPlan | None  # None: an idempotent resend of a turn already stored


def validate_content(content: Any, *, allow_empty: bool = False) -> str:
    """The text of a message a person sends, cleaned (`conversations.text`: NUL removed,
    lone surrogates replaced), or a ServiceError saying why it cannot be sent."""
    if not isinstance(content, str):
        raise ServiceError("invalid_content", _("A message must be text."))
    content = clean(content)
    if not content.strip() and not allow_empty:
        raise ServiceError("empty_message", _("Type a message before sending."))
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ServiceError(
            "message_too_long",
            _("This message has %(length)d characters; the limit is %(limit)d.")
            % {"length": len(content), "limit": limit},
        )
    return content


def _plan(
    conversation: Conversation,
    reply: Message,
    credential: GatewayCredential,
    *,
    name_after: bool = False,
    first_title: str = "",
    question: Message | None = None,
) -> TurnPlan:
    return TurnPlan(
        name_after=name_after,
        first_title=first_title,
        question_id=question.pk if question is not None else None,
        question_text=question.content if question is not None else "",
        conversation_id=conversation.pk,
        conversation_public_id=conversation.public_id,
        owner_id=conversation.owner_id,
        message_id=reply.pk,
        message_public_id=reply.public_id,
        credential=credential,
        model=reply.model,
        system=conversation.system_prompt,
        temperature=conversation.temperature,
        top_p=conversation.top_p,
        max_tokens=conversation.max_tokens or settings.CHAT_DEFAULT_MAX_TOKENS,
        history=load_history(
            conversation.pk, reply.pk, attachments.of_thread(conversation.pk, reply.pk)
        ),
    )


LAST_USED_RESOLUTION = timedelta(minutes=1)


class _Resent(Exception):
    """The question's client_id is already stored: a resend, not a new turn."""


def _insert_turn(
    conversation: Conversation, credential: GatewayCredential, question: Message | None = None
) -> Message:
    """Store the question (if any) and the assistant placeholder with one INSERT.

    The partial unique index refuses a second streaming placeholder, and the client_id
    index a question stored before: the database, not a prior SELECT, decides both.
    """
    now = timezone.now()
    if credential.credential_id is not None and (
        credential.last_used_at is None or now - credential.last_used_at > LAST_USED_RESOLUTION
    ):
        # To the minute is enough, and spares a write on most turns.
        ApiCredential.objects.filter(pk=credential.credential_id).update(last_used_at=now)
    reply = Message(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=conversation.model or credential.default_model,
        lease_expires_at=now + timedelta(seconds=settings.CHAT_LEASE_SECONDS),
    )
    turn = [reply] if question is None else [question, reply]
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                # One multi-row INSERT; ids follow the list, so the question comes first.
                rows.insert(rows.database(), turn)
            return reply
        except IntegrityError:
            if (
                question is not None
                and question.client_id
                and conversation.messages.filter(
                    client_id=question.client_id, role=Message.Role.USER
                ).exists()
            ):
                raise _Resent from None
            # Another reply streams, or a dead process left one: reap only then, so the
            # common path costs no extra query; if it was alive, refuse.
            if attempt == 2 or not replies.reap_stale_replies(conversation_id=conversation.pk):
                break
    raise ServiceError(
        "generation_running",
        _("A reply is still being written. Wait for it to finish or press Stop."),
    )


def start_turn(
    user: AbstractBaseUser,
    conversation: Conversation,
    content: Any,
    client_id: str = "",
    attachment_ids: tuple[str, ...] | list[str] = (),
) -> TurnStart:
    """Store the user's message and the assistant placeholder in one transaction.

    A resend of a stored `client_id` answers with the stored message and starts nothing.
    The limits and the model are checked after the INSERT, inside the transaction: a resend
    is neither counted nor refused, and a refused turn rolls back and stores nothing. With
    attachments (uploaded for this conversation, not yet sent) the text may be empty.
    """
    ids = attachments.validate_ids(list(attachment_ids))
    content = validate_content(content, allow_empty=bool(ids))
    credential = credentials.of_user(user)
    try:
        with transaction.atomic():
            # The row as it is now: the caller's copy may predate a rename or new settings.
            conversation = conversations.current(conversation)
            question = Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=content,
                client_id=client_id,
            )
            reply = _insert_turn(conversation, credential, question)
            files = attachments.link(conversation, ids, question.pk)
            credentials.within_limits(user, credential)
            credentials.check_model(conversation, credential)
            changes: dict[str, Any] = {"updated_at": timezone.now()}
            name_after = not conversation.title_is_custom and not conversation.title
            first_title = ""
            if not conversation.title:
                # Until a better title is chosen, the question's first words name the chat.
                # Indexed for search with the question and the reply, when the reply ends.
                changes["title"] = conversation.title = first_title = conversations.fallback_title(
                    content
                )
                events.broadcast_on_commit(
                    conversation.public_id, frames.conversation(conversation)
                )
            conversations.update_row(conversation.pk, **changes)
            described = [frames.attachment(f, conversation.public_id) for f in files]
            events.broadcast_on_commit(conversation.public_id, frames.message(question, described))
            events.broadcast_on_commit(conversation.public_id, frames.message(reply))
            plan = _plan(
                conversation,
                reply,
                credential,
                name_after=name_after,
                first_title=first_title,
                question=question,
            )
    except _Resent:
        existing = conversation.messages.get(client_id=client_id, role=Message.Role.USER)
        return TurnStart(existing, None, None)
    return TurnStart(question, reply, plan)


def regenerate(user: AbstractBaseUser, conversation: Conversation) -> TurnStart:
    """Answer the last user message again; the previous answer is kept as a superseded version."""
    credential = credentials.for_turn(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = conversations.current(conversation)
        credentials.check_model(conversation, credential)
        active = list(conversation.messages.filter(superseded_at=None).order_by("-id")[:2])
        if not active:
            raise ServiceError("nothing_to_regenerate", _("There is no reply to regenerate yet."))
        last = active[0]
        if last.role == Message.Role.ASSISTANT:
            if last.status == Message.Status.STREAMING:
                raise ServiceError(
                    "generation_running",
                    _("A reply is still being written. Wait for it to finish or press Stop."),
                )
            Message.objects.filter(pk=last.pk).update(superseded_at=timezone.now())
            question = active[1] if len(active) > 1 else None
        else:
            question = last
        if question is None or question.role != Message.Role.USER:
            raise ServiceError("nothing_to_regenerate", _("There is no question to answer again."))
        reply = _insert_turn(conversation, credential)
        conversations.update_row(conversation.pk, updated_at=timezone.now())
        if last.role == Message.Role.ASSISTANT:
            events.broadcast_on_commit(conversation.public_id, frames.superseded([last.public_id]))
        events.broadcast_on_commit(conversation.public_id, frames.message(reply))
    return TurnStart(question, reply, _plan(conversation, reply, credential))


def edit_and_resend(
    user: AbstractBaseUser, conversation: Conversation, message_public_id: Any, content: Any
) -> TurnStart:
    """Rewrite an earlier user message: it and everything after it become previous versions."""
    content = validate_content(content)
    try:
        target_id = UUID(str(message_public_id))
    except ValueError:
        raise ServiceError("invalid_message_id", _("That message id is not valid.")) from None
    credential = credentials.for_turn(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = conversations.current(conversation)
        credentials.check_model(conversation, credential)
        target = conversation.messages.filter(public_id=target_id, superseded_at=None).first()
        if target is None:
            raise ServiceError("message_not_found", _("That message is not in this conversation."))
        if target.role != Message.Role.USER:
            raise ServiceError("not_editable", _("Only your own messages can be edited."))
        later = conversation.messages.filter(id__gte=target.pk, superseded_at=None)
        if later.filter(status=Message.Status.STREAMING).exists():
            raise ServiceError(
                "generation_running",
                _("A reply is still being written. Wait for it to finish or press Stop."),
            )
        superseded = list(later.values_list("public_id", flat=True))
        later.update(superseded_at=timezone.now())
        question = Message(conversation=conversation, role=Message.Role.USER, content=content)
        reply = _insert_turn(conversation, credential, question)
        conversations.update_row(conversation.pk, updated_at=timezone.now())
        events.broadcast_on_commit(conversation.public_id, frames.superseded(superseded))
        events.broadcast_on_commit(conversation.public_id, frames.message(question))
        events.broadcast_on_commit(conversation.public_id, frames.message(reply))
    return TurnStart(question, reply, _plan(conversation, reply, credential, question=question))


def load_history(
    conversation_id: int,
    up_to_message_id: int,
    files: dict[int, list[Any]] | None = None,
) -> list[dict[str, Any]]:
    """The Messages API `messages` list for a reply, from one query over the active thread.

    Only finished text goes upstream: failed or empty replies are left out, thinking is
    never resent, and consecutive messages of one role are merged so roles alternate.
    `files` (message id to its attachments, `services.attachments.of_thread`) adds an
    `attachments` list to the messages that carry some; the generation turns them into
    content blocks (`conversations.attachments.expand`).
    """
    db = rows.database()
    role_, content_, status_, id_, conversation_, superseded_ = (
        rows.column(db, Message, name)
        for name in ("role", "content", "status", "id", "conversation", "superseded_at")
    )
    stored = rows.all_values(
        db,
        # Hand-written: every turn reads it (see `conversations.rows`).
        f"SELECT {role_}, {content_}, {status_}, {id_} FROM {rows.table(db, Message)} "
        f"WHERE {conversation_} = %s AND {superseded_} IS NULL AND {id_} < %s ORDER BY {id_}",
        [conversation_id, up_to_message_id],
    )
    history: list[dict[str, Any]] = []
    for role, content, status, message_id in stored:
        if role == Message.Role.ASSISTANT and (
            status == Message.Status.ERROR or not content.strip()
        ):
            continue
        attached = files.get(message_id) if files else None
        if history and history[-1]["role"] == role:
            if content:
                history[-1]["content"] += ("\n\n" if history[-1]["content"] else "") + content
            if attached:
                history[-1].setdefault("attachments", []).extend(attached)
        else:
            history.append({"role": role, "content": content})
            if attached:
                history[-1]["attachments"] = list(attached)
    # The API wants the first message from the user.
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
    return history
