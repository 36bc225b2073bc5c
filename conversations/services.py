"""Every state change of conversations, messages and credentials.

Consumers (through `generation`), views, the admin (its saves and deletes too) and the
management commands call these functions; no other code writes conversations, messages or
credentials. Functions are synchronous (they run in a database thread); each one that
others must hear about broadcasts its websocket frame *after* its transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import credentials, crypto, frames, layers, limits, rows
from conversations.models import ApiCredential, Conversation, Message, SearchDocument
from conversations.search import segment
from conversations.text import clean
from conversations.upstream import GatewayCredential

logger = logging.getLogger(__name__)
T = TypeVar("T")


# What a write can raise when the database refuses it or cannot take it: Django's wrapped
# driver errors, and the UnicodeEncodeError both drivers raise (unwrapped) for text that is
# not UTF-8. Text is cleaned where it comes in (`conversations.text`); these are caught
# where a refused write must not end a socket or lose a reply.
STORAGE_ERRORS: tuple[type[Exception], ...] = (DatabaseError, UnicodeEncodeError)


class ServiceError(Exception):
    """A refused request: `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- Broadcasting ------------------------------------------------------------------------
def group_name(conversation_public_id: UUID | str) -> str:
    return f"conv.{UUID(str(conversation_public_id)).hex}"


async def broadcast(conversation_public_id: UUID | str, frame: dict[str, Any]) -> None:
    """Send one protocol frame to every socket of the conversation, in any process."""
    await send_to_group(group_name(conversation_public_id), frame)


async def send_to_group(group: str, frame: dict[str, Any]) -> None:
    """`broadcast` for a caller that already knows the group's name (once per token)."""
    await get_channel_layer().group_send(group, {"type": "chat.frame", "frame": frame})


def control_group(conversation_public_id: UUID | str) -> str:
    """The group of the process writing this conversation's reply: it takes stop and
    snapshot requests from any process (see `generation.Registry`)."""
    return f"ctl.{UUID(str(conversation_public_id)).hex}"


def stop_request(conversation_public_id: UUID | str) -> dict[str, Any]:
    """The control-group message that stops this conversation's reply, in any process."""
    return {"type": "generation.stop", "conversation": str(conversation_public_id)}


# A channel-layer message, or a function that builds it where it is sent: a `done` frame
# renders Markdown, which must not hold up the database thread every socket shares.
LayerMessage = dict[str, Any] | Callable[[], dict[str, Any]]

# Channel-layer messages queued by a service running under `call`: its caller sends them,
# in order, once the service has returned (so after its transaction committed).
_outbox: ContextVar[list[tuple[str, LayerMessage]] | None] = ContextVar("outbox", default=None)


def broadcast_on_commit(conversation_public_id: UUID, frame: dict[str, Any]) -> None:
    _group_send_on_commit(group_name(conversation_public_id), _chat_frame(frame))


def broadcast_done_on_commit(conversation_public_id: UUID, reply: Message) -> None:
    """`broadcast_on_commit` of the reply's `done` frame, built by the sender (see `call`)."""
    _group_send_on_commit(
        group_name(conversation_public_id), lambda: _chat_frame(frames.done(reply))
    )


def _chat_frame(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat.frame", "frame": frame}


def _group_send_on_commit(group: str, message: LayerMessage) -> None:
    def deliver() -> None:
        outbox = _outbox.get()
        if outbox is not None:
            outbox.append((group, message))
        else:
            # Called from plain synchronous code (a view, the admin, a command).
            async_to_sync(get_channel_layer().group_send)(group, _built(message))

    transaction.on_commit(deliver)


def _built(message: LayerMessage) -> dict[str, Any]:
    return message() if callable(message) else message


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service from async code: in the database thread, then send its frames.

    Never blocks the database thread on the event loop (which a broadcast from inside the
    thread would), keeps the frames in the order the service produced them, and builds the
    ones the service left to build (`LayerMessage`) here, in the event loop.
    """

    def run() -> tuple[T, list[tuple[str, LayerMessage]]]:
        outbox: list[tuple[str, LayerMessage]] = []
        token = _outbox.set(outbox)
        try:
            return function(*args, **kwargs), outbox
        finally:
            _outbox.reset(token)

    result, outbox = await database_sync_to_async(run)()
    layer = get_channel_layer()
    for group, deferred in outbox:
        message = _built(deferred)
        # The change is committed whatever happens to the layer: a frame lost in an outage
        # is made good by the pages' resync (seq gaps, a reply followed in silence).
        await layers.best_effort(partial(layer.group_send, group, message), message["type"])
    return result


# --- Conversations -----------------------------------------------------------------------
def create_conversation(owner: AbstractBaseUser, *, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, title=clean(title).strip()[:200])


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
        _index_title(conversation)
        broadcast_on_commit(conversation.public_id, frames.conversation(conversation))
    return conversation


def delete_conversation(conversation: Conversation) -> None:
    """Delete a conversation with its messages and their search entries."""
    public_id = conversation.public_id
    with transaction.atomic():
        conversation.delete()
        broadcast_on_commit(public_id, {"type": "deleted"})
        # A reply still being written would go on costing tokens for nothing: the process
        # writing it stops it (its final save then finds no row and does nothing).
        _group_send_on_commit(control_group(public_id), stop_request(public_id))


def delete_conversations(conversations: Iterable[Conversation]) -> int:
    """Delete several conversations in one transaction, each as `delete_conversation` does
    (the admin's bulk action). Returns how many."""
    with transaction.atomic():
        # A list first: SQLite must not iterate a table while rows of it are deleted.
        doomed = list(conversations)
        for conversation in doomed:
            delete_conversation(conversation)
    return len(doomed)


def delete_user(user: AbstractBaseUser) -> None:
    """Delete a person's account (the admin). Their conversations go first, as
    `delete_conversation` does: replies stop and open pages are told. The rest of what the
    account owns (credentials, search entries) goes with it."""
    with transaction.atomic():
        delete_conversations(Conversation.objects.filter(owner=user))
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


def set_generated_title(conversation_id: int, title: str) -> Conversation | None:
    """A title summarised by the model; only replaces the automatic one (first words)."""
    title = " ".join(clean(title).split()).strip("\"'“”「」《》 ")[:80]
    if not title:
        return None
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if conversation is None or conversation.title_is_custom:
            return None
        conversation.title = title
        _update_conversation(conversation_id, title=title)
        _index_title(conversation)
        broadcast_on_commit(conversation.public_id, frames.conversation(conversation))
    return conversation


# --- Search index --------------------------------------------------------------------------
def _index_new_messages(owner_id: int, messages: list[Message], title: str = "") -> None:
    """Index messages that have no search entry yet, and a first title, in one statement.

    A title entry that exists already (the conversation was renamed meanwhile) is kept.
    """
    documents = [
        SearchDocument(
            owner_id=owner_id,
            conversation_id=m.conversation_id,
            message_id=m.pk,
            body=segment(m.content),
        )
        for m in messages
        if m.content.strip()
    ]
    if title and messages:
        documents.append(
            SearchDocument(
                owner_id=owner_id,
                conversation_id=messages[0].conversation_id,
                message=None,
                body=segment(title),
            )
        )
    if documents:
        rows.insert(rows.database(), documents, ignore_conflicts=True)


def _index_title(conversation: Conversation) -> None:
    """The conversation's title entry, replaced or created (one per conversation)."""
    db = rows.database()
    conversation_, message_ = (
        rows.column(db, SearchDocument, name) for name in ("conversation", "message")
    )
    where = f"WHERE {conversation_} = %s AND {message_} IS NULL"
    values = {"owner": conversation.owner_id, "body": segment(conversation.title)}
    # Twice at most: an entry inserted between the two statements is then updated.
    for _attempt in (1, 2):
        if rows.update(db, SearchDocument, values, where, [conversation.pk]):
            return
        document = SearchDocument(
            conversation_id=conversation.pk, owner_id=conversation.owner_id, body=values["body"]
        )
        if rows.insert(db, [document], ignore_conflicts=True):
            return


# --- Turns -------------------------------------------------------------------------------
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


def validate_content(content: Any) -> str:
    """The text of a message a person sends, cleaned (`conversations.text`: NUL removed,
    lone surrogates replaced), or a ServiceError saying why it cannot be sent."""
    if not isinstance(content, str):
        raise ServiceError("invalid_content", _("A message must be text."))
    content = clean(content)
    if not content.strip():
        raise ServiceError("empty_message", _("Type a message before sending."))
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ServiceError(
            "message_too_long",
            _("This message has %(length)d characters; the limit is %(limit)d.")
            % {"length": len(content), "limit": limit},
        )
    return content


def _credential_or_error(user: AbstractBaseUser) -> GatewayCredential:
    """The credential of the user's next turn, once the turn is within the limits.

    A turn action calls this (or `_credential` and then `_within_limits` in the same
    transaction) before its writes commit: a refused turn stores nothing and never reaches
    the gateway.
    """
    credential = _credential(user)
    _within_limits(user, credential)
    return credential


def _credential(user: AbstractBaseUser) -> GatewayCredential:
    try:
        credential = credentials.resolve(user)
    except crypto.DecryptionError:
        # FIELD_ENCRYPTION_KEYS lost the key this credential was stored with.
        logger.error("The API key of user %s cannot be decrypted", user.pk)
        raise ServiceError(
            "api_key_unreadable",
            _(
                "The server cannot read your stored API key. Ask your administrator to "
                "enter it again or to restore the encryption key it was saved with."
            ),
        ) from None
    if credential is None:
        raise ServiceError(
            "no_api_key",
            _("You have no API key for the gateway yet. Ask your administrator to give you one."),
        )
    return credential


def _within_limits(user: AbstractBaseUser, credential: GatewayCredential) -> None:
    try:
        limits.check_turn(user, credential)
    except limits.LimitExceeded as exc:
        raise ServiceError(exc.code, exc.message) from None


def _check_model(conversation: Conversation, credential: GatewayCredential) -> None:
    """Refuse a turn with a model the credential does not allow, whatever the conversation
    stored: the administrator may have narrowed the list since the model was chosen.

    A blank model is the credential's default, which is always allowed; a credential that
    lists no models allows its default only (as `ApiCredential.model_choices` reads it).
    """
    model = conversation.model or credential.default_model
    allowed = credential.allowed_models or (credential.default_model,)
    if model not in allowed:
        raise ServiceError(
            "model_not_allowed",
            _(
                "This conversation is set to the model %(model)s, which your API key does not "
                "allow. Choose one of these in the conversation's settings: %(models)s."
            )
            % {"model": model, "models": ", ".join(allowed)},
        )


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
        history=load_history(conversation.pk, reply.pk),
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
            if attempt == 2 or not reap_stale_replies(conversation_id=conversation.pk):
                break
    raise ServiceError(
        "generation_running",
        _("A reply is still being written. Wait for it to finish or press Stop."),
    )


def start_turn(
    user: AbstractBaseUser, conversation: Conversation, content: Any, client_id: str = ""
) -> TurnStart:
    """Store the user's message and the assistant placeholder in one transaction.

    A resend of a stored `client_id` answers with the stored message and starts nothing.
    The limits and the model are checked after the INSERT, inside the transaction: a resend
    is neither counted nor refused, and a refused turn rolls back and stores nothing.
    """
    content = validate_content(content)
    credential = _credential(user)
    try:
        with transaction.atomic():
            # The row as it is now: the caller's copy may predate a rename or new settings.
            conversation = _current(conversation)
            question = Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=content,
                client_id=client_id,
            )
            reply = _insert_turn(conversation, credential, question)
            _within_limits(user, credential)
            _check_model(conversation, credential)
            changes: dict[str, Any] = {"updated_at": timezone.now()}
            name_after = not conversation.title_is_custom and not conversation.title
            first_title = ""
            if not conversation.title:
                # Until a better title is chosen, the question's first words name the chat.
                # Indexed for search with the question and the reply, when the reply ends.
                changes["title"] = conversation.title = first_title = fallback_title(content)
                broadcast_on_commit(conversation.public_id, frames.conversation(conversation))
            _update_conversation(conversation.pk, **changes)
            broadcast_on_commit(conversation.public_id, frames.message(question))
            broadcast_on_commit(conversation.public_id, frames.message(reply))
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


def _current(conversation: Conversation) -> Conversation:
    """The conversation's row as it is now, locked for this transaction."""
    current = _locked(conversation.pk)
    if current is None:
        # Deleted from another tab while this one stayed open.
        raise ServiceError("conversation_deleted", _("This conversation was deleted."))
    return current


def _locked(conversation_id: int) -> Conversation | None:
    """The conversation's row, locked for this transaction (turn path: see `rows`)."""
    db = rows.database()
    return rows.one(
        db, Conversation, rows.by_pk(db, Conversation), [conversation_id], for_update=True
    )


def _update_conversation(conversation_id: int, **values: Any) -> None:
    """The conversation's row changed by every turn (its activity time, a first title)."""
    db = rows.database()
    rows.update(db, Conversation, values, rows.by_pk(db, Conversation), [conversation_id])


def fallback_title(content: str, limit: int = 60) -> str:
    words = " ".join(content.split())
    if len(words) <= limit:
        return words
    cut = words[:limit].rsplit(" ", 1)[0] if " " in words[:limit] else words[:limit]
    return cut + "…"


def regenerate(user: AbstractBaseUser, conversation: Conversation) -> TurnStart:
    """Answer the last user message again; the previous answer is kept as a superseded version."""
    credential = _credential_or_error(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = _current(conversation)
        _check_model(conversation, credential)
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
        _update_conversation(conversation.pk, updated_at=timezone.now())
        if last.role == Message.Role.ASSISTANT:
            broadcast_on_commit(conversation.public_id, frames.superseded([last.public_id]))
        broadcast_on_commit(conversation.public_id, frames.message(reply))
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
    credential = _credential_or_error(user)
    with transaction.atomic():
        # The row as it is now: the caller's copy may predate a rename or new settings.
        conversation = _current(conversation)
        _check_model(conversation, credential)
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
        _update_conversation(conversation.pk, updated_at=timezone.now())
        broadcast_on_commit(conversation.public_id, frames.superseded(superseded))
        broadcast_on_commit(conversation.public_id, frames.message(question))
        broadcast_on_commit(conversation.public_id, frames.message(reply))
    return TurnStart(question, reply, _plan(conversation, reply, credential, question=question))


# --- Generation bookkeeping -------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    message_id: int
    content: str
    thinking: str
    seq: int


CHECKPOINT_FIELDS = ("content", "thinking", "seq", "lease_expires_at")


def _streaming_reply(db: BaseDatabaseWrapper) -> str:
    """`WHERE id = %s AND status = %s`: a reply row, only while it is still streaming."""
    return f"{rows.by_pk(db, Message)} AND {rows.column(db, Message, 'status')} = %s"


def checkpoint(batch: list[Checkpoint], renew: list[int]) -> None:
    """Save partial replies and renew the leases of every running reply of this process.

    One call per process per interval, whatever the number of streams: the partial texts
    are separate rows, the lease renewal is a single UPDATE. A row the database refuses
    must not cost the others their checkpoint: then each row is saved on its own, its text
    cleaned (see `_checkpoint_one_by_one`).
    """
    lease_until = timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    try:
        with transaction.atomic():
            _save_checkpoints(batch, lease_until)
            _renew_leases(set(renew) - {item.message_id for item in batch}, lease_until)
        return
    except STORAGE_ERRORS:
        if not batch:
            raise
        logger.warning(
            "The checkpoint of %d replies failed; saving them one by one",
            len(batch),
            exc_info=True,
        )
    _checkpoint_one_by_one(batch, renew, lease_until)


def _save_checkpoints(batch: list[Checkpoint], lease_until: datetime) -> None:
    if not batch:
        return
    # One prepared statement run for every row (executemany): with hundreds of streams,
    # building an ORM UPDATE per row each second cost more than the writes. The status
    # guard is per row, so a reply finished meanwhile is never overwritten.
    db = rows.database()
    sets = ", ".join(f"{rows.column(db, Message, name)} = %s" for name in CHECKPOINT_FIELDS)
    lease = Message._meta.get_field("lease_expires_at").get_db_prep_save(lease_until, db)
    streaming = Message.Status.STREAMING.value
    with db.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {rows.table(db, Message)} SET {sets} {_streaming_reply(db)}",
            [
                (item.content, item.thinking, item.seq, lease, item.message_id, streaming)
                for item in batch
            ],
        )


def _renew_leases(message_ids: set[int], lease_until: datetime) -> None:
    if message_ids:
        Message.objects.filter(pk__in=message_ids, status=Message.Status.STREAMING).update(
            lease_expires_at=lease_until
        )


def _checkpoint_one_by_one(
    batch: list[Checkpoint], renew: list[int], lease_until: datetime
) -> None:
    """The slow way, after the batch failed: every row in a savepoint of its own, its text
    cleaned. A row refused even so keeps its last checkpoint, and its lease is renewed
    with the others' (the reply is alive; its final save tries again)."""
    saved: set[int] = set()
    with transaction.atomic():
        for item in batch:
            cleaned = Checkpoint(
                item.message_id, clean(item.content), clean(item.thinking), item.seq
            )
            try:
                with transaction.atomic():
                    _save_checkpoints([cleaned], lease_until)
            except STORAGE_ERRORS:
                logger.exception("The checkpoint of reply %s failed", item.message_id)
            else:
                saved.add(item.message_id)
        _renew_leases((set(renew) | {item.message_id for item in batch}) - saved, lease_until)


@dataclass(frozen=True)
class Outcome:
    status: str
    content: str
    thinking: str = ""
    seq: int = 0
    stop_reason: str = ""
    model: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_code: str = ""
    error_message: str = ""


def finish_reply(plan: TurnPlan, outcome: Outcome, *, index: bool = True) -> Message | None:
    """The final save of a reply. Returns the reply as saved, or None if it was already final.

    The caller builds the `done` frame from it, in the event loop: rendering the Markdown
    here would hold up the database thread that every socket of the process shares.

    The reply and the turn's new question are indexed for search in the same transaction,
    with the automatic title the turn gave the conversation (`plan.first_title`); without
    `index` they are not (the last try of a save the database refused: see
    `generation.save_reply`). Nothing is read back: the plan and the outcome hold
    everything the index and the frame need.
    """
    fields: dict[str, Any] = {
        "status": outcome.status,
        "content": outcome.content,
        "thinking": outcome.thinking,
        "seq": outcome.seq,
        "stop_reason": outcome.stop_reason,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "lease_expires_at": None,
        "updated_at": timezone.now(),
    }
    if outcome.model:
        fields["model"] = outcome.model
    with transaction.atomic():
        # Only a reply still streaming may be finished, by the one process writing it.
        db = rows.database()
        updated = rows.update(
            db,
            Message,
            fields,
            _streaming_reply(db),
            [plan.message_id, Message.Status.STREAMING.value],
        )
        reclaimed = False
        if not updated:
            # Another process took its lease for a dead process's and marked it interrupted
            # with the last checkpoint; a process that overloaded can renew late and still
            # be alive. The writer's own text is the truth: it replaces the reaper's mark.
            reclaimed = updated = rows.update(
                db,
                Message,
                fields,
                f"{_streaming_reply(db)} AND {rows.column(db, Message, 'error_code')} = %s",
                [plan.message_id, Message.Status.INTERRUPTED.value, REAPED],
            )
        if not updated:
            return None
        reply = Message(
            pk=plan.message_id,
            public_id=plan.message_public_id,
            conversation_id=plan.conversation_id,
            role=Message.Role.ASSISTANT,
            **{"model": plan.model, **fields},
        )
        new = [reply]
        if plan.question_id is not None:
            new.append(
                Message(
                    pk=plan.question_id,
                    conversation_id=plan.conversation_id,
                    role=Message.Role.USER,
                    content=plan.question_text,
                )
            )
        if index:
            _index_new_messages(plan.owner_id, new, plan.first_title)
            if reclaimed and outcome.content.strip():
                # The reaper indexed the checkpoint's text: the whole reply replaces it.
                SearchDocument.objects.filter(message_id=plan.message_id).update(
                    body=segment(outcome.content)
                )
    return reply


# The error code of a reply marked interrupted because its lease ran out (see `finish_reply`).
REAPED = "interrupted"


def reap_stale_replies(*, conversation_id: int | None = None) -> list[Message]:
    """Mark replies whose owning process stopped renewing their lease as `interrupted`.

    The text saved at the last checkpoint is kept. Returns the replies marked; their `done`
    frames are broadcast after commit, built outside the database thread under `call`.
    """
    now = timezone.now()
    stale = Message.objects.filter(status=Message.Status.STREAMING, lease_expires_at__lt=now)
    if conversation_id is not None:
        stale = stale.filter(conversation_id=conversation_id)
    results: list[Message] = []
    with transaction.atomic():
        for message in stale.select_related("conversation"):
            updated = Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
                status=Message.Status.INTERRUPTED,
                error_code=REAPED,
                error_message=_(
                    "The server restarted while this reply was being written. "
                    "The text saved up to then is kept."
                ),
                lease_expires_at=None,
                updated_at=now,
            )
            if updated:
                message.refresh_from_db()
                question = (
                    Message.objects.filter(
                        conversation_id=message.conversation_id,
                        role=Message.Role.USER,
                        id__lt=message.pk,
                    )
                    .order_by("-id")
                    .first()
                )
                # The conversation's title too: a first turn indexes it when its reply
                # ends, which a dead process never did (an existing entry is kept).
                _index_new_messages(
                    message.conversation.owner_id,
                    [m for m in (message, question) if m],
                    message.conversation.title,
                )
                results.append(message)
                broadcast_done_on_commit(message.conversation.public_id, message)
    if results:
        logger.info("Marked %d reply(ies) of a stopped process as interrupted", len(results))
    return results


def finished_reply(conversation_id: int, message_public_id: str) -> Message | None:
    """The reply if it is no longer streaming (its `done` may have been lost on the way to
    a page); a reply whose process stopped renewing its lease is marked interrupted first.
    None while it is still being written."""
    replies = Message.objects.filter(
        conversation_id=conversation_id, public_id=message_public_id, role=Message.Role.ASSISTANT
    )
    reply = replies.first()
    if reply is None or reply.status != Message.Status.STREAMING:
        return reply
    if reply.lease_expires_at is not None and reply.lease_expires_at < timezone.now():
        reap_stale_replies(conversation_id=conversation_id)
        return replies.exclude(status=Message.Status.STREAMING).first()
    return None


def load_history(conversation_id: int, up_to_message_id: int) -> list[dict[str, Any]]:
    """The Messages API `messages` list for a reply, from one query over the active thread.

    Only finished text goes upstream: failed or empty replies are left out, thinking is
    never resent, and consecutive messages of one role are merged so roles alternate.
    """
    db = rows.database()
    role_, content_, status_, id_, conversation_, superseded_ = (
        rows.column(db, Message, name)
        for name in ("role", "content", "status", "id", "conversation", "superseded_at")
    )
    stored = rows.all_values(
        db,
        # Hand-written: every turn reads it (see `conversations.rows`).
        f"SELECT {role_}, {content_}, {status_} FROM {rows.table(db, Message)} "
        f"WHERE {conversation_} = %s AND {superseded_} IS NULL AND {id_} < %s ORDER BY {id_}",
        [conversation_id, up_to_message_id],
    )
    history: list[dict[str, Any]] = []
    for role, content, status in stored:
        if role == Message.Role.ASSISTANT and (
            status == Message.Status.ERROR or not content.strip()
        ):
            continue
        if history and history[-1]["role"] == role:
            history[-1]["content"] += "\n\n" + content
        else:
            history.append({"role": role, "content": content})
    # The API wants the first message from the user.
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
    return history


# --- Credentials -------------------------------------------------------------------------
def save_credential(credential: ApiCredential) -> ApiCredential:
    """Store a credential edited in the admin (its key already set through `set_key`)."""
    # The admin's form refuses a NUL already; a label set by other code is cleaned here.
    credential.label = clean(credential.label)
    with transaction.atomic():
        credential.save()
    credential_changed(credential)
    return credential


def delete_credential(credential: ApiCredential) -> None:
    """Delete a credential (the admin). Its person's next turn resolves again: another
    active credential of theirs, else the instance default (see `credentials.resolve`)."""
    pk, hint = credential.pk, credential.key_hint
    with transaction.atomic():
        credential.delete()
    logger.info("Credential %s deleted (key %s)", pk, hint)


def credential_changed(credential: ApiCredential) -> None:
    """A credential was created, edited or rotated: the next turn uses the new values.

    Cached SDK clients are keyed by a fingerprint of URL, scheme and key, so a changed key
    gets a new client by itself; nothing else to do but keep this as the one hook.
    """
    logger.info("Credential %s updated (key %s)", credential.pk, credential.key_hint)


# The longest model name the model columns hold.
MODEL_NAME_LENGTH = 100


def clean_model_names(names: Iterable[str]) -> list[str]:
    """Model names as an administrator typed them: trimmed, each once, in order.

    A name has no space or comma and at most MODEL_NAME_LENGTH characters, so the comma
    list of `set_api_key --allowed-models` and the admin's lines mean the same.
    """
    cleaned: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ServiceError(
                "invalid_model_name",
                _("The list of allowed models has an empty model name."),
            )
        if len(name) > MODEL_NAME_LENGTH or any(c.isspace() or c == "," for c in name):
            raise ServiceError(
                "invalid_model_name",
                _(
                    "“%(name)s” is not a model name: a model name has no spaces or commas "
                    "and at most %(length)d characters."
                )
                % {"name": name[:MODEL_NAME_LENGTH], "length": MODEL_NAME_LENGTH},
            )
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def allowed_models_text(default_model: str, names: list[str]) -> str:
    """The stored form of an allowed list (`ApiCredential.allowed_models`), one per line.

    The default model is always allowed: a list that leaves it out gets it in front, so the
    stored list is the whole of what may be used. An empty list stays empty: the default
    model only, whichever it becomes.
    """
    if names and default_model and default_model not in names:
        names = [default_model, *names]
    return "\n".join(names)


def set_api_key(
    user: AbstractBaseUser | None,
    *,
    key: str,
    base_url: str,
    scheme: str = ApiCredential.Scheme.BEARER,
    model: str = "",
    label: str = "",
    allowed_models: list[str] | None = None,
) -> ApiCredential:
    """Give `user` (None: the instance default) this credential, replacing the active one.

    `allowed_models` None keeps the list the replaced credential had (none for a new one:
    the default model only); a list replaces it (see `allowed_models_text`).
    """
    key = key.strip()
    if not key:
        raise ServiceError("empty_key", _("The API key is empty."))
    if scheme not in ApiCredential.Scheme.values:
        raise ServiceError("invalid_scheme", _("The scheme must be bearer or x-api-key."))
    if allowed_models is not None:
        allowed_models = clean_model_names(allowed_models)
        if not allowed_models:
            raise ServiceError("invalid_model_name", _("Give at least one model name to allow."))
    with transaction.atomic():
        credential = ApiCredential.objects.select_for_update().filter(
            user=user, is_active=True
        ).order_by("-updated_at").first() or ApiCredential(user=user)
        credential.base_url = base_url
        credential.scheme = scheme
        # From a command line, whose bytes Python decodes with surrogates where they are not
        # UTF-8: cleaned like any text that is stored.
        credential.default_model = (
            clean(model) or credential.default_model or settings.CHAT_DEFAULT_MODEL
        )
        if allowed_models is not None:
            credential.allowed_models = allowed_models_text(
                credential.default_model, allowed_models
            )
        credential.label = clean(label) or credential.label
        credential.is_active = True
        credential.set_key(key)
        credential.full_clean(exclude=["key_encrypted"])
        credential.save()
    credential_changed(credential)
    return credential


@dataclass(frozen=True)
class KeyRotation:
    rotated: int
    # Edited while the rotation ran: the edit already stored it under the newest key.
    changed_meanwhile: int
    # Ids of credentials that no key of FIELD_ENCRYPTION_KEYS decrypts.
    undecryptable: list[int]


def rotate_encryption_keys() -> KeyRotation:
    """Re-encrypt every stored API key with the first key of FIELD_ENCRYPTION_KEYS.

    The plaintext keys do not change, so cached clients stay valid. `updated_at` is left
    alone on purpose: it decides which credential is a user's newest, and a new storage
    key is not a new credential.
    """
    rotated, changed, failed = 0, 0, []
    # A list, not a cursor: SQLite must not iterate a table while it is being updated.
    rows = list(ApiCredential.objects.order_by("pk").values_list("pk", "key_encrypted"))
    for pk, token in rows:
        try:
            new_token = crypto.rotate(token)
        except crypto.DecryptionError:
            failed.append(pk)
            continue
        # Compare-and-set: never overwrite a key an administrator replaced meanwhile.
        if ApiCredential.objects.filter(pk=pk, key_encrypted=token).update(key_encrypted=new_token):
            rotated += 1
        else:
            changed += 1
    if failed:
        logger.warning("Credentials %s cannot be decrypted with FIELD_ENCRYPTION_KEYS", failed)
    return KeyRotation(rotated, changed, failed)
