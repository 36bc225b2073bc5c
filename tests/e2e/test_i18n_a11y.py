"""Two languages, input methods, reasoning blocks and accessibility, in a real browser.

axe-core (tests/e2e/axe.py) checks the login, list, chat and admin-credential pages in
light and dark, English and Chinese: no serious or critical violation is allowed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import BrowserContext, Page, expect

from conversations import services
from conversations.demo.script import Script
from conversations.models import Conversation, Message
from tests.conftest import give_key
from tests.e2e import axe
from tests.e2e.conftest import (
    MakeContext,
    new_chat,
    open_new_chat,
    sign_in_with_cookie,
    signed_in_page,
)
from tests.support.processes import DaphneProcess
from tests.support.turns import stored_thread

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'


@pytest.fixture(scope="session")
def axe_script() -> str:
    try:
        return str(axe.install())
    except (RuntimeError, OSError) as exc:  # pragma: no cover - a machine without npm
        pytest.fail(f"axe-core could not be installed: {exc}")


# --- languages ----------------------------------------------------------------------------
def test_the_ui_follows_the_browser_language_and_the_switch_is_remembered(
    server: DaphneProcess, make_context: MakeContext, chatter: Any, gateway: Any
) -> None:
    page = make_context(locale="zh-CN").new_page()
    page.goto(f"{server.http_url}/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("heading", name="登录聊天")).to_be_visible()
    page.get_by_label("用户名").fill("carol")
    page.get_by_label("密码").fill("pw-carol")
    page.get_by_role("button", name="登录", exact=True).click()

    new_chat(page, "新对话")
    page.get_by_role("textbox", name="消息").fill("你好")
    page.get_by_role("button", name="发送", exact=True).click()
    # Strings of chat.js come from the JavaScript catalog.
    expect(page.locator("#connection")).to_have_text("已连接")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator(f"{ASSISTANT} .message__author")).to_have_text("助手")
    expect(page.get_by_role("button", name="重新生成")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")

    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Connected")
    page.reload()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    expect(page.get_by_role("navigation", name="Conversations")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies[settings.LANGUAGE_COOKIE_NAME]["value"] == "en"
    assert cookies[settings.LANGUAGE_COOKIE_NAME]["expires"] > time.time() + 180 * 86400


# --- the composer -------------------------------------------------------------------------
def test_enter_while_an_input_method_composes_does_not_send(
    server: DaphneProcess, browser_context: tuple[BrowserContext, Any], chatter: Any
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    new_chat(page)
    box = page.get_by_role("textbox", name="Message")
    box.focus()
    # What a Chinese input method does: composition events around the candidate text,
    # and the Enter that picks a candidate arrives flagged as composing (keyCode 229).
    page.evaluate(
        """() => {
            const box = document.getElementById("composer-input");
            box.dispatchEvent(new CompositionEvent("compositionstart", {data: ""}));
            box.value = "nihao";
            box.dispatchEvent(new InputEvent("input", {data: "nihao", isComposing: true}));
            for (const init of [
                {key: "Enter", code: "Enter", keyCode: 229, isComposing: true},
                // Some browsers flag neither: the composition events alone must hold it.
                {key: "Enter", code: "Enter", keyCode: 13},
            ]) {
                box.dispatchEvent(new KeyboardEvent("keydown", {...init, bubbles: true, cancelable: true}));
            }
            box.value = "你好";
            box.dispatchEvent(new CompositionEvent("compositionend", {data: "你好"}));
            box.dispatchEvent(new InputEvent("input", {data: "你好"}));
        }"""
    )
    page.wait_for_timeout(300)
    expect(page.locator("article")).to_have_count(0)
    expect(box).to_have_value("你好")

    box.press("Enter")
    expect(page.locator('article[data-role="user"]')).to_have_text(re.compile("你好"))
    expect(box).to_have_value("")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")


def test_the_composer_grows_keeps_its_draft_and_takes_a_long_paste(
    server: DaphneProcess, browser_context: tuple[BrowserContext, Any], chatter: Any
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    box = page.get_by_role("textbox", name="Message")
    one_line = box.bounding_box()["height"]
    box.fill("first line\nsecond line\nthird line\nfourth line")
    grown = box.bounding_box()["height"]
    assert grown > one_line * 1.8, (one_line, grown)

    page.wait_for_timeout(500)  # the draft is saved after a short pause in typing
    page.reload()
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_have_value("first line\nsecond line\nthird line\nfourth line")
    assert box.bounding_box()["height"] == pytest.approx(grown, abs=2)
    # Drafts are per conversation.
    url = page.url
    page.goto(f"{server.http_url}/")
    new_chat(page)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
    page.goto(url)

    box = page.get_by_role("textbox", name="Message")
    box.fill("")
    elapsed = page.evaluate(
        """async () => {
            const box = document.getElementById("composer-input");
            box.focus();
            const text = "长文本 long text ".repeat(3000).slice(0, 30000);
            const start = performance.now();
            document.execCommand("insertText", false, text);  // what a paste does
            await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
            return performance.now() - start;
        }"""
    )
    assert elapsed < 1500, f"a 30,000-character paste took {elapsed:.0f} ms to show"
    started = time.monotonic()
    box.press_sequentially("!!!")
    expect(box).to_have_value(re.compile(r"!!!$"))
    assert time.monotonic() - started < 3
    assert len(box.input_value()) == 30_003
    # Capped: the page keeps room for the conversation.
    assert box.bounding_box()["height"] <= 330

    box.press("Enter")
    expect(page.locator('article[data-role="user"]')).to_have_count(1)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(box).to_have_value("")
    stored = Message.objects.filter(role="user", conversation__owner=chatter).latest("id")
    assert len(stored.content) == 30_003


# --- reasoning ----------------------------------------------------------------------------
def test_a_thinking_block_is_open_while_it_streams_and_folded_after(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Any],
    chatter: Any,
    gateway: Any,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    new_chat(page)
    thinking = " ".join(f"step{i}" for i in range(1, 61))
    gateway.enqueue(Script(thinking=thinking, text="The **answer** is 42.", token_delay=0.03))
    page.get_by_role("textbox", name="Message").fill("What is the answer?")
    page.keyboard.press("Enter")

    reply = page.locator(ASSISTANT)
    details = reply.locator("details.message__thinking")
    expect(details).to_have_attribute("open", "")
    expect(details.locator("summary")).to_have_text("Thinking")
    expect(details).to_contain_text("step5")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(details).not_to_have_attribute("open", "")
    expect(details.locator(".message__thinking-text")).to_have_text(thinking)
    expect(details.locator(".message__thinking-text")).to_be_hidden()
    expect(reply.locator(".message__body strong")).to_have_text("answer")
    # Above the answer.
    order = reply.evaluate(
        "a => [...a.children].map(c => c.className.split(' ')[0])",
    )
    assert order.index("message__thinking") < order.index("message__body")

    details.locator("summary").click()
    expect(details.locator(".message__thinking-text")).to_be_visible()

    page.reload()
    details = page.locator(f"{ASSISTANT} details.message__thinking")
    expect(details).not_to_have_attribute("open", "")
    expect(page.locator(f"{ASSISTANT} .message__body")).to_have_text("The answer is 42.")


# --- accessibility ------------------------------------------------------------------------
def test_a_reply_is_announced_once_when_complete_not_token_by_token(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Any],
    chatter: Any,
    gateway: Any,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    new_chat(page)
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    gateway.enqueue(Script(words=300, token_delay=0.01))
    page.get_by_role("textbox", name="Message").fill("Count for me")
    page.get_by_role("button", name="Send").click()

    reply = page.locator(ASSISTANT)
    expect(reply).to_contain_text("w10")
    expect(reply).to_have_attribute("aria-busy", "true")
    # Quiet while tokens arrive...
    expect(log).to_have_attribute("aria-live", "off")
    expect(page.locator("#announcer")).to_have_text("")
    # ... one sentence when the reply is done.
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply).not_to_have_attribute("aria-busy", "true")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.get_by_role("status").filter(has_text="Reply complete.")).to_have_count(1)


def test_focus_returns_to_the_composer_after_send_stop_and_regenerate(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Any],
    chatter: Any,
    gateway: Any,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    new_chat(page)
    box = page.get_by_role("textbox", name="Message")
    gateway.enqueue(Script(words=2000, token_delay=0.01))
    box.fill("Long one")
    page.get_by_role("button", name="Send").click()
    expect(box).to_be_focused()

    expect(page.locator(ASSISTANT)).to_contain_text("w20")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "stopped")
    expect(box).to_be_focused()

    page.get_by_role("button", name="Regenerate").click()
    expect(box).to_be_focused()
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.locator(ASSISTANT)).to_have_count(1)


def test_a_failed_reply_offers_retry_inside_its_alert(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Any],
    chatter: Any,
    gateway: Any,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    new_chat(page)
    gateway.enqueue(*[Script(status=529)] * 3)
    page.get_by_role("textbox", name="Message").fill("Are you there?")
    page.keyboard.press("Enter")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "error")
    alert = reply.get_by_role("alert")
    expect(alert).to_contain_text("overloaded")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()

    alert.get_by_role("button", name="Retry").click()
    expect(page.locator(ASSISTANT)).to_have_count(1)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()

    # After a reload, the stored failure offers Retry too.
    gateway.enqueue(*[Script(status=529)] * 3)
    page.get_by_role("textbox", name="Message").fill("Again?")
    page.keyboard.press("Enter")
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "error")
    page.reload()
    expect(page.locator(ASSISTANT).last.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator(ASSISTANT).first.get_by_role("button", name="Retry")).to_have_count(0)


FOCUS_PROBE = """() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    // The message box's ring is its composer's (the box that holds the text and the buttons).
    const box = el.closest(".composer");
    const name = (el.getAttribute("aria-label") || el.innerText || el.value || el.placeholder || "").trim().split("\\n")[0];
    return {
        tag: el.tagName.toLowerCase(),
        role: el.getAttribute("role") || "",
        name: name.slice(0, 40),
        outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
        shadow: box ? /0px 0px 0px 2px/.test(getComputedStyle(box).boxShadow) : style.boxShadow !== "none",
    };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_control_is_reachable_by_keyboard_with_a_visible_focus_ring(
    server: DaphneProcess, make_context: MakeContext, chatter: Any, gateway: Any, scheme: str
) -> None:
    conversation = _conversation_with_everything(chatter)
    context = make_context(color_scheme=scheme)
    sign_in_with_cookie(context, server, chatter)
    page = context.new_page()
    page.goto(f"{server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    page.locator("body").click(position={"x": 5, "y": 5})
    # The conversation menu's items are reached once it is open (its summary is, always).
    page.evaluate("document.getElementById('conversation-menu').open = true")

    reached: list[dict[str, Any]] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        focus = page.evaluate(FOCUS_PROBE)
        if focus["tag"] == "body":
            continue
        if reached and focus == reached[0]:
            break  # round the whole page once
        reached.append(focus)
    names = {f["name"] for f in reached}
    for expected in (
        "New chat",
        "Search conversations",
        "A conversation with everything",
        "Conversation actions",
        "Rename",
        "Settings",
        "Pin",
        "Archive",
        "Export Markdown",
        "Export JSON",
        "Delete",
        "Menu",
        "Archived",
        "Keyboard shortcuts",
        "Messages",
        "Thinking",
        "Copy",
        "Retry",
        "Message",
        "Attach",
        "Regenerate",
        "Edit",
        "Next version",
        "Send",
        "Sign out",
        "English",
    ):
        assert expected in names, f"{expected!r} is not reachable with Tab: {sorted(names)}"
    invisible = [f for f in reached if not (f["outline"] or f["shadow"])]
    assert not invisible, f"focused without a visible focus ring: {invisible}"


def _conversation_with_everything(user: Any) -> Conversation:
    """A stored conversation with a reasoning block, code, a table, a failed reply, and a
    reply with two versions (the first one shown)."""
    conversation = services.conversations.create_conversation(
        user, title="A conversation with everything"
    )
    question, reply, *_ = stored_thread(
        conversation,
        {"role": "user", "content": "Show me some code"},
        {
            "role": "assistant",
            "model": "hy3-preview",
            "thinking": "They want an example. Python is a safe choice.",
            "content": (
                "Here is **Python**, with `print`:\n\n```python\nfor i in range(3):\n"
                '    print("hello", i)\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n'
                "> A quote, and a [link](https://example.com)."
            ),
            "input_tokens": 12,
            "output_tokens": 40,
        },
        {"role": "user", "content": "And a second answer?"},
        {
            "role": "assistant",
            "model": "hy3-preview",
            "status": Message.Status.ERROR,
            "error_code": "overloaded",
            "error_message": "The model is overloaded right now. Try again in a minute.",
        },
    )
    # A newer version beside the first reply; the question remembers the older one shown.
    conversation.messages.create(
        parent=question, role="assistant", model="hy3-preview", content="Another answer."
    )
    Message.objects.filter(pk=question.pk).update(shown_child=reply)
    return conversation


# --- axe ------------------------------------------------------------------------------------
@pytest.fixture
def own_server(server: DaphneProcess) -> Iterator[DaphneProcess]:
    """A Daphne process for one test. The admin caches content type ids per process, and
    the flush after every test renumbers them: an admin page visited on the shared server
    would make a later test's admin fail with a foreign key error."""
    process = DaphneProcess(
        **{
            name: server.env[name]
            for name in ("CHAT_UPSTREAM_RETRY_BACKOFF", "CHAT_RATE_LIMIT_PER_MINUTE")
        }
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def admin_user(transactional_db: None, gateway: Any) -> Any:
    boss = get_user_model().objects.create_superuser("ada", password="pw-ada")
    give_key(boss, gateway, "sk-ada-e2e")
    return boss


def _check(page: Page, label: str, failures: list[str]) -> None:
    violations = axe.run(page)
    serious = axe.blocking(violations)
    if serious:
        failures.append(f"== {label}\n{axe.describe(serious)}")


@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violations_on_the_main_pages(
    own_server: DaphneProcess,
    make_context: MakeContext,
    admin_user: Any,
    axe_script: str,
    scheme: str,
    language: str,
) -> None:
    conversation = _conversation_with_everything(admin_user)
    options = {"color_scheme": scheme, "locale": language, "bypass_csp": True}
    failures: list[str] = []

    login = make_context(**options).new_page()
    login.goto(f"{own_server.http_url}/accounts/login/")
    _check(login, "login", failures)
    login.get_by_label(re.compile("Username|用户名")).fill("nobody")
    login.get_by_label(re.compile("Password|密码")).fill("wrong")
    login.locator("button[type=submit]").first.click()
    expect(login.get_by_role("alert")).to_be_visible()
    _check(login, "login with an error", failures)

    context = make_context(**options)
    sign_in_with_cookie(context, own_server, admin_user)
    page = context.new_page()
    page.goto(f"{own_server.http_url}/")
    _check(page, "home (the composer)", failures)
    page.keyboard.press("Control+/")
    expect(page.locator("#shortcuts-dialog")).to_be_visible()
    _check(page, "shortcuts dialog", failures)
    page.keyboard.press("Escape")

    page.goto(f"{own_server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(page.locator("[data-retry]")).to_be_visible()
    _check(page, "chat", failures)
    page.locator("#conversation-menu summary").click()
    _check(page, "chat, conversation menu open", failures)
    page.locator("[data-dialog=settings-dialog]").click()
    expect(page.locator("#settings-dialog")).to_be_visible()
    page.locator("#settings-dialog #id_temperature").fill("7")
    page.locator("#settings-dialog button[type=submit]").click()
    expect(page.locator("#settings-dialog [role=alert]").first).to_be_visible()
    _check(page, "settings dialog with an error", failures)
    page.keyboard.press("Escape")
    page.locator("#conversation-menu summary").click()
    page.locator("[data-dialog=delete-dialog]").click()
    expect(page.locator("#delete-dialog")).to_be_visible()
    _check(page, "delete dialog", failures)
    page.keyboard.press("Escape")
    page.locator("#sidebar-toggle").click()
    _check(page, "chat, sidebar folded", failures)
    page.locator("#sidebar-toggle").click()

    page.goto(f"{own_server.http_url}/archived/")
    _check(page, "archived", failures)

    page.goto(f"{own_server.http_url}/admin/conversations/apicredential/add/")
    _check(page, "admin credential", failures)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{own_server.http_url}/")
    _check(page, "home on a phone", failures)
    page.goto(f"{own_server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    page.get_by_role("button", name=re.compile("Menu|菜单")).click()
    expect(
        page.get_by_role("navigation", name=re.compile("Conversations|对话列表"))
    ).to_be_visible()
    _check(page, "chat on a phone, menu open", failures)

    assert not failures, "\n".join(failures)
