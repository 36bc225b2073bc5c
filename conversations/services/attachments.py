"""Attachments: upload, the link to the message they are sent with, what the history of a
turn carries of them, and their files' removal (with their conversation, or unsent after
CHAT_ATTACHMENT_UNSENT_HOURS).

The bytes live in the `attachments` storage (settings.STORAGES); a row holds what was
learnt of them (`conversations.attachments.inspect`). A file is written before its row and
removed once the deletion of the last row naming it commits (an edited question's copies
name the same file), so a row never names a file this code removed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, Sum
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations import attachments as files
from conversations import credentials as gateway_credentials
from conversations.models import Attachment, Conversation, attachment_storage
from conversations.services import ServiceError

logger = logging.getLogger(__name__)


def upload(
    user: AbstractBaseUser, conversation: Conversation, uploaded: UploadedFile
) -> Attachment:
    """Store a file for the next message of `conversation`, or a ServiceError saying why
    not (nothing stored then)."""
    name = files.clean_name(uploaded.name or "")
    limit = settings.CHAT_ATTACHMENT_MAX_BYTES
    if uploaded.size is not None and uploaded.size > limit:
        # Before reading it: the refusal costs no more memory than the upload did.
        refused = files.too_large(name, limit)
        raise ServiceError(refused.code, refused.message)
    waiting = Attachment.objects.filter(conversation=conversation, message=None).count()
    if waiting >= settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        raise _too_many()
    try:
        inspected = files.inspect(
            name,
            uploaded.read(limit + 1),
            max_bytes=limit,
            text_chars=settings.CHAT_ATTACHMENT_TEXT_CHARS,
        )
    except files.AttachmentError as exc:
        raise ServiceError(exc.code, exc.message) from None
    credential = gateway_credentials.resolve(user)
    if inspected.kind == "image" and credential is not None and not credential.vision:
        raise ServiceError(
            "images_not_supported",
            _("The models of your API key cannot see images, so “%(name)s” was not attached.")
            % {"name": name},
        )
    used = storage_used(user)
    quota = settings.CHAT_ATTACHMENT_STORAGE_PER_USER
    if used + len(inspected.data) > quota:
        raise ServiceError(
            "storage_full",
            _(
                "Your attachments use %(used)s of %(quota)s. Delete conversations with "
                "files you no longer need to make room."
            )
            % {"used": files.size(used), "quota": files.size(quota)},
        )
    attachment = Attachment(
        owner=user,
        conversation=conversation,
        name=inspected.name,
        kind=inspected.kind,
        media_type=inspected.media_type,
        size=len(inspected.data),
        text=inspected.text,
        width=inspected.width,
        height=inspected.height,
    )
    attachment.file.save(inspected.name, ContentFile(inspected.data), save=False)
    try:
        attachment.save()
    except BaseException:
        attachment.file.storage.delete(attachment.file.name)
        raise
    return attachment


def _too_many() -> ServiceError:
    return ServiceError(
        "too_many_attachments",
        _("A message can carry at most %(count)s files.")
        % {"count": settings.CHAT_ATTACHMENTS_PER_MESSAGE},
    )


def validate_ids(value: Any) -> list[str]:
    """The attachment ids of a `send` frame: a list of distinct strings, not too many."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ServiceError("invalid_attachments", _("Attachments must be a list of ids."))
    if len(value) > settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        raise _too_many()
    return list(dict.fromkeys(value))


def link(conversation: Conversation, ids: list[str], message_id: int) -> list[Attachment]:
    """Give the message `message_id` the unsent attachments `ids` of `conversation`, in the
    transaction that stores it. An id of another conversation or person, or one already
    sent, refuses the whole message."""
    if not ids:
        return []
    try:
        found = {
            str(a.public_id): a
            for a in Attachment.objects.select_for_update().filter(
                conversation=conversation, message=None, public_id__in=ids
            )
        }
    except Exception:  # a malformed UUID: Django raises ValidationError
        found = {}
    if len(found) != len(ids):
        raise ServiceError(
            "attachment_not_found",
            _("An attached file was not found. Attach it again."),
        )
    ordered = [found[i] for i in ids]
    for position, attachment in enumerate(ordered):
        attachment.message_id = message_id
        attachment.position = position
    Attachment.objects.bulk_update(ordered, ["message", "position"])
    return ordered


