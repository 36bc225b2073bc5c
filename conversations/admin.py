"""Admin: credentials with a write-only key, conversations and messages with usage."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from conversations import services
from conversations.models import ApiCredential, Conversation, Message, cloudbase_base_url


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
            "Instead of a base URL: builds https://<ENV_ID>.api.tcloudbasegateway.com/v1/ai/cloudbase"
        ),
    )

    class Meta:
        model = ApiCredential
        fields = [
            "user",
            "label",
            "scheme",
            "base_url",
            "default_model",
            "allowed_models",
            "monthly_token_quota",
            "is_active",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_url"].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
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
            credential.save()
        return credential


@admin.register(ApiCredential)
class ApiCredentialAdmin(admin.ModelAdmin):
    form = ApiCredentialForm
    list_display = [
        "__str__",
        "user",
        "scheme",
        "default_model",
        "key_hint",
        "is_active",
        "last_used_at",
    ]
    list_filter = ["is_active", "scheme"]
    search_fields = ["label", "user__username", "base_url"]
    readonly_fields = ["key_hint", "last_used_at", "created_at", "updated_at"]
    autocomplete_fields = ["user"]
    fieldsets = [
        (None, {"fields": ["user", "label", "is_active"]}),
        (
            _("Gateway"),
            {"fields": ["scheme", "env_id", "base_url", "default_model", "allowed_models"]},
        ),
        (_("Key"), {"fields": ["api_key", "key_hint"]}),
        (
            _("Limits and use"),
            {"fields": ["monthly_token_quota", "last_used_at", "created_at", "updated_at"]},
        ),
    ]

    def save_model(self, request: HttpRequest, obj: ApiCredential, form: Any, change: bool) -> None:
        obj.save()
        services.credential_changed(obj)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = [
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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "model", "updated_at"]
    list_filter = ["updated_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "conversation",
        "role",
        "status",
        "model",
        "input_tokens",
        "output_tokens",
        "stop_reason",
        "created_at",
    ]
    list_filter = ["role", "status", "model", "created_at"]
    search_fields = ["conversation__owner__username"]
    list_select_related = ["conversation"]
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
