from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    # render_markdown sanitises with nh3: its output is safe by construction.
    return mark_safe(render_markdown(text))
