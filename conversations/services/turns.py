"""Turns: a person's message and the reply placeholder stored together (send, regenerate,
edit), the plan a generation runs from, and the history sent upstream.
"""

from __future__ import annotations

import dataclasses
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

from conversations import context, frames, rows, tree
from conversations.credentials import GatewayCredential
from conversations.models import ApiCredential, Attachment, Conversation, Message
from conversations.services import (
    ServiceError,
    attachments,
    conversations,
    credentials,
    events,
    replies,
    threads,
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
    # Long conversations (`conversations.context`): the public id (32 hex digits) of each
    # history entry's first message, and what the last finished reply of the thread was sent.
    history_ids: tuple[str, ...] = ()
    previous: context.Previous | None = None


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
    thread: list[tuple[Any, ...]],
    *,
    name_after: bool = False,
    first_title: str = "",
    question: Message | None = None,
) -> TurnPlan:
    history, ids = history_and_ids(thread)
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
        history=history,
        history_ids=tuple(ids),
        previous=previous_context(thread),
    )


LAST_USED_RESOLUTION = timedelta(minutes=1)


class _Resent(Exception):
    """The question's client_id is already stored: a resend, not a new turn."""


def _insert_turn(
    conversation: Conversation,
    credential: GatewayCredential,
    question: Message | None = None,
    *,
    parent_id: int | None = None,
) -> Message:
    """Store the question (if any) and the assistant placeholder, its child (or, without a
    question, the child of `parent_id`), in one savepoint.

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
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                db = rows.database()
                if question is not None:
                    # Two INSERTs: the reply's parent is the question's new id.
                    rows.insert(db, [question])
                    reply.parent_id = question.pk
                else:
                    reply.parent_id = parent_id
                rows.insert(db, [reply])
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
    """Store the user's message, continuing the shown thread, and the assistant placeholder
    in one transaction.

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
            # The row as it is now: the caller's copy may predate a rename, new settings or
            # a switch to another version (its shown leaf is what this turn continues).
            conversation = conversations.current(conversation)
            leaf_id = conversation.shown_leaf_id
            question = Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=content,
                client_id=client_id,
                parent_id=leaf_id,
            )
            reply = _insert_turn(conversation, credential, question)
            files = attachments.link(conversation, ids, question.pk)
            credentials.within_limits(user, credential)
            credentials.check_model(conversation, credential)
            # The leaf had no children (a shown thread ends where nothing follows): the new
            # question and reply are the only versions of themselves.
            thread = thread_rows(leaf_id)
            changes: dict[str, Any] = {"updated_at": timezone.now(), "shown_leaf": reply.pk}
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
            leaf_public_id = UUID(str(thread[-1][3])) if thread else None
            described = [frames.attachment(f, conversation.public_id) for f in files]
            events.broadcast_on_commit(
                conversation.public_id,
                frames.message(question, parent_id=leaf_public_id, attachments=described),
            )
            events.broadcast_on_commit(
                conversation.public_id, frames.message(reply, parent_id=question.public_id)
            )
            plan = _plan(
                conversation,
                reply,
                credential,
                [
                    *thread,
                    (
                        question.role,
                        content,
                        question.status,
                        question.public_id,
                        question.pk,
                        bool(files),
                    ),
                ],
                name_after=name_after,
                first_title=first_title,
                question=question,
            )
    except _Resent:
        existing = conversation.messages.select_related("parent").get(
            client_id=client_id, role=Message.Role.USER
        )
        return TurnStart(existing, None, None)
    return TurnStart(question, reply, plan)


def _refuse_running() -> ServiceError:
    return ServiceError(
        "generation_running",
        _("A reply is still being written. Wait for it to finish or press Stop."),
    )


