"""Markdown sources the tests of both renderers share: the server's (conversations/
rendering.py, tests/test_rendering.py) and the page's live one (tests/e2e/test_live_markdown.py).
"""

from __future__ import annotations

import pytest

# Hostile sources: each must render inert, whole or cut off anywhere.
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

# What a reply uses: each must look the same rendered live in the page as by the server.
FEATURES = [
    pytest.param("# Title\n\n## Part\n\nSome **bold**, *em*, ~~gone~~ and `code`.", id="inline"),
    pytest.param("- one\n- two\n  - nested\n\n3. three\n4. four\n", id="lists"),
    pytest.param("- loose\n\n- list\n", id="loose-list"),
    pytest.param("> quoted\n> *text*\n\n---\n\nafter", id="quote-rule"),
    pytest.param("```python\ndef f(x):\n    return x ** 2\n```\n", id="fence-python"),
    pytest.param("```\nplain <b>\n```\n\n```nosuch lang\nx\n```", id="fence-plain"),
    pytest.param("```js\n\n\nlet a = 1;\n\n```", id="fence-blank-lines"),
    pytest.param("    indented code\n    block", id="indented-code"),
    pytest.param("| l | c | r | n |\n|:--|:-:|--:|--|\n| 1 | **2** | `3` | 4 |", id="table"),
    pytest.param(
        '[web](https://example.com/a?b=1 "t") [mail](mailto:a@example.com) '
        "[rel](/c/x/) [anchor](#x) [ftp](ftp://example.com) <https://example.org>",
        id="links",
    ),
    pytest.param("![alt *text*](https://example.com/i.png) ![](https://e.com/x.png)", id="images"),
    pytest.param("[ref][r] and [r]\n\n[r]: https://example.com/r 'T'", id="references"),
    pytest.param("a  \nhard break\\\nand &amp; &copy; &#35; \\*", id="breaks-entities"),
    pytest.param("Setext\n======\n\nOther\n---", id="setext"),
    pytest.param("中文 **粗体** 和 `代码`。\n\n- 项目", id="chinese"),
]
