"""A reply rendered as Markdown while it streams (static/js/chat/live.js), in Chromium.

The page's rendering is watched with a MutationObserver: every state of the DOM that could
be painted is recorded while the reply is `streaming`, so "never" below means never.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from conversations.rendering import render_markdown
from tests.e2e.conftest import Console, open_new_chat
from tests.support.markdown import FEATURES, XSS
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'

# Loaded before the page's scripts. Records, after every change to the message list, the
# reply being written (its text without the Copy buttons, list items, code elements) and
# anything active in any message's text or reasoning: an element that can run or fetch something, an
# event-handler attribute, a link or source with a script or data scheme.
WATCH = """(() => {
    window.__states = [];
    window.__unsafe = [];
    const ACTIVE = /^(script|img|svg|iframe|object|embed|style|math|form|base|link|meta|audio|video|source|input|button)$/i;
    const URLS = /^(href|src|action|formaction|xlink:href|srcset|data|poster)$/i;
    window.__activeIn = (root) => {
        const found = [];
        for (const el of root.querySelectorAll("*")) {
            // The Copy buttons of code blocks are the page's own.
            if (!(el.tagName === "BUTTON" && el.classList.contains("code__copy")) && ACTIVE.test(el.tagName)) found.push(el.outerHTML);
            for (const attr of el.attributes) {
                const value = attr.value.replace(/[\\u0000-\\u0020]/g, "").toLowerCase();
                if (/^on/i.test(attr.name)) found.push(`${el.tagName} ${attr.name}`);
                if (URLS.test(attr.name) && /^(javascript|data|vbscript):/.test(value)) found.push(`${el.tagName} ${attr.name}=${attr.value}`);
            }
        }
        return found;
    };
    document.addEventListener("DOMContentLoaded", () => {
        const log = document.getElementById("log");
        if (!log) return;
        new MutationObserver(() => {
            // Model output lives in the bodies and the reasoning; the page's own controls
            // (Edit, Regenerate, versions, attachments) are around them.
            for (const part of log.querySelectorAll(".message__body, .message__thinking-text")) {
                window.__unsafe.push(...window.__activeIn(part));
            }
            const article = log.querySelector('article[data-role="assistant"][data-status="streaming"]');
            if (!article) return;
            const body = article.querySelector(".message__body").cloneNode(true);
            body.querySelectorAll("button").forEach((button) => button.remove());
            window.__states.push({
                text: body.textContent,
                items: body.querySelectorAll("li").length,
                code: body.querySelectorAll("pre > code").length,
                plain: body.classList.contains("message__body--plain"),
            });
        }).observe(log, { childList: true, subtree: true, characterData: true, attributes: true });
    });
})();"""

# The page's own modules, imported in the page (Playwright's evaluate): the live renderer
# with the server's settings, a container to render into, and the shape of a rendering.
MODULES = """async () => {
    const entry = document.querySelector('script[type="module"][src*="chat"]').src;
    const base = new URL("chat/", entry);
    const { createMarkdown } = await import(new URL("markdown.js", base));
    const { LiveReply } = await import(new URL("live.js", base));
    const { addCopyButtons } = await import(new URL("decorate.js", base));
    const markdown = createMarkdown(JSON.parse(document.getElementById("markdown-config").textContent));
    window.__render = { markdown, LiveReply, addCopyButtons };
    // Elements by tag and attributes, text as it reads; pygments' colour spans (which only
    // the server adds) unwrapped, the page's Copy buttons left out.
    window.__shape = (root) => {
        const copy = root.cloneNode(true);
        copy.querySelectorAll("button.code__copy").forEach((b) => b.remove());
        copy.querySelectorAll('span[class^="hl-"]').forEach((s) => s.replaceWith(...s.childNodes));
        copy.normalize();
        const walk = (node) => {
            if (node.nodeType === Node.TEXT_NODE) return node.data.trim() ? JSON.stringify(node.data) : null;
            const attrs = [...node.attributes].map((a) => `${a.name}=${JSON.stringify(a.value)}`).sort();
            const children = [...node.childNodes].map(walk).filter((c) => c !== null);
            return `<${node.tagName.toLowerCase()}${attrs.length ? " " + attrs.join(" ") : ""}>${children.join("")}</>`;
        };
        return [...copy.childNodes].map(walk).filter((c) => c !== null).join("");
    };
}"""


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def watched_chat(
    context: BrowserContext, server: DaphneProcess, user: Any
) -> tuple[Page, list[str]]:
    context.add_init_script(WATCH)
    page = open_new_chat(context, server, user)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return page, dialogs


REPLY = (
    "Here is **the plan** for today:\n\n"
    "- read the *docs*\n- write `code`\n- ship it\n\n"
    "```python\nfor step in range(3):\n    print(step)\n```\n\n"
    "And a last paragraph, with **bold** text at the end."
)


def test_a_streaming_reply_shows_list_items_and_code_before_done_and_never_raw_markdown(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page, _ = watched_chat(context, server, chatter)
    gateway.enqueue(Script(text=REPLY, token_delay=0.04))
    send(page, "Plan my day")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete")
    states = page.evaluate("window.__states")
    rendered = [s for s in states if s["text"].strip()]
    assert len(rendered) > 10, states  # it was seen growing
    assert any(s["items"] >= 1 for s in rendered), "no list item before done"
    assert any(s["code"] == 1 and s["items"] == 3 for s in rendered), "no code before done"
    assert not any(s["plain"] for s in rendered)
    raw = [
        s["text"] for s in rendered if "```" in s["text"] or "**" in s["text"] or "``" in s["text"]
    ]
    assert raw == []
    # The server's HTML took over: highlighted by pygments, the same blocks.
    assert reply.locator('.message__body span[class^="hl-"]').count() > 0
    assert reply.locator(".message__body li").count() == 3
    assert page.evaluate("window.__unsafe") == []


def test_a_reply_being_written_when_the_page_loads_is_rendered_live_from_the_state_frame(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page, _ = watched_chat(context, server, chatter)
    gateway.enqueue(Script(text=REPLY + "\n\n" + REPLY, token_delay=0.05))
    send(page, "Plan my day twice")
    reply = page.locator(ASSISTANT).last
    expect(reply.locator(".message__body li").first).to_be_visible()
    page.reload()
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete")
    rendered = [s for s in page.evaluate("window.__states") if s["text"].strip()]
    assert rendered, "the reply was not seen streaming after the reload"
    assert rendered[-1]["items"] >= 3 and not rendered[-1]["plain"]


# Payloads whose dangerous part is split across deltas, each delta a frame of its own.
SPLIT = [
    "Hello <scr",
    "ipt>window.__xss = 1; alert('script')</scr",
    "ipt> after.\n\n",
    "An image: <img src=x on",
    "error=\"alert('img')\" ",
    "and more\n\n",
    "[click me](java",
    "script:alert('link')) and [again](JaVa",
    'Script&#58;alert(1)) and <a href="java',
    "script:alert('a')\">raw</a>\n\n",
    "<java",
    "script:alert('auto')> and ![x](java",
    "script:alert('image'))\n\n",
    "```html\n<scr",
    "ipt>alert('code')</scr",
    "ipt>\n``",
    "`\n\nThe end.",
]


def test_payloads_split_across_deltas_stay_inert_in_every_state_while_streaming(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page, dialogs = watched_chat(context, server, chatter)
    gateway.enqueue(Script(chunks=SPLIT, token_delay=0.15))
    send(page, "Be naughty, slowly")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "complete")
    page.wait_for_timeout(300)
    states = [s["text"] for s in page.evaluate("window.__states")]
    # The page rendered between the halves: the first half of each split was on screen.
    assert any("<scr" in t and "<script" not in t for t in states), states
    assert any("<img src=x on" in t and "onerror" not in t for t in states), states
    assert any("click me" in t and "alert('link')" not in t for t in states), states
    assert page.evaluate("window.__unsafe") == []
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    # Shown as text, never as markup, and the fenced one as code.
    expect(reply.locator("code")).to_contain_text("<script>alert('code')</script>")
    assert (
        page.evaluate(
            "[...document.querySelectorAll('#log .message__body, #log .message__thinking-text')]"
            ".flatMap((part) => window.__activeIn(part))"
        )
        == []
    )


def test_every_cut_of_a_hostile_reply_renders_inert_in_the_page(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page, dialogs = watched_chat(context, server, chatter)
    page.evaluate(MODULES)
    sources = [param.values[0] for param in XSS]
    found = page.evaluate(
        """(sources) => {
            const { markdown, LiveReply } = window.__render;
            const box = document.createElement("div");
            document.body.append(box);
            const found = [];
            for (const source of sources) {
                // Streamed one character per frame: every state a reader could see.
                const live = new LiveReply(box, markdown);
                live.stop();
                for (const char of source) {
                    live.append(char);
                    live.flush();
                    for (const what of window.__activeIn(box)) found.push([source, what]);
                }
            }
            box.remove();
            return found;
        }""",
        sources,
    )
    assert found == []
    page.wait_for_timeout(200)
    assert dialogs == []


def test_the_live_rendering_of_a_whole_reply_is_the_servers_html(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page, _ = watched_chat(context, server, chatter)
    page.evaluate(MODULES)
    samples = [param.values[0] for param in [*FEATURES, *XSS]]
    samples.append("\n\n".join(samples[: len(FEATURES)]))  # all of them in one reply
    compared = page.evaluate(
        """([samples, servers]) => {
            const { markdown, LiveReply, addCopyButtons } = window.__render;
            return samples.map((source, index) => {
                // Streamed in small pieces, as deltas come, then compared with the server.
                const box = document.createElement("div");
                const live = new LiveReply(box, markdown);
                live.stop();
                for (let at = 0; at < source.length; at += 3) {
                    live.append(source.slice(at, at + 3));
                    live.flush();
                }
                // Its last line ended (a line of only `---` is held back until it has).
                live.append("\\n");
                live.flush();
                const server = document.createElement("div");
                server.innerHTML = servers[index];
                addCopyButtons(server);
                return [window.__shape(box), window.__shape(server)];
            });
        }""",
        [samples, [render_markdown(source) for source in samples]],
    )
    mismatches = [
        (source, live, served)
        for source, (live, served) in zip(samples, compared, strict=True)
        if live != served
    ]
    assert mismatches == []


def test_many_deltas_in_one_frame_are_rendered_once_and_half_typed_syntax_is_not_shown(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page, _ = watched_chat(context, server, chatter)
    page.evaluate(MODULES)
    renders = page.evaluate(
        """async () => {
            const { markdown, LiveReply } = window.__render;
            const box = document.createElement("div");
            const live = new LiveReply(box, markdown);
            let renders = 0;
            const render = live.render.bind(live);
            live.render = () => { renders += 1; render(); };
            for (let i = 0; i < 100; i += 1) live.append(`word${i} `);
            const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
            await frame(); await frame(); await frame();
            live.stop();
            return renders;
        }"""
    )
    assert renders == 1
    shown = page.evaluate(
        """(sources) => {
            const { markdown, LiveReply } = window.__render;
            return sources.map((source) => {
                const box = document.createElement("div");
                const live = new LiveReply(box, markdown);
                live.stop();
                live.append(source);
                live.flush();
                return window.__shape(box);
            });
        }""",
        [
            "```python\nx = 1",
            "Some **bold te",
            "A `co",
            "Now ``",
            "Read [the docs](https://exa",
            "Intro\n-",
            "Intro\n\n#",
            "| a | b |\n|--",
        ],
    )
    assert shown == [
        '<div class="code"><pre class="highlight" data-language="python">'
        '<code class="language-python">"x = 1"</></></>',
        '<p>"Some "<strong>"bold te"</></>',
        '<p>"A "<code>"co"</></>',
        '<p>"Now"</>',
        '<p>"Read the docs"</>',
        '<p>"Intro"</>',
        '<p>"Intro"</>',
        '<p>"| a | b |"</>',
    ]


def test_an_open_code_block_grows_by_its_new_text_and_shows_what_a_full_render_shows(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page, _ = watched_chat(context, server, chatter)
    page.evaluate(MODULES)
    source = (
        "Intro **text**.\n\n```python\nx = 1\n    indented <b>\n``not a fence\n  ``\n~~~\n"
        "last line\n```\n\nAfter *the* code.\n\n~~~\nmore\n  ~~~~  \n"
    )
    result = page.evaluate(
        """(source) => {
            const { markdown, LiveReply } = window.__render;
            const box = document.createElement("div");
            const live = new LiveReply(box, markdown);
            live.stop();
            const differences = [];
            const elements = new Set();
            for (const char of source) {
                live.append(char);
                live.flush();
                // The same text rendered from scratch, in one go.
                const fresh = document.createElement("div");
                const whole = new LiveReply(fresh, markdown);
                whole.stop();
                whole.append(live.text);
                whole.flush();
                if (window.__shape(box) !== window.__shape(fresh)) differences.push([live.text, window.__shape(box), window.__shape(fresh)]);
                if (live.fence) elements.add(live.fence.code);
            }
            return { differences, followed: elements.size, text: box.textContent };
        }""",
        source,
    )
    assert result["differences"] == []
    # Two open code blocks, each followed by one element while it grew.
    assert result["followed"] == 2


# Holds each `done` frame for two animation frames (the live rendering catches up), then
# measures the reply before and after the page puts the server's HTML in its place.
MEASURE_DONE = """(() => {
    const Native = window.WebSocket;
    window.__swaps = [];
    const measure = (id) => {
        const body = document.querySelector(`article[data-message-id="${id}"] .message__body`);
        return body ? { height: body.getBoundingClientRect().height, blocks: [...body.children].map((e) => e.tagName + "." + e.className) } : null;
    };
    window.WebSocket = class extends Native {
        addEventListener(type, listener, options) {
            if (type !== "message") return super.addEventListener(type, listener, options);
            return super.addEventListener(type, (event) => {
                const frame = JSON.parse(event.data);
                if (frame.type !== "done") return listener(event);
                requestAnimationFrame(() => requestAnimationFrame(() => {
                    const before = measure(frame.message_id);
                    listener(event);
                    window.__swaps.push({ before, after: measure(frame.message_id) });
                }));
            }, options);
        }
    };
})();"""


def test_the_servers_html_replaces_the_live_rendering_without_a_jump(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    context.add_init_script(MEASURE_DONE)
    page = open_new_chat(context, server, chatter)
    text = (
        "# A heading\n\nSome *text* and a [link](https://example.com).\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n> a quote\n\n1. one\n2. two\n\n" + REPLY
    )
    gateway.enqueue(Script(text=text, token_delay=0.01))
    send(page, "Everything at once")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
    (swap,) = page.evaluate("window.__swaps")
    assert swap["before"]["blocks"] == swap["after"]["blocks"]
    assert abs(swap["before"]["height"] - swap["after"]["height"]) < 0.5, swap
