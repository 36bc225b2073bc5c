"""Admin: credentials with a write-only key, users with their usage and quota, conversations
and messages with their token counts. The usage chart is in `conversations.adminsite`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils import formats
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations import attachments as attachment_files
from conversations import services, tree, usage
from conversations.models import (
    ApiCredential,
    Attachment,
    Conversation,
    CredentialChange,
    Message,
    cloudbase_base_url,
)


class ApiCredentialForm(forms.ModelForm):
    # Write-only: the form never renders the stored key, only takes a new one.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_(
            "Required when creating. Leave empty to keep the current key; type a new one to rotate it."
        ),
    )
    env_id = forms.CharField(
        label=_("CloudBase ENV_ID"),
        required=False,
        help_text=_(
            # Help texts are HTML in the admin: no angle brackets, or the name vanishes.
            "Instead of a base URL: builds https://ENV_ID.api.tcloudbasegateway.com/v1/ai/cloudbase"
        ),
    )

    class Meta:
        model = ApiCredential
        fields = [
            "user",
            "group",
            "label",
            "scheme",
            "base_url",
            "default_model",
            "allowed_models",
            "vision",
            "pdf",
            "context_window",
            "prompt_caching",
            "monthly_token_quota",
            "rate_limit_per_minute",
            "is_active",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_url"].required = False
        self.fields["user"].help_text = _(
            "The person this credential is for. Empty, with no group either: the instance "
            "default, used by everyone who was given no key of their own or of a group."
        )
        self.fields["group"].help_text = _(
            "Instead of a user: a group whose members share this credential and its limits. "
            "A person's own credential comes first; of several groups, the one whose name "
            "sorts first."
        )
        self.fields["allowed_models"].help_text = _(
            "The models people may choose, one per line. The default model is always "
            "allowed (added in front if left out); empty means the default model only. A "
            "conversation set to a model not listed here is refused until another is chosen."
        )
        self.fields["monthly_token_quota"].help_text = _(
            "Input plus output tokens per calendar month (UTC): of the user, of the group's "
            "members together, or on the instance default of each user separately. Empty: "
            "no quota."
        )
        self.fields["rate_limit_per_minute"].help_text = _(
            "Messages per minute: of the user (instead of the instance's limit), of the "
            "group's members together (on top of each person's), or of each user on the "
            "instance default. Empty or 0: the instance's limit only."
        )
        self.fields["is_active"].help_text = _(
            "Untick to revoke: the user's next message is refused with a “no API key” error."
        )
        self.fields["context_window"].required = False
        self.fields["context_window"].help_text = _(
            "Tokens the models read at once (200,000 for Claude). A longer conversation is "
            "sent its newest messages that fit, less the reply's max tokens, and a summary "
            "of the rest."
        )
        self.fields["prompt_caching"].help_text = _(
            "Marks the system prompt and the replayed history cacheable (cache_control), "
            "for gateways that support it (Anthropic, CloudBase): later turns read them "
            "from the cache, at a lower price."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        window = cleaned.get("context_window")
        if window is None:
            # Left empty (or a form from before the field): the model's default.
            field = ApiCredential._meta.get_field("context_window")
            cleaned["context_window"] = window = field.get_default()
        low, high = services.credentials.MIN_CONTEXT_WINDOW, services.credentials.MAX_CONTEXT_WINDOW
        if window is not None and not low <= window <= high:
            self.add_error(
                "context_window",
                _("The context window must be between %(low)s and %(high)s tokens.")
                % {"low": f"{low:,}", "high": f"{high:,}"},
            )
        if "allowed_models" in cleaned:
            lines = [line for line in cleaned["allowed_models"].splitlines() if line.strip()]
            try:
                names = services.credentials.clean_model_names(lines)
            except services.ServiceError as exc:
                self.add_error("allowed_models", exc.message)
            else:
                default = cleaned.get("default_model", "")
                cleaned["allowed_models"] = services.credentials.allowed_models_text(default, names)
        if cleaned.get("user") and cleaned.get("group"):
            self.add_error("group", _("A credential belongs to a user or to a group, not to both."))
        env_id = cleaned.get("env_id", "").strip()
        if env_id:
            cleaned["base_url"] = cloudbase_base_url(env_id)
        if not cleaned.get("base_url"):
            self.add_error("base_url", _("Give a base URL or a CloudBase ENV_ID."))
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", _("A new credential needs its API key."))
        return cleaned

    def save(self, commit: bool = True) -> ApiCredential:
        credential = super().save(commit=False)
        credential.base_url = self.cleaned_data["base_url"]
        if self.cleaned_data.get("api_key"):
            credential.set_key(self.cleaned_data["api_key"])
        if commit:
            services.credentials.save_credential(credential)
        return credential


@admin.register(CredentialChange)
class CredentialChangeAdmin(admin.ModelAdmin):
    """Every change of every credential, deleted ones included: read, never written."""

    list_display = ["at", "credential_name", "who", "via", "action", "summary"]
    list_filter = ["action", "via", "at", "credential"]
    search_fields = ["credential_name", "actor_name"]
    date_hierarchy = "at"

    @admin.display(description=_("changed by"), ordering="actor_name")
    def who(self, obj: CredentialChange) -> str:
        return obj.actor_name or "—"

    @admin.display(description=_("what changed"))
    def summary(self, obj: CredentialChange) -> str:
        return obj.summary

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Changes shown on a credential's page; the audit list has them all.
AUDIT_ROWS = 20

# Each check waits for the gateway (up to upstream.CHECK_TIMEOUT): a page's worth at most.
CHECK_AT_ONCE = 10


@admin.register(ApiCredential)
class ApiCredentialAdmin(admin.ModelAdmin):
    form = ApiCredentialForm
    list_display = [
        "__str__",
        "user",
        "group",
        "scheme",
        "default_model",
        "models",
        "current_key",
        "monthly_token_quota",
        "rate_limit_per_minute",
        "is_active",
        "last_used_at",
    ]
    list_filter = ["is_active", "scheme", "group"]
    search_fields = ["label", "user__username", "group__name", "base_url"]
    list_select_related = ["user", "group"]
    actions = ["check_key", "deactivate"]
    readonly_fields = [
        "current_key",
        "learned_limits",
        "last_used_at",
        "created_at",
        "updated_at",
        "audit",
    ]
    autocomplete_fields = ["user"]
    fieldsets = [
        (None, {"fields": ["user", "group", "label", "is_active"]}),
        (
            _("Gateway"),
            {
                "fields": [
                    "scheme",
                    "env_id",
                    "base_url",
                    "default_model",
                    "allowed_models",
                    "vision",
                    "pdf",
                ]
            },
        ),
        (
            _("Long conversations"),
            {"fields": ["context_window", "prompt_caching", "learned_limits"]},
        ),
        (_("Key"), {"fields": ["current_key", "api_key"]}),
        (
            _("Limits and use"),
            {
                "fields": [
                    "monthly_token_quota",
                    "rate_limit_per_minute",
                    "last_used_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        (_("Changes (audit)"), {"fields": ["audit"]}),
    ]

    class Media:
        # Names the autocomplete widget of the user field for screen readers.
        js = ["js/admin-a11y.js"]

    @admin.display(description=_("limits learned from the gateway"))
    def learned_limits(self, obj: ApiCredential) -> str:
        # What "prompt is too long" refusals stated, by model (services.credentials).
        limits = obj.context_limits if isinstance(obj.context_limits, dict) else {}
        if not limits:
            return "—"
        return ", ".join(f"{model}: {tokens:,}" for model, tokens in sorted(limits.items()))

    @admin.display(description=_("allowed models"))
    def models(self, obj: ApiCredential) -> str:
        return ", ".join(obj.model_choices)

    @admin.display(description=_("changes"))
    def audit(self, obj: ApiCredential) -> str:
        """The newest changes of this credential (a read-only field: an inline would need
        its empty formset posted back with every save)."""
        if obj.pk is None:
            return "—"
        changes = list(obj.changes.order_by("-at", "-id")[:AUDIT_ROWS])
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    formats.date_format(change.at, "DATETIME_FORMAT"),
                    change.actor_name or "—",
                    change.get_via_display(),
                    change.get_action_display(),
                    change.summary,
                )
                for change in changes
            ),
        )
        url = reverse("admin:conversations_credentialchange_changelist")
        return format_html(
            '<table class="credential-audit"><thead><tr><th scope="col">{}</th>'
            '<th scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th>'
            '<th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>'
            '<p><a href="{}?credential__id__exact={}">{}</a></p>',
            _("when"),
            _("changed by"),
            _("via"),
            _("action"),
            _("what changed"),
            rows,
            url,
            obj.pk,
            _("Every change of this credential"),
        )

    @admin.display(description=_("current key"), ordering="key_hint")
    def current_key(self, obj: ApiCredential) -> str:
        # Only the mask: the admin never decrypts a key to show it.
        return obj.key_hint or "—"

    @admin.action(description=_("Check key"))
    def check_key(self, request: HttpRequest, queryset: QuerySet[ApiCredential]) -> None:
        # One small request per credential, one after the other: a handful at a time.
        for credential in queryset.select_related("user", "group").order_by("pk")[:CHECK_AT_ONCE]:
            result = services.credentials.check_stored_key(credential)
            self.message_user(
                request,
                # The admin capitalises a message's first letter: start with words, not a URL.
                _("Key of “%(credential)s”: %(result)s")
                % {"credential": credential, "result": result.message},
                messages.SUCCESS if result.accepted else messages.ERROR,
            )
        if queryset.count() > CHECK_AT_ONCE:
            self.message_user(
                request,
                _("Only the first %(count)d selected credentials were checked.")
                % {"count": CHECK_AT_ONCE},
                messages.WARNING,
            )

    @admin.action(description=_("Deactivate the selected credentials"))
    def deactivate(self, request: HttpRequest, queryset: QuerySet[ApiCredential]) -> None:
        count = services.credentials.deactivate_credentials(list(queryset), by=request.user)
        self.message_user(
            request,
            ngettext(
                "%(count)d credential deactivated: its people's next messages are refused.",
                "%(count)d credentials deactivated: their people's next messages are refused.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )

    def save_model(self, request: HttpRequest, obj: ApiCredential, form: Any, change: bool) -> None:
        services.credentials.save_credential(obj, by=request.user)

    def delete_model(self, request: HttpRequest, obj: ApiCredential) -> None:
        services.credentials.delete_credential(obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiCredential]) -> None:
        for credential in list(queryset):
            services.credentials.delete_credential(credential, by=request.user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # The audit records stay (their credential is set to none): not "deleted" with it.
        objects, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(CredentialChange._meta.verbose_name)
        return objects, counts, perms_needed, protected


def _messages_go_with_their_conversation(
    deleted: tuple[list[Any], dict[str, int], set[str], list[Any]],
) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
    """`get_deleted_objects` for what owns messages. Messages are never deleted on their
    own (MessageAdmin); deleting their conversation, or its owner, takes them along."""
    objects, counts, perms_needed, protected = deleted
    perms_needed.discard(Message._meta.verbose_name)
    return objects, counts, perms_needed, protected


class MessageInline(admin.TabularInline):
    """Every version of every message, oldest first: where each one hangs in the tree of
    versions (its parent, its place among its versions), and which are shown."""

    model = Message
    extra = 0
    can_delete = False
    fields = [
        "short_id",
        "parent_short_id",
        "version",
        "shown",
        "role",
        "status",
        "short_content",
        "model",
        "input_tokens",
        "output_tokens",
        "stop_reason",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description=_("content"))
    def short_content(self, obj: Message) -> str:
        return obj.content[:120]

    def _tree(self, obj: Message) -> tuple[tree.Tree, set[int]]:
        # Read once per conversation page (the inline is made afresh for each request).
        cached = getattr(self, "_shape", None)
        if cached is None or cached[0] != obj.conversation_id:
            shape = tree.load(obj.conversation_id)
            shape.public_ids(shape.nodes)  # every row shows its parent's
            leaf = Conversation.objects.filter(pk=obj.conversation_id).values_list(
                "shown_leaf_id", flat=True
            )[0]
            cached = self._shape = (obj.conversation_id, shape, set(shape.path(leaf)))
        return cached[1], cached[2]

    @admin.display(description=_("id"))
    def short_id(self, obj: Message) -> str:
        return str(obj.public_id)[:8]

    @admin.display(description=_("parent"))
    def parent_short_id(self, obj: Message) -> str:
        shape, _shown = self._tree(obj)
        return str(shape.public_id(obj.parent_id))[:8] if obj.parent_id else "—"

    @admin.display(description=_("version"))
    def version(self, obj: Message) -> str:
        versions = self._tree(obj)[0].versions(obj.pk)
        return f"{versions.index(obj.pk) + 1} / {len(versions)}"

    @admin.display(description=_("shown"), boolean=True)
    def shown(self, obj: Message) -> bool:
        return obj.pk in self._tree(obj)[1]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "model", "updated_at"]
    list_filter = ["updated_at"]
    search_fields = ["title", "owner__username"]
    # Titles are the owner's (renamed in the app, which keeps the search index in step);
    # the admin sees them and may change a conversation's model settings.
    readonly_fields = [
        "public_id",
        "owner",
        "title",
        "title_is_custom",
        # Which thread the owner's page shows: theirs to switch, in the chat.
        "shown_leaf",
        "created_at",
        "updated_at",
    ]
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A conversation is its owner's: started in the chat, never in the admin.
        return False

    def save_model(self, request: HttpRequest, obj: Conversation, form: Any, change: bool) -> None:
        if form.changed_data:
            services.conversations.update_settings(
                obj, **{name: getattr(obj, name) for name in form.changed_data}
            )

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        # Stops a reply still being written (it would go on costing tokens) and tells the
        # conversation's open pages, in whichever process.
        services.conversations.delete_conversation(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        services.conversations.delete_conversations(queryset)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        return _messages_go_with_their_conversation(super().get_deleted_objects(objs, request))


class MonthFilter(admin.SimpleListFilter):
    """Calendar months in UTC, the months quotas count in."""

    title = _("month (UTC)")
    parameter_name = "month"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        months = Message.objects.datetimes("created_at", "month", order="DESC", tzinfo=UTC)
        return [
            (month.strftime("%Y-%m"), formats.date_format(month, "YEAR_MONTH_FORMAT"))
            for month in months[:24]
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if not self.value():
            return queryset
        try:
            start = datetime.strptime(self.value(), "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            return queryset.none()
        return queryset.filter(created_at__gte=start, created_at__lt=usage.next_month_start(start))


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "owner",
        "conversation",
        "role",
        "status",
        "model",
        "input_tokens",
        "output_tokens",
        "stop_reason",
        "created_at",
    ]
    list_filter = [
        ("conversation__owner", admin.RelatedOnlyFieldListFilter),
        MonthFilter,
        "role",
        "status",
        "model",
    ]
    search_fields = ["conversation__owner__username"]
    list_select_related = ["conversation__owner"]
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description=_("user"), ordering="conversation__owner")
    def owner(self, obj: Message) -> str:
        return obj.conversation.owner.get_username()

    # Messages are history: read, never written here. A message edited or deleted on its own
    # would break its thread and the search index; delete its conversation instead.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """What people attached: read only (a file belongs to its message; deleting the
    conversation deletes its files)."""

    list_display = ["name", "owner", "kind", "media_type", "stored", "sent", "created_at"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), "kind", MonthFilter]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = [f.name for f in Attachment._meta.fields if f.name not in ("file", "text")]
    exclude = ["file", "text"]

    @admin.display(description=_("size"), ordering="size")
    def stored(self, obj: Attachment) -> str:
        return attachment_files.size(obj.size)

    @admin.display(description=_("sent"), boolean=True)
    def sent(self, obj: Attachment) -> bool:
        return obj.message_id is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Users, with their usage ------------------------------------------------------------------
def _grouped(number: int) -> str:
    # Token counts run into the millions: group digits whatever USE_THOUSAND_SEPARATOR says.
    return formats.number_format(number, force_grouping=True)


User = get_user_model()
admin.site.unregister(User)


class CredentialActionForm(ActionForm):
    """The user list's action bar, with the credential the assign action gives."""

    credential = forms.ModelChoiceField(
        queryset=ApiCredential.objects.filter(is_active=True).select_related("user", "group"),
        required=False,
        label=_("Credential"),
    )


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin):
    """Django's user admin plus each person's token usage and what is left of their quota,
    and an action giving many people a credential at once."""

    action_form = CredentialActionForm
    actions = ["assign_credential"]

    list_display = [
        "username",
        "month_input",
        "month_output",
        "total_input",
        "total_output",
        "messages",
        "last_used",
        "quota_left",
        "files_stored",
    ]
    usage_fields = [*list_display[1:], "usage_chart"]
    readonly_fields = usage_fields
    fieldsets = [*auth_admin.UserAdmin.fieldsets, (_("Usage"), {"fields": usage_fields})]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        stored = (
            services.attachments.stored_once(Attachment.objects.filter(owner=OuterRef("pk")))
            .values("owner")
            .annotate(total=Sum("size"))
            .values("total")
        )
        return usage.with_usage(super().get_queryset(request)).annotate(
            attachment_bytes=Subquery(stored)
        )

    @admin.display(description=_("files stored"), ordering="attachment_bytes")
    def files_stored(self, obj: Any) -> str:
        return attachment_files.size(obj.attachment_bytes or 0)

    @admin.action(
        description=_("Give the selected users the chosen credential"),
        permissions=["change_credentials"],
    )
    def assign_credential(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        try:
            # The action bar's own field (the form's action choices are the admin's to fill).
            field = CredentialActionForm.base_fields["credential"]
            source = field.clean(request.POST.get("credential"))
        except forms.ValidationError:
            source = None
        if source is None:
            self.message_user(
                request,
                _("Choose a credential in the list beside the action, then run it again."),
                messages.ERROR,
            )
            return
        count = services.credentials.assign_credential(source, list(queryset), by=request.user)
        self.message_user(
            request,
            ngettext(
                "%(count)d user now has a credential like “%(credential)s” of their own.",
                "%(count)d users now have a credential like “%(credential)s” of their own.",
                count,
            )
            % {"count": count, "credential": source},
            messages.SUCCESS,
        )

    def has_change_credentials_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("conversations.add_apicredential") and request.user.has_perm(
            "conversations.change_apicredential"
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.conversations.delete_user(obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in list(queryset):
            services.conversations.delete_user(user, by=request.user)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        return _messages_go_with_their_conversation(super().get_deleted_objects(objs, request))

    @admin.display(description=_("tokens in, this month"), ordering="month_input_tokens")
    def month_input(self, obj: Any) -> str:
        return _grouped(obj.month_input_tokens)

    @admin.display(description=_("tokens out, this month"), ordering="month_output_tokens")
    def month_output(self, obj: Any) -> str:
        return _grouped(obj.month_output_tokens)

    @admin.display(description=_("tokens in, overall"), ordering="total_input_tokens")
    def total_input(self, obj: Any) -> str:
        return _grouped(obj.total_input_tokens)

    @admin.display(description=_("tokens out, overall"), ordering="total_output_tokens")
    def total_output(self, obj: Any) -> str:
        return _grouped(obj.total_output_tokens)

    @admin.display(description=_("messages sent"), ordering="messages_sent")
    def messages(self, obj: Any) -> str:
        return _grouped(obj.messages_sent)

    @admin.display(description=_("last used"), ordering="last_used_at", empty_value=_("never"))
    def last_used(self, obj: Any) -> datetime | None:
        return obj.last_used_at

    @admin.display(description=_("quota left this month"))
    def quota_left(self, obj: Any) -> str:
        if obj.has_own_key and not obj.has_active_key:
            return str(_("no key (deactivated)"))
        if not obj.has_own_key and obj.has_group_key:
            if obj.key_group is None:
                return str(_("no key (group's deactivated)"))
            return str(_("shared by the group %(name)s") % {"name": obj.key_group})
        left = usage.quota_left(obj)
        if left is None:
            return str(_("no quota"))
        return _grouped(left)

    @admin.display(description=_("tokens per day"))
    def usage_chart(self, obj: Any) -> str:
        url = reverse("admin:usage") + f"?user={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Chart of the last 30 days"))


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(auth_admin.GroupAdmin):
    """Django's group admin; a group's credentials are deleted through the services, so
    the audit keeps their deletion (the database's cascade would not)."""

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        services.credentials.delete_group(obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        for group in list(queryset):
            services.credentials.delete_group(group, by=request.user)
