from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations.rendering import browser_config, render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    # render_markdown sanitises with nh3: its output is safe by construction.
    return mark_safe(render_markdown(text))


@register.simple_tag
def message_prototypes() -> list[dict[str, str]]:
    """The messages the chat page's <template> holds: one of each role, as the script first
    adds it (a question just sent, a reply that starts streaming)."""
    return [{"role": "user", "status": "complete"}, {"role": "assistant", "status": "streaming"}]


@register.simple_tag
def markdown_config() -> dict[str, object]:
    """The server's Markdown settings and allow-list, for the page's live rendering."""
    return browser_config()
