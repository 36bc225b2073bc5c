"""Assistant replies as Markdown: useful formatting renders, anything active stays inert."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from conversations.rendering import render_markdown

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


XSS = [
    pytest.param("<script>alert(1)</script>", id="script"),
    pytest.param("<SCRIPT SRC=https://evil.example/x.js></SCRIPT>", id="script-src"),
    pytest.param('<img src=x onerror="alert(1)">', id="img-onerror"),
    pytest.param("<img src=x onerror=alert(1)//", id="img-unclosed"),
    pytest.param('<svg onload="alert(1)"><circle r="1"/></svg>', id="svg-onload"),
    pytest.param('<iframe src="https://evil.example"></iframe>', id="iframe"),
    pytest.param('<iframe srcdoc="<script>alert(1)</script>">', id="iframe-srcdoc"),
    pytest.param('<object data="javascript:alert(1)"></object>', id="object"),
    pytest.param('<embed src="javascript:alert(1)">', id="embed"),
    pytest.param('<a href="javascript:alert(1)">click</a>', id="raw-a-javascript"),
    pytest.param('<a href="jAvAsCrIpT:alert(1)" onclick="x()">click</a>', id="raw-a-mixed"),
    pytest.param('<div style="background:url(javascript:alert(1))">x</div>', id="raw-style"),
    pytest.param("<style>body{background:red}</style>", id="style-tag"),
    pytest.param('<math><mi xlink:href="javascript:alert(1)">x</mi></math>', id="math"),
    pytest.param('<form action="javascript:alert(1)"><button>x</button></form>', id="form"),
    pytest.param('<details open ontoggle="alert(1)">x</details>', id="details-ontoggle"),
    pytest.param("[x](javascript:alert(1))", id="md-javascript"),
    pytest.param("[x](JaVaScRiPt:alert(1))", id="md-mixed-case"),
    pytest.param("[x](&#106;avascript:alert(1))", id="md-entity-j"),
    pytest.param("[x](javascript&#58;alert(1))", id="md-entity-colon"),
    pytest.param("[x](javascript&colon;alert(1))", id="md-named-entity-colon"),
    pytest.param("[x](&#x6A;&#x61;vascript:alert(1))", id="md-hex-entities"),
    pytest.param("[x]( javascript:alert(1))", id="md-leading-space"),
    pytest.param("[x](<javascript:alert(1)>)", id="md-angle-destination"),
    pytest.param("[x](java\tscript:alert(1))", id="md-tab"),
    pytest.param("[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", id="md-data"),
    pytest.param("[x](vbscript:msgbox(1))", id="md-vbscript"),
    pytest.param("[x](VBScript:msgbox(1))", id="md-vbscript-case"),
    pytest.param("![x](javascript:alert(1))", id="md-image-javascript"),
    pytest.param(
        "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)", id="md-image-data"
    ),
    pytest.param('[x](https://ok.example "a\\" onmouseover=\\"alert(1)")', id="md-title-quote"),
    pytest.param("[x][r]\n\n[r]: javascript:alert(1)", id="reference-javascript"),
    pytest.param("[x][r]\n\n[r]: <data:text/html,<script>alert(1)</script>>", id="reference-data"),
    pytest.param("[r]\n\n[r]: JAVASCRIPT:alert(1)", id="shortcut-reference"),
    pytest.param("<javascript:alert(1)>", id="autolink-javascript"),
    pytest.param("<JavaScript:alert(1)>", id="autolink-mixed-case"),
    pytest.param("<data:text/html,<script>alert(1)</script>>", id="autolink-data"),
    pytest.param("<vbscript:msgbox(1)>", id="autolink-vbscript"),
    pytest.param("```html\n<script>alert(1)</script>\n```", id="fenced-html"),
    pytest.param('```"><script>alert(1)</script>\ncode\n```', id="fence-info-injection"),
    pytest.param("`<img src=x onerror=alert(1)>`", id="inline-code"),
    pytest.param("    <script>alert(1)</script>", id="indented-code"),
    pytest.param("| a |\n|---|\n| <img src=x onerror=alert(1)> |", id="table-cell"),
    pytest.param("> <iframe src=https://evil.example>", id="blockquote"),
    pytest.param("<!-- x --><script>alert(1)</script>", id="comment"),
    pytest.param("<<script>script>alert(1)<</script>/script>", id="nested"),
]


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
