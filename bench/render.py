"""Live Markdown in the browser: what one rendered frame costs as a long reply grows.

Headless Chromium (Debian's, as the browser tests use) loads the page's own modules
(static/js/chat/live.js and markdown.js, the vendored markdown-it and DOMPurify) and the
app's stylesheet, then feeds a 20,000-token reply to a `LiveReply`. The first and the last
1,000 tokens arrive one per animation frame (a fast reply: every frame renders), and each
frame's render is timed with the style and layout it causes (forced right after it), so
each figure is what a frame pays for the reply: parse, sanitise, DOM update, layout. The
18,000 tokens between go in at speed. Two replies: a realistic mix (headings, paragraphs,
lists, code, tables) and one 20,000-token code block that never closes. Against both, the
naive way: the whole text rendered again, at the end of the reply.

Run by bench/orchestrate.py (`make bench`, or `python bench/run.py --only render`) in a
process of its own; `python -m bench.render OUT.json` writes the figures to OUT.json.
"""

from __future__ import annotations

import json
import mimetypes
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Route, sync_playwright

from bench.procs import ROOT
from conversations.demo.script import TOKEN
from conversations.rendering import browser_config

TOKENS = 20_000
TAIL = 1_000  # the frames reported as "at the end": those of the last 1,000 tokens
FULL_REPEATS = 15
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ORIGIN = "http://bench.localhost"

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="stylesheet" href="/static/css/app.css"></head><body>
<div class="log" id="log" role="log"><article class="message message--assistant"
data-role="assistant" data-status="streaming"><div class="message__body"></div></article></div>
<script id="markdown-config" type="application/json">%s</script></body></html>"""


def section(n: int) -> str:
    return (
        f"## Part {n}\n\n"
        f"This part explains **step {n}** of the plan, with `inline code`, *emphasis* and a "
        "[link](https://example.com/docs). It goes on for a while, as answers do, so that "
        "a paragraph is a few lines long on a normal screen and wraps like real text.\n\n"
        "- the first point, short\n- a second point with **bold** words\n"
        "- a third point that runs a little longer than the others do\n\n"
        f"```python\ndef step_{n}(items):\n    total = 0\n    for item in items:\n"
        "        total += item.size\n    return total\n```\n\n"
        "| name | size | note |\n|:--|--:|---|\n| a | 1 | first |\n| b | 22 | second |\n\n"
    )


def mixed_reply(tokens: int) -> list[str]:
    out: list[str] = []
    n = 1
    while len(out) < tokens:
        out.extend(TOKEN.findall(section(n)))
        n += 1
    return out[:tokens]


def code_reply(tokens: int) -> list[str]:
    lines = "".join(
        f"    value_{i} = compute({i}, previous) + offset\n" for i in range(tokens // 4)
    )
    return TOKEN.findall("```python\ndef generated():\n" + lines)[:tokens]


MEASURE = """async ([tokens, tail, repeats]) => {
    const { createMarkdown } = await import("/static/js/chat/markdown.js");
    const { LiveReply } = await import("/static/js/chat/live.js");
    const markdown = createMarkdown(JSON.parse(document.getElementById("markdown-config").textContent));
    const body = document.querySelector(".message__body");
    const live = new LiveReply(body, markdown);
    live.stop(); // frames are driven here
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    // One token per animation frame, as a fast reply arrives: the render and the style and
    // layout it causes, timed inside the frame.
    const measured = async (from, to) => {
        const costs = [];
        for (let i = from; i < to; i += 1) {
            await frame();
            live.append(tokens[i]);
            const started = performance.now();
            live.flush();
            body.getBoundingClientRect();
            costs.push(performance.now() - started);
        }
        return costs;
    };
    const first = await measured(0, tail);
    // The middle of the reply at speed (a render every 20 tokens, a frame every 200).
    for (let i = tail; i < tokens.length - tail; i += 1) {
        live.append(tokens[i]);
        if (i % 20 === 0) live.flush();
        if (i % 200 === 0) await frame();
    }
    live.flush();
    await frame();
    const last = await measured(tokens.length - tail, tokens.length);
    const text = tokens.join("");
    const full = [];
    for (let i = 0; i < repeats; i += 1) {
        await frame();
        const started = performance.now();
        body.replaceChildren(markdown.render(text));
        body.getBoundingClientRect();
        full.push(performance.now() - started);
    }
    return { first, last, full, chars: text.length, blocks: body.children.length };
}"""


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def serve(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/":
        config = json.dumps(browser_config()).replace("<", "\\u003c")
        route.fulfill(status=200, content_type="text/html", body=PAGE % config)
        return
    file = (ROOT / path.lstrip("/")).resolve()
    if (
        not path.startswith("/static/")
        or not file.is_relative_to(ROOT / "static")
        or not file.is_file()
    ):
        route.fulfill(status=404, body="")
        return
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    route.fulfill(status=200, content_type=kind, body=file.read_bytes())


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {"tokens": TOKENS, "tail_tokens": TAIL}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        results["browser"] = browser.version
        for name, tokens in (("mixed", mixed_reply(TOKENS)), ("code", code_reply(TOKENS))):
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.route(f"{ORIGIN}/**", serve)
            page.goto(f"{ORIGIN}/")
            run = page.evaluate(MEASURE, [tokens, TAIL, FULL_REPEATS])
            results[name] = {
                "chars": run["chars"],
                "blocks": run["blocks"],
                "frames_at_end": summary(run["last"]),
                "frames_at_start": summary(run["first"]),
                "full_render_at_end": summary(run["full"]),
            }
            page.close()
        browser.close()
    return results


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(measure(), indent=2) + "\n")
