"""Forms for the conversation pages: validation with clear messages, no writes.

Their text fields clean what a person typed (`conversations.text`: NUL removed, lone
surrogates replaced) instead of refusing it as Django's `CharField` does ("Null characters
are not allowed."): a NUL is invisible, so a person told about it could not find it to
take it out. The admin's forms keep Django's refusal (see docs/configuration.md).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation
from conversations.text import clean


class TextField(forms.CharField):
    """A `CharField` that cleans text by the app's rule before validating it."""

    def to_python(self, value: Any) -> str | None:
        return super().to_python(clean(value) if isinstance(value, str) else value)


class RenameForm(forms.Form):
    title = TextField(
        label=_("Title"),
        max_length=200,
        strip=True,
        error_messages={
            "required": _("A title cannot be empty."),
            "max_length": _("A title can have at most 200 characters."),
        },
    )


class SearchForm(forms.Form):
    q = TextField(label=_("Search conversations"), required=False, max_length=10_000, strip=True)


class ConversationSettingsForm(forms.ModelForm):
    system_prompt = TextField(
        label=_("System prompt"), required=False, widget=forms.Textarea(attrs={"rows": 5})
    )
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