def regenerate(
    user: AbstractBaseUser, conversation: Conversation, message_public_id: Any = None
) -> TurnStart:
    """Answer a question again: a new version of the reply `message_public_id` (default: the
    last one shown), beside the old ones, and shown. A question at the end of the shown
    thread that has no answer (its reply never started) is answered."""
    target_id = threads.message_uuid(message_public_id) if message_public_id is not None else None
    credential = credentials.for_turn(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = conversations.current(conversation)
        credentials.check_model(conversation, credential)
        shape = tree.load(conversation.pk)
        if target_id is None:
            leaf = conversation.shown_leaf_id
            if leaf is None:
                raise ServiceError(
                    "nothing_to_regenerate", _("There is no reply to regenerate yet.")
                )
            node = shape.nodes[leaf]
        else:
            found = shape.by_public_id(target_id)
            if found is None:
                raise ServiceError(
                    "message_not_found", _("That message is not in this conversation.")
                )
            if found.role != Message.Role.ASSISTANT:
                raise ServiceError(
                    "not_regenerable", _("Only a reply can be regenerated; edit a question.")
                )
            node = found
        question_id = node.parent_id if node.role == Message.Role.ASSISTANT else node.id
        if question_id is None or shape.nodes[question_id].role != Message.Role.USER:
            raise ServiceError("nothing_to_regenerate", _("There is no question to answer again."))
        if node.role == Message.Role.ASSISTANT and (
            Message.objects.filter(pk=node.id, status=Message.Status.STREAMING).exists()
        ):
            # The index would refuse the new placeholder all the same; this says it sooner.
            raise _refuse_running()
        question = Message.objects.get(pk=question_id)
        reply = _insert_turn(conversation, credential, parent_id=question_id)
        before = shape.path(conversation.shown_leaf_id)
        shape.add(tree.Node(reply.pk, question_id, None, reply.role, reply.public_id))
        after = threads.show(conversation, shape, reply.pk)
        conversations.update_row(conversation.pk, updated_at=timezone.now())
        shown = threads.broadcast_change(conversation, shape, before, after)
        events.broadcast_on_commit(conversation.public_id, _message_frame(shown[-1]))
        thread = thread_rows(question_id)
        plan = _plan(conversation, reply, credential, thread)
    if (
        question.parent_id is None
        and not conversation.title_is_custom
        and conversation.title == conversations.fallback_title(question.content)
    ):
        # A first reply again while the title is still the question's first words (its
        # first reply failed, say): name the conversation after this one.
        plan = dataclasses.replace(plan, name_after=True, question_text=question.content)
    return TurnStart(question, reply, plan)


def edit_and_resend(
    user: AbstractBaseUser, conversation: Conversation, message_public_id: Any, content: Any
) -> TurnStart:
    """A new version of a question, beside the old one, and a reply to it, both shown.
    What followed the old version stays under it, reachable by switching back."""
    content = validate_content(content)
    target_id = threads.message_uuid(message_public_id)
    credential = credentials.for_turn(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = conversations.current(conversation)
        credentials.check_model(conversation, credential)
        shape = tree.load(conversation.pk)
        target = shape.by_public_id(target_id)
        if target is None:
            raise ServiceError("message_not_found", _("That message is not in this conversation."))
        if target.role != Message.Role.USER:
            raise ServiceError("not_editable", _("Only your own messages can be edited."))
        question = Message(
            conversation=conversation,
            role=Message.Role.USER,
            content=content,
            parent_id=target.parent_id,
        )
        reply = _insert_turn(conversation, credential, question)
        # The new version keeps the files of the one it edits.
        kept = attachments.copy_to(target.id, question.pk)
        before = shape.path(conversation.shown_leaf_id)
        shape.add(tree.Node(question.pk, target.parent_id, None, question.role, question.public_id))
        shape.add(tree.Node(reply.pk, question.pk, None, reply.role, reply.public_id))
        after = threads.show(conversation, shape, reply.pk)
        conversations.update_row(conversation.pk, updated_at=timezone.now())
        shown = threads.broadcast_change(conversation, shape, before, after)
        described = [frames.attachment(f, conversation.public_id) for f in kept]
        for item in shown[-2:]:
            files = described if item.message.pk == question.pk else None
            events.broadcast_on_commit(conversation.public_id, _message_frame(item, files))
        thread = [
            *thread_rows(target.parent_id),
            (question.role, content, question.status, question.public_id, question.pk, bool(kept)),
        ]
        plan = _plan(conversation, reply, credential, thread, question=question)
    # A new first question: the title follows the thread shown, unless the person chose it.
    name_after = target.parent_id is None and not conversation.title_is_custom
    return TurnStart(question, reply, dataclasses.replace(plan, name_after=name_after))


def _message_frame(
    shown: tree.Shown, attachments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return frames.message(
        shown.message,
        parent_id=shown.parent_id,
        version=shown.version,
        versions=shown.versions,
        attachments=attachments,
    )


def thread_rows(message_id: int | None) -> list[tuple[Any, ...]]:
    """A message and its ancestors, root first: (role, content, status, public_id, id,
    has_attachments) each.

    One recursive query up the parents (every turn reads it: see `conversations.rows`);
    whether a message has attachments is part of it, so a thread without any costs no
    second query.
    """
    if message_id is None:
        return []
    db = rows.database()
    table = rows.table(db, Message)
    id_, parent_, role_, content_, status_, public_id_ = (
        rows.column(db, Message, name)
        for name in ("id", "parent", "role", "content", "status", "public_id")
    )
    files, file_message = rows.table(db, Attachment), rows.column(db, Attachment, "message")
    return rows.all_values(
        db,
        f"WITH RECURSIVE up(id, parent, depth) AS ("
        f"SELECT {id_}, {parent_}, 0 FROM {table} WHERE {id_} = %s "
        f"UNION ALL SELECT m.{id_}, m.{parent_}, up.depth + 1 FROM {table} m "
        f"JOIN up ON m.{id_} = up.parent) "
        f"SELECT m.{role_}, m.{content_}, m.{status_}, m.{public_id_}, m.{id_}, "
        f"EXISTS (SELECT 1 FROM {files} f WHERE f.{file_message} = m.{id_}) "
        f"FROM up JOIN {table} m ON m.{id_} = up.id ORDER BY up.depth DESC",
        [message_id],
    )


def load_history(message_id: int | None) -> list[dict[str, Any]]:
    """The Messages API `messages` for a reply to `message_id`: its thread, root to it."""
    return history_of(thread_rows(message_id))


def history_of(thread: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The Messages API `messages` list for a reply to the end of `thread` (root first);
    see `history_and_ids`."""
    return history_and_ids(thread)[0]


def history_and_ids(thread: list[tuple[Any, ...]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The Messages API `messages` list for a reply to the end of `thread` (root first).

    Only finished text goes upstream: failed or empty replies are left out, thinking is
    never resent, and consecutive messages of one role are merged so roles alternate.
    A message with attachments (the last of the row, see `thread_rows`) carries an
    `attachments` list; the generation turns them into content blocks
    (`conversations.attachments.expand`).
    """
    with_files = [row[4] for row in thread if len(row) > 5 and row[5]]
    files = attachments.sendable_by_message(with_files) if with_files else {}
    history: list[dict[str, Any]] = []
    # The public id of each entry's first message: where a cut of the history falls.
    ids: list[str] = []
    for role, content, status, *rest in thread:
        message_id = rest[1] if len(rest) > 1 else None
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
            ids.append(_hex(rest[0]) if rest else "")
            if attached:
                history[-1]["attachments"] = list(attached)
    # The API wants the first message from the user.
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
        ids.pop(0)
    return history, ids


def _hex(public_id: Any) -> str:
    """A public id as 32 hex digits, the one form the history's ids are compared in:
    SQLite hands UUIDs back so, PostgreSQL as UUIDs, the stored context with dashes. A
    string operation, not a UUID parse: every message of a long thread goes through it."""
    return str(public_id).replace("-", "").lower() if public_id else ""


def previous_context(thread: list[tuple[Any, ...]]) -> context.Previous | None:
    """What the last finished reply of the thread was sent (one small query by key): its
    cut, summary and the prompt tokens the gateway counted."""
    for role, content, status, public_id, message_id, *_rest in reversed(thread):
        if role != Message.Role.ASSISTANT or status == Message.Status.ERROR:
            continue
        if not content.strip() or status == Message.Status.STREAMING:
            continue
        found = (
            Message.objects.filter(pk=message_id)
            .values_list(
                "context", "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"
            )
            .first()
        )
        if found is None:
            return None
        stored, input_tokens, cache_read, cache_write = found
        stored = stored if isinstance(stored, dict) else {}
        prompt = input_tokens + (cache_read or 0) + (cache_write or 0) if input_tokens else None
        first = _hex(stored.get("first"))
        return context.Previous(
            reply_id=_hex(public_id),
            first_id=first or None,
            summary=str(stored.get("summary") or ""),
            prompt_tokens=prompt,
            digest=str(stored.get("digest") or ""),
        )
    return None
