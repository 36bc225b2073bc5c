"""Markdown to safe HTML for assistant replies.

markdown-it-py renders (raw HTML in the source is escaped, not passed through), pygments
highlights fenced code, and nh3 sanitises the result against an allowlist, so a model
that writes `<script>`, `onerror=` or `javascript:` links produces inert text.

The page renders a reply the same way while it streams (static/js/chat/markdown.js:
markdown-it and DOMPurify). It takes its parser settings and allow-list from
`browser_config()`, which the chat page embeds as JSON, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "span",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "pre": {"class", "data-language"},
    "th": {"class"},
    "td": {"class"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"
# The parser: CommonMark, raw HTML escaped, no bare-URL links, plus tables and ~~strike~~.
PRESET = "commonmark"
OPTIONS = {"html": False, "linkify": False}
RULES = ["table", "strikethrough"]
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")
# Raise it whenever the HTML for the same Markdown changes (sanitiser rules, the parser's
# settings, the highlighter): stored replies hold the version that rendered them, and
# `manage.py rerender_messages` renders again every reply of an older one.
VERSION = 1


# A language is a name ("python", "c++", "objective-c"); with anything else the block is
# plain text (the page's live rendering, static/js/chat/markdown.js, has the same rule).
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]+")


def _highlight(code: str, language: str, _attrs: str) -> str:
    name = (language or "").strip().split()[0] if language else ""
    if not _LANGUAGE.fullmatch(name):
        name = ""
    try:
        # Blank lines at the start and end of a block stay, as without a lexer (and as the
        # page shows the block while it streams).
        lexer = get_lexer_by_name(name, stripnl=False) if name else None
    except ClassNotFound:
        lexer = None
    body = highlight(code, lexer, _FORMATTER) if lexer is not None else escape(code)
    label = escape(name or "text")
    # Starting with "<pre" tells markdown-it not to wrap it again.
    return f'<pre class="highlight" data-language="{label}"><code class="language-{label}">{body}</code></pre>'


ALIGNMENTS = {f"text-align:{side}": f"align-{side}" for side in ("left", "center", "right")}


def _alignment_classes(state: StateCore) -> None:
    # Table cells come with style="text-align:…"; the Content-Security-Policy blocks inline
    # styles, so the alignment travels as a class of static/css/app.css instead.
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            style = str(token.attrs.pop("style"))
            if style in ALIGNMENTS:
                token.attrSet("class", ALIGNMENTS[style])


def _image_as_link(self: object, tokens: list, idx: int, options: object, env: object) -> str:
    token = tokens[idx]
    src = escape(str(token.attrGet("src") or ""))
    alt = escape("".join(child.content for child in token.children or []) or src)
    return f'<a href="{src}">{alt}</a>'


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt(PRESET, {**OPTIONS, "highlight": _highlight})
    md.enable(RULES)
    # An image the model names would be fetched by every reader's browser, and its URL can
    # carry conversation text out (a known prompt-injection leak): show a link instead.
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.push("alignment_classes", _alignment_classes)
    return md


def render_markdown(text: str) -> str:
    if not text:
        return ""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
    )


def browser_config() -> dict[str, Any]:
    """What the page needs to render a streaming reply as this module does (JSON-ready)."""
    return {
        "preset": PRESET,
        "options": OPTIONS,
        "rules": RULES,
        "tags": sorted(ALLOWED_TAGS),
        "attributes": {tag: sorted(names) for tag, names in sorted(ALLOWED_ATTRIBUTES.items())},
        "url_schemes": sorted(URL_SCHEMES),
        "link_rel": LINK_REL,
        "alignments": ALIGNMENTS,
    }
