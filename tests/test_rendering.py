"""Assistant replies as Markdown: useful formatting renders, anything active stays inert."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from conversations import rendering
from conversations.rendering import browser_config, render_markdown
from tests.support.markdown import XSS

FORBIDDEN_TAGS = {"script", "iframe", "svg", "object", "embed", "style", "math", "form", "base"}
SAFE_SCHEMES = {"", "http", "https", "mailto"}


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = Elements()
    parser.feed(html)
    parser.close()
    return parser.elements


def scheme(url: str) -> str:
    # Browsers ignore surrounding whitespace and control characters in URLs.
    return urlsplit("".join(ch for ch in url if ch > " ").strip()).scheme.lower()


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag not in FORBIDDEN_TAGS, html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            if name in {"href", "src", "action", "formaction", "xlink:href", "srcset"}:
                assert scheme(value) in SAFE_SCHEMES, html
            if name == "style":
                declarations = [d.strip() for d in value.split(";") if d.strip()]
                assert all(d.split(":")[0].strip() == "text-align" for d in declarations), html


@pytest.mark.parametrize("source", XSS)
def test_it_renders_hostile_markdown_inert(source: str) -> None:
    html = render_markdown(source)
    assert_inert(html)
    # Nothing was dropped silently either: the text is still there to read.
    assert html.strip()


def test_it_shows_raw_html_as_text() -> None:
    html = render_markdown('<script>alert("x")</script> and <b>bold?</b>')
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;" in html
    assert [tag for tag, _ in elements(html)] == ["p"]


def test_it_shows_html_in_fenced_code_escaped_and_highlighted() -> None:
    html = render_markdown("```html\n<script>alert(1)</script>\n```")
    assert "&lt;" in html and "<script" not in html
    tags = elements(html)
    assert tags[0] == ("pre", {"class": "highlight", "data-language": "html"})
    assert tags[1] == ("code", {"class": "language-html"})
    assert any(tag == "span" and attrs["class"].startswith("hl-") for tag, attrs in tags)


def test_it_drops_unsafe_link_targets_but_keeps_safe_ones() -> None:
    html = render_markdown(
        "[web](https://example.com/a?b=1) [mail](mailto:a@example.com) "
        "[bad](javascript:alert(1)) <https://example.org>"
    )
    hrefs = [attrs.get("href") for tag, attrs in elements(html) if tag == "a"]
    assert hrefs == ["https://example.com/a?b=1", "mailto:a@example.com", "https://example.org"]
    links = [attrs for tag, attrs in elements(html) if tag == "a"]
    assert all("noopener" in attrs["rel"] and "nofollow" in attrs["rel"] for attrs in links)


def test_table_alignment_is_a_class_not_an_inline_style() -> None:
    # The Content-Security-Policy (style-src 'self') would block a style attribute.
    html = render_markdown("| left | centre | right | none |\n|:--|:-:|--:|--|\n| 1 | 2 | 3 | 4 |")
    cells = [attrs for tag, attrs in elements(html) if tag in ("th", "td")]
    assert [attrs.get("class") for attrs in cells] == [
        "align-left",
        "align-center",
        "align-right",
        None,
    ] * 2
    assert "style" not in html
    assert_inert(html)


def test_it_renders_headings_lists_and_emphasis() -> None:
    html = render_markdown(
        "# Title\n\n## Part\n\nSome **bold**, *em* and ~~gone~~.\n\n"
        "- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n---\n"
    )
    tags = [tag for tag, _ in elements(html)]
    for tag in ("h1", "h2", "strong", "em", "s", "ul", "ol", "li", "blockquote", "hr"):
        assert tag in tags, tag
    assert ("ol", {"start": "3"}) in elements(html)


def test_it_renders_tables() -> None:
    html = render_markdown("| name | value |\n|------|-------|\n| a | `1` |\n")
    tags = [tag for tag, _ in elements(html)]
    assert tags[:3] == ["table", "thead", "tr"]
    assert tags.count("th") == 2 and tags.count("td") == 2 and "code" in tags


def test_it_renders_inline_code_escaped() -> None:
    html = render_markdown("Use `a < b && c` here")
    assert "<code>a &lt; b &amp;&amp; c</code>" in html


def test_it_highlights_fenced_code_with_pygments_classes() -> None:
    html = render_markdown("```python\ndef f(x):\n    return x + 1\n```")
    classes = {attrs.get("class") for tag, attrs in elements(html) if tag == "span"}
    assert {"hl-k", "hl-nf"} <= classes  # keyword `def`, function name `f`
    assert ("code", {"class": "language-python"}) in elements(html)


def test_it_renders_code_in_unknown_languages_plainly() -> None:
    html = render_markdown("```nosuchlanguage\n<b>x</b>\n```\n\n```\nplain\n```")
    tags = elements(html)
    assert ("pre", {"class": "highlight", "data-language": "nosuchlanguage"}) in tags
    assert ("pre", {"class": "highlight", "data-language": "text"}) in tags
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_it_renders_nothing_for_empty_text() -> None:
    assert render_markdown("") == ""


def test_the_page_gets_the_servers_settings_and_allow_list() -> None:
    # The page's live rendering (static/js/chat/markdown.js) is configured from this only.
    config = json.loads(json.dumps(browser_config()))
    assert set(config["tags"]) == rendering.ALLOWED_TAGS
    assert {tag: set(names) for tag, names in config["attributes"].items()} == (
        rendering.ALLOWED_ATTRIBUTES
    )
    assert set(config["url_schemes"]) == rendering.URL_SCHEMES == {"http", "https", "mailto"}
    assert config["link_rel"] == rendering.LINK_REL
    assert config["alignments"] == rendering.ALIGNMENTS
    parser = rendering._parser()
    assert config["options"] == {
        "html": parser.options["html"],
        "linkify": parser.options["linkify"],
    }
    enabled = set(parser.get_active_rules()["block"]) | set(parser.get_active_rules()["inline"])
    assert {"table", "strikethrough"} <= enabled and set(config["rules"]) <= enabled


def test_code_keeps_its_blank_lines_with_or_without_highlighting() -> None:
    # What the page shows while streaming (no pygments) has the same lines: no jump at the end.
    for fence in ("```python", "```nosuchlanguage"):
        html = render_markdown(f"{fence}\n\n\nx = 1\n\n```")
        code = html.split("<code", 1)[1].split(">", 1)[1].split("</code>")[0]
        assert code.count("\n") == 4, html


def test_a_code_language_that_is_not_a_name_is_shown_as_text() -> None:
    html = render_markdown('```"><b>x\ncode\n```\n\n```c++\ny\n```')
    tags = elements(html)
    assert ("pre", {"class": "highlight", "data-language": "text"}) in tags
    assert ("pre", {"class": "highlight", "data-language": "c++"}) in tags
