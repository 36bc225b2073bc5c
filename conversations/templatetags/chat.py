from django import template
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from conversations.frames import stored_html
from conversations.models import Attachment, Message
from conversations.rendering import browser_config, render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    # render_markdown sanitises with nh3: its output is safe by construction.
    return mark_safe(render_markdown(text))


@register.filter
def reply_html(message: Message) -> SafeString:
    """A reply's HTML as stored when it was saved: a page view does not render Markdown
    (`frames.stored_html`; only a reply a dead process left has none yet)."""
    # Rendered by render_markdown, which sanitises with nh3: safe by construction.
    return mark_safe(stored_html(message))


@register.simple_tag
def message_prototypes() -> list[dict[str, str]]:
    """The messages the chat page's <template> holds: one of each role, as the script first
    adds it (a question just sent, a reply that starts streaming)."""
    return [{"role": "user", "status": "complete"}, {"role": "assistant", "status": "streaming"}]


@register.filter
def attachment_url(attachment: Attachment | None) -> str:
    """The owner-only URL of an attachment (its conversation is fetched with it)."""
    if not isinstance(attachment, Attachment):
        return ""
    return reverse(
        "attachment",
        kwargs={
            "public_id": attachment.conversation.public_id,
            "attachment_id": attachment.public_id,
        },
    )


@register.simple_tag
def markdown_config() -> dict[str, object]:
    """The server's Markdown settings and allow-list, for the page's live rendering."""
    return browser_config()
