"""Conversations, their messages, and the gateway credentials that answer them.

Models hold data and small derived properties only; every change goes through
`conversations.services`.
"""

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.files.storage import Storage, storages
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from conversations import crypto

CLOUDBASE_URL_TEMPLATE = "https://{env_id}.api.tcloudbasegateway.com/v1/ai/cloudbase"


def cloudbase_base_url(env_id: str) -> str:
    return CLOUDBASE_URL_TEMPLATE.format(env_id=env_id.strip())


class Conversation(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="conversations",
        verbose_name=_("owner"),
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    # Set when the person named the conversation; an automatic title never replaces it.
    title_is_custom = models.BooleanField(_("title chosen by the user"), default=False)
    system_prompt = models.TextField(_("system prompt"), blank=True)
    # Blank means "the credential's default model".
    model = models.CharField(_("model"), max_length=100, blank=True)
    temperature = models.FloatField(_("temperature"), null=True, blank=True)
    top_p = models.FloatField(_("top p"), null=True, blank=True)
    max_tokens = models.PositiveIntegerField(_("max tokens"), null=True, blank=True)
    # The last message of the thread the conversation shows (a leaf of its tree of versions:
    # see `conversations.tree`); the shown thread is it and its ancestors. A send continues it.
    shown_leaf = models.ForeignKey(
        "Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("last message shown"),
    )
    # Pinned conversations stay on top of the list, newest pin first; archived ones leave
    # the list for the Archived page (search still finds them). Neither counts as activity:
    # they are written without touching `updated_at`.
    pinned_at = models.DateTimeField(_("pinned"), null=True, blank=True)
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # Last activity: the list is ordered by it.
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conv_owner_recent")]

    def __str__(self) -> str:
        return self.title or gettext("Conversation %(id)s") % {"id": self.public_id}

    @property
    def display_title(self) -> str:
        return self.title or gettext("New chat")


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    class Status(models.TextChoices):
        COMPLETE = "complete", _("complete")
        STREAMING = "streaming", _("streaming")
        STOPPED = "stopped", _("stopped")
        ERROR = "error", _("error")
        INTERRUPTED = "interrupted", _("interrupted")

    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("conversation"),
    )
    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    # The message this one follows (None: a first question). Versions of a message are its
    # siblings: the messages with the same parent and role (regenerate, edit).
    parent = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="children",
        verbose_name=_("parent"),
    )
    # The child shown last under this message, so a switch back to it shows the thread that
    # was below it (None: the newest child). See `conversations.tree`.
    shown_child = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("child shown last"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    content = models.TextField(_("content"), blank=True)
    # Reasoning text of a thinking model, kept apart from the answer.
    thinking = models.TextField(_("thinking"), blank=True)
    # A final reply's sanitised HTML, rendered once when it is saved (pages never render a
    # stored reply) and by `rendering.VERSION` (0: not rendered); see `conversations.stored_html`.
    html = models.TextField(_("rendered HTML"), blank=True, editable=False)
    html_version = models.PositiveSmallIntegerField(
        _("renderer version"), default=0, editable=False
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.COMPLETE
    )
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    stop_reason = models.CharField(_("stop reason"), max_length=64, blank=True)
    model = models.CharField(_("model"), max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(_("input tokens"), null=True, blank=True)
    output_tokens = models.PositiveIntegerField(_("output tokens"), null=True, blank=True)
    # Prompt caching (issue 19): input read from, and written to, the gateway's cache; not
    # counted in `input_tokens` (Anthropic reports the three apart).
    cache_read_input_tokens = models.PositiveIntegerField(
        _("cached input tokens read"), null=True, blank=True
    )
    cache_creation_input_tokens = models.PositiveIntegerField(
        _("cached input tokens written"), null=True, blank=True
    )
    # What of the thread a reply was sent (`conversations.context.Sent.stored`): where the
    # model's memory began, the summary of what was left out, the window it had. None: all.
    context = models.JSONField(_("context sent"), null=True, blank=True)
    # The browser's id for a user message, so a resend after a reconnect is idempotent.
    client_id = models.CharField(_("client id"), max_length=64, blank=True)
    # While streaming: the owning process renews this; past it, the process is dead.
    lease_expires_at = models.DateTimeField(_("lease expires"), null=True, blank=True)
    # Sequence number of the last delta included in `content` (streaming checkpoints).
    seq = models.PositiveIntegerField(_("sequence number"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["id"]
        constraints = [
            # One generation per conversation, enforced by the database across processes.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="streaming"),
                name="one_streaming_reply_per_conversation",
            ),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~Q(client_id=""),
                name="unique_client_id_per_conversation",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "id"], name="msg_conversation_order"),
            models.Index(fields=["status"], condition=Q(status="streaming"), name="msg_streaming"),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} {self.public_id}"


class ApiCredential(models.Model):
    class Scheme(models.TextChoices):
        BEARER = "bearer", _("CloudBase (Authorization: Bearer)")
        X_API_KEY = "x-api-key", _("Anthropic (x-api-key)")

    # A credential belongs to a user, to a group (shared by its members), or to neither:
    # the instance default, used by people who have no credential of their own or of a group.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_credentials",
        verbose_name=_("user"),
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_credentials",
        verbose_name=_("group"),
    )
    label = models.CharField(_("label"), max_length=100, blank=True)
    base_url = models.URLField(_("base URL"), max_length=300)
    scheme = models.CharField(
        _("scheme"), max_length=16, choices=Scheme.choices, default=Scheme.BEARER
    )
    # Fernet ciphertext; the plaintext key exists only in memory, on its way to the gateway.
    key_encrypted = models.TextField(_("encrypted key"), editable=False)
    key_hint = models.CharField(_("key hint"), max_length=16, blank=True, editable=False)
    default_model = models.CharField(_("default model"), max_length=100)
    # One model name per line; empty means "only the default model".
    allowed_models = models.TextField(_("allowed models"), blank=True)
    monthly_token_quota = models.PositiveBigIntegerField(
        _("monthly token quota"), null=True, blank=True
    )
    # What the gateway's models take besides text. Off: images are refused at upload, and
    # PDFs go as their extracted text.
    vision = models.BooleanField(_("models take images"), default=True)
    pdf = models.BooleanField(_("models take PDFs"), default=True)
    # Turns per clock minute, counted per owner: a user's own, a group's members together,
    # each person on the instance default. Empty: only CHAT_RATE_LIMIT_PER_MINUTE applies.
    rate_limit_per_minute = models.PositiveIntegerField(
        _("rate limit per minute"), null=True, blank=True
    )
    # The models' context window in tokens: the history sent is fitted into it, less the
    # reply's max_tokens. 200,000 is every current Claude model's window (CloudBase's
    # hunyuan models take at least 128,000 of input: set it lower there).
    context_window = models.PositiveIntegerField(_("context window (tokens)"), default=200_000)
    # Marks the system prompt and the replayed history with `cache_control`. Off by default:
    # a cache write costs more than plain input, and not every gateway takes the field.
    prompt_caching = models.BooleanField(_("prompt caching"), default=False)
    # Limits the gateway stated when it refused a prompt as too long, by model: later turns
    # fit to them at the first try (`services.credentials.remember_context_limit`).
    context_limits = models.JSONField(
        _("limits learned from the gateway"), default=dict, blank=True, editable=False
    )
    is_active = models.BooleanField(_("active"), default=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("API credential")
        verbose_name_plural = _("API credentials")
        indexes = [
            models.Index(fields=["user", "is_active"], name="cred_user_active"),
            models.Index(fields=["group", "is_active"], name="cred_group_active"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=True) | Q(group__isnull=True),
                name="credential_of_a_user_or_a_group",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label or self.base_url} ({self.owner_name})"

    @property
    def owner_name(self) -> str:
        if self.user_id:
            return self.user.get_username()
        if self.group_id:
            return gettext("group %(name)s") % {"name": self.group.name}
        return gettext("instance default")

    def set_key(self, plaintext: str) -> None:
        self.key_encrypted = crypto.encrypt(plaintext)
        self.key_hint = crypto.mask(plaintext)

    def get_key(self) -> str:
        return crypto.decrypt(self.key_encrypted)

    @property
    def model_choices(self) -> list[str]:
        models_ = [line.strip() for line in self.allowed_models.splitlines() if line.strip()]
        if self.default_model not in models_:
            models_.insert(0, self.default_model)
        return models_


class AttachmentStorage(LazyObject):
    """The `attachments` storage of settings.STORAGES: the file system under MEDIA_ROOT by
    default, an S3-compatible store when configured. Looked up when first used, and again
    after STORAGES changes (as Django's `default_storage`), not when models load."""

    def _setup(self) -> None:
        self._wrapped = storages["attachments"]


attachments_store = AttachmentStorage()


@receiver(setting_changed, dispatch_uid="attachments-store")
def _storages_changed(setting: str, **kwargs: object) -> None:
    if setting in ("STORAGES", "MEDIA_ROOT"):
        attachments_store._wrapped = empty


def attachment_storage() -> Storage:
    return attachments_store  # type: ignore[return-value]


def attachment_path(instance: "Attachment", filename: str) -> str:
    # Unguessable, and nothing of the person or the file's name in it.
    return f"attachments/{secrets.token_hex(16)}"


class Attachment(models.Model):
    """A file attached to a person's message: uploaded first, then sent with a message."""

    class Kind(models.TextChoices):
        IMAGE = "image", _("image")
        PDF = "pdf", _("PDF")
        TEXT = "text", _("text")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("owner"),
    )
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("conversation"),
    )
    # None until the message it was uploaded for is sent.
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attachments",
        verbose_name=_("message"),
    )
    # Its place among the files of its message: the order they were attached in `send`.
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    media_type = models.CharField(_("media type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size in bytes"))
    file = models.FileField(
        _("file"), upload_to=attachment_path, storage=attachment_storage, max_length=200
    )
    # A text file's text, or the text extracted from a PDF (sent to models without PDFs).
    text = models.TextField(_("text"), blank=True)
    width = models.PositiveIntegerField(_("width"), null=True, blank=True)
    height = models.PositiveIntegerField(_("height"), null=True, blank=True)
    created_at = models.DateTimeField(_("uploaded"), auto_now_add=True)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        indexes = [
            models.Index(fields=["message"], name="attachment_message"),
            models.Index(fields=["owner", "created_at"], name="attachment_owner_time"),
        ]

    def __str__(self) -> str:
        return self.name


