"""Forms for the conversation pages: validation with clear messages, no writes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation


class RenameForm(forms.Form):
    title = forms.CharField(
        label=_("Title"),
        max_length=200,
        strip=True,
        error_messages={
            "required": _("A title cannot be empty."),
            "max_length": _("A title can have at most 200 characters."),
        },
    )


class SearchForm(forms.Form):
    q = forms.CharField(
        label=_("Search conversations"), required=False, max_length=10_000, strip=True
    )


class ConversationSettingsForm(forms.ModelForm):
    model = forms.ChoiceField(label=_("Model"), required=False)
    temperature = forms.FloatField(
        label=_("Temperature"),
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text=_(
            "0 to 1. Lower is more focused, higher more varied. Empty: the gateway's default."
        ),
    )
    top_p = forms.FloatField(
        label=_("Top p"),
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text=_("0 to 1. Empty: the gateway's default."),
    )

    class Meta:
        model = Conversation
        fields = ["system_prompt", "model", "temperature", "top_p", "max_tokens"]
        labels = {"system_prompt": _("System prompt")}
        widgets = {"system_prompt": forms.Textarea(attrs={"rows": 5})}

    def __init__(self, *args: Any, model_choices: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.model
        options = list(model_choices)
        if current and current not in options:
            # Keep a model chosen earlier visible, even if no longer offered.
            options.append(current)
        self.fields["model"].choices = [("", _("Default of your API key"))] + [
            (m, m) for m in options
        ]
        limit = settings.CHAT_MAX_TOKENS_LIMIT
        self.fields["max_tokens"] = forms.IntegerField(
            label=_("Max tokens"),
            required=False,
            min_value=1,
            max_value=limit,
            help_text=_("1 to %(limit)d. Empty: %(default)d.")
            % {"limit": limit, "default": settings.CHAT_DEFAULT_MAX_TOKENS},
        )
        self.fields["system_prompt"].required = False
