"""A reply's life in the database: checkpoints while it streams, the final save, the reaper
of replies whose process died, and what a (re)connecting socket is told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import rows
from conversations.models import Message, SearchDocument
from conversations.search import segment
from conversations.services import (
    STORAGE_ERRORS,
    events,
    search_index,
    turns,
)
from conversations.text import clean

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    message_id: int
    content: str
    thinking: str
    seq: int


CHECKPOINT_FIELDS = ("content", "thinking", "seq", "lease_expires_at")


def streaming_reply(db: BaseDatabaseWrapper) -> str:
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
            f"UPDATE {rows.table(db, Message)} SET {sets} {streaming_reply(db)}",
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
    # The answer's sanitised HTML, rendered in the event loop before the save (never in the
    # database thread) by renderer `html_version`; 0: not rendered, nothing stored.
    html: str = ""
    html_version: int = 0
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    # What of the thread the reply was sent (`conversations.context`); None: not decided
    # (the reply failed before).
    context: dict[str, Any] | None = None


def finish_reply(plan: turns.TurnPlan, outcome: Outcome, *, index: bool = True) -> Message | None:
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
        "cache_read_input_tokens": outcome.cache_read_input_tokens,
        "cache_creation_input_tokens": outcome.cache_creation_input_tokens,
        "context": outcome.context,
        "lease_expires_at": None,
        "updated_at": timezone.now(),
    }
    if outcome.model:
        fields["model"] = outcome.model
    if outcome.html_version:
        fields["html"] = outcome.html
        fields["html_version"] = outcome.html_version
    with transaction.atomic():
        # Only a reply still streaming may be finished, by the one process writing it.
        db = rows.database()
        updated = rows.update(
            db,
            Message,
            fields,
            streaming_reply(db),
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
                f"{streaming_reply(db)} AND {rows.column(db, Message, 'error_code')} = %s",
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
            search_index.index_new_messages(plan.owner_id, new, plan.first_title)
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
    stale = Message.objects.filter(
        status=Message.Status.STREAMING, lease_expires_at__lt=timezone.now()
    )
    if conversation_id is not None:
        stale = stale.filter(conversation_id=conversation_id)
    results = _mark_interrupted(stale, broadcast=True)
    if results:
        logger.info("Marked %d reply(ies) of a stopped process as interrupted", len(results))
    return results


def interrupt_orphans() -> list[Message]:
    """At the start of the only process (the in-memory channel layer: no other process can
    be writing a reply), mark every reply still `streaming` as `interrupted` at once,
    instead of when its lease runs out: a page that reconnects after a restart must never
    see a dead reply as being written. Nothing is broadcast: this process has no socket yet.
    """
    results = _mark_interrupted(
        Message.objects.filter(status=Message.Status.STREAMING), broadcast=False
    )
    if results:
        logger.info("Marked %d reply(ies) of the previous process as interrupted", len(results))
    return results


def _mark_interrupted(streaming: QuerySet[Message], *, broadcast: bool) -> list[Message]:
    """Mark `streaming` replies `interrupted`, keeping their last checkpoint, and index
    them as their own process would have at the end."""
    now = timezone.now()
    results: list[Message] = []
    with transaction.atomic():
        for message in streaming.select_related("conversation"):
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
            if not updated:
                continue
            message.refresh_from_db()
            # The question it answers (a regenerate's was indexed with its first reply).
            question = (
                Message.objects.filter(pk=message.parent_id, role=Message.Role.USER).first()
                if message.parent_id is not None
                else None
            )
            # The conversation's title too: a first turn indexes it when its reply
            # ends, which a dead process never did (an existing entry is kept).
            search_index.index_new_messages(
                message.conversation.owner_id,
                [m for m in (message, question) if m],
                message.conversation.title,
            )
            results.append(message)
            if broadcast:
                events.broadcast_done_on_commit(message.conversation.public_id, message)
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


def stored_snapshot(conversation_id: int) -> dict[str, Any] | None:
    """A reply streaming in a process we cannot see: its last checkpoint.

    One read when nothing streams (every socket that opens asks). A reply whose process
    stopped renewing its lease is marked interrupted here instead, and has no snapshot.
    """
    message = (
        Message.objects.filter(conversation_id=conversation_id, status=Message.Status.STREAMING)
        .only("public_id", "seq", "content", "thinking", "lease_expires_at")
        .first()
    )
    if message is None:
        return None
    if message.lease_expires_at is not None and message.lease_expires_at < timezone.now():
        reap_stale_replies(conversation_id=conversation_id)
        return None
    return {
        "message_id": str(message.public_id),
        "seq": message.seq,
        "text": message.content,
        "thinking": message.thinking,
    }