def copy_to(source_message_id: int, message_id: int) -> list[Attachment]:
    """The attachments of a message, given to a new version of it (an edit). The copies
    name the same stored files: both rows belong to one conversation and go with it."""
    copies = [
        Attachment(
            owner_id=a.owner_id,
            conversation_id=a.conversation_id,
            message_id=message_id,
            position=a.position,
            name=a.name,
            kind=a.kind,
            media_type=a.media_type,
            size=a.size,
            file=a.file.name,
            text=a.text,
            width=a.width,
            height=a.height,
        )
        for a in Attachment.objects.filter(message_id=source_message_id).order_by("position", "id")
    ]
    return Attachment.objects.bulk_create(copies) if copies else []


def of_messages(message_ids: list[int]) -> dict[int, list[Attachment]]:
    """The attachments of these messages, in the order they were uploaded: one query."""
    by_message: dict[int, list[Attachment]] = defaultdict(list)
    if message_ids:
        for attachment in Attachment.objects.filter(message_id__in=message_ids).order_by(
            "position", "id"
        ):
            by_message[attachment.message_id].append(attachment)
    return by_message


def sendable_by_message(message_ids: list[int]) -> dict[int, list[files.Sendable]]:
    """What the history of a reply carries of these messages' attachments (one query)."""
    return {
        message_id: [sendable(a) for a in attached]
        for message_id, attached in of_messages(message_ids).items()
    }


def sendable(attachment: Attachment) -> files.Sendable:
    return files.Sendable(
        kind=attachment.kind,
        media_type=attachment.media_type,
        name=attachment.name,
        path=attachment.file.name,
        text=attachment.text,
    )


def read(path: str) -> bytes:
    """A stored file's bytes (blocking: the generation calls it in a worker thread)."""
    with attachment_storage().open(path, "rb") as handle:
        return handle.read()


def stored_once(rows: QuerySet[Attachment]) -> QuerySet[Attachment]:
    """One row per stored file: an edited question's copies (`copy_to`) name the same file
    as the first row, and a file is stored, and counted, once. Copies stay in their
    conversation, so the lookup is the conversation's rows (indexed), not the table's."""
    earlier = Attachment.objects.filter(
        conversation_id=OuterRef("conversation_id"), file=OuterRef("file"), pk__lt=OuterRef("pk")
    )
    return rows.filter(~Exists(earlier))


def storage_used(user: AbstractBaseUser) -> int:
    """The bytes a person's files take in storage (each file once, however many versions
    of a question carry it)."""
    rows = stored_once(Attachment.objects.filter(owner=user))
    return rows.aggregate(total=Sum("size"))["total"] or 0


def purge_unsent(now: Any = None) -> int:
    """Remove attachments uploaded but never sent for CHAT_ATTACHMENT_UNSENT_HOURS."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.CHAT_ATTACHMENT_UNSENT_HOURS)
    stale = Attachment.objects.filter(message=None, created_at__lt=cutoff)
    count = 0
    with transaction.atomic():
        for attachment in stale:
            attachment.delete()
            count += 1
    if count:
        logger.info("Removed %d attachment(s) uploaded but never sent", count)
    return count


@receiver(post_delete, sender=Attachment, dispatch_uid="attachment-file")
def _remove_file(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """Whatever deleted the row (its conversation, its person, the purge), its file goes
    once the deletion commits; a rolled-back deletion keeps both."""
    name = instance.file.name
    if not name:
        return
    # Another version of the question may still name it (`copy_to`: same conversation).
    still_named = Attachment.objects.filter(conversation_id=instance.conversation_id, file=name)

    def remove() -> None:
        if still_named.exists():
            return
        try:
            attachment_storage().delete(name)
        except Exception:
            logger.exception("Could not remove the file of attachment %s", instance.pk)

    transaction.on_commit(remove)