class SearchDocument(models.Model):
    """One searchable text: a message, or a conversation's title (no message).

    `body` is the text segmented for the full-text index (CJK split into bigrams, see
    `conversations.search.segment`). The index itself is database-specific and created by
    migration 0002: an FTS5 table kept in sync by triggers on SQLite, a generated tsvector
    column with a GIN index on PostgreSQL.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, null=True, related_name="+")
    body = models.TextField()

    class Meta:
        verbose_name = _("search entry")
        verbose_name_plural = _("search entries")
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(message=None),
                name="one_title_document_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return gettext("search entry %(id)s of conversation %(conversation)s") % {
            "id": self.pk,
            "conversation": self.conversation_id,
        }


class CredentialChange(models.Model):
    """One change of a credential, kept for the audit: who, when, what changed. Never the
    key: a new key shows as its mask (`ApiCredential.key_hint`). Written by
    `services.credentials` beside the change it records, in the same transaction."""

    class Action(models.TextChoices):
        CREATED = "created", pgettext_lazy("audited action", "created")
        CHANGED = "changed", pgettext_lazy("audited action", "changed")
        DEACTIVATED = "deactivated", pgettext_lazy("audited action", "deactivated")
        DELETED = "deleted", pgettext_lazy("audited action", "deleted")

    class Via(models.TextChoices):
        ADMIN = "admin", _("admin")
        COMMAND = "command", _("command line")

    # Kept when the credential is deleted: its name stays in `credential_name`.
    credential = models.ForeignKey(
        ApiCredential,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="changes",
        verbose_name=_("credential"),
    )
    credential_name = models.CharField(_("credential name"), max_length=300)
    # None: a management command or another process without a signed-in person.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("changed by"),
    )
    actor_name = models.CharField(_("changed by (name)"), max_length=150, blank=True)
    via = models.CharField(_("via"), max_length=32, choices=Via.choices)
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    # {field: [before, after]}; the key as its masks.
    changes = models.JSONField(_("changes"), default=dict)
    at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("credential change")
        verbose_name_plural = _("credential changes")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.credential_name}: {self.get_action_display()}"

    @property
    def summary(self) -> str:
        def shown(value: object) -> str:
            if value is None or value == "":
                return "—"
            return str(value).replace("\n", ", ")

        def label(name: str) -> str:
            if name == "key":
                return gettext("key")
            try:
                return str(ApiCredential._meta.get_field(name).verbose_name)
            except FieldDoesNotExist:
                return name

        return "; ".join(
            f"{label(name)}: {shown(before)} → {shown(after)}"
            for name, (before, after) in self.changes.items()
        )


class SingleSignOnIdentity(models.Model):
    """The account a person of the identity provider signs in to: their `sub` claim, which
    the provider never reuses, rather than a name or an address, which can change hands."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="sso_identity",
        verbose_name=_("user"),
    )
    subject = models.CharField(_("subject (sub claim)"), max_length=255, unique=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_sign_in_at = models.DateTimeField(_("last sign-in"), null=True, blank=True)

    class Meta:
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")

    def __str__(self) -> str:
        return self.subject
