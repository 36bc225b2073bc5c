"""The product as a person uses it, in a real browser, finding elements by accessible names."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from conversations.models import Conversation, Message
from tests.conftest import give_key, make_user
from tests.e2e.conftest import Console, new_chat, open_new_chat, sign_in_with_cookie
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'


@pytest.fixture
def limited_server(django_db_setup: None) -> Iterator[DaphneProcess]:
    """A Daphne process of its own that allows 4 turns a minute (counted in its own cache)."""
    process = DaphneProcess(
        CHAT_UPSTREAM_RETRY_BACKOFF="0.05",
        CHAT_RATE_LIMIT_PER_MINUTE="4",
        CHAT_CHECKPOINT_INTERVAL="0.3",
    )
    process.start()
    yield process
    process.stop()


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def last_reply(page: Page) -> Any:
    return page.locator(ASSISTANT).last


def test_sign_in_chat_watch_the_reply_grow_and_find_it_after_reload(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = context.new_page()
    page.goto(f"{server.http_url}/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("pw-carol")
    page.get_by_role("button", name="Sign in").click()
    new_chat(page)

    page.get_by_role("textbox", name="Message").fill("Tell me about streaming")
    page.keyboard.press("Enter")
    expect(page.locator('article[data-role="user"]')).to_contain_text("Tell me about streaming")

    reply = last_reply(page)
    lengths: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if reply.count() and reply.get_attribute("data-status") == "complete":
            break
        if reply.count():
            lengths.append(len(reply.locator(".message__body").inner_text()))
        time.sleep(0.03)
    expect(reply).to_have_attribute("data-status", "complete")
    final = reply.locator(".message__body").inner_text()
    intermediate = sorted({n for n in lengths if 0 < n < len(final)})
    assert len(intermediate) >= 2, f"the reply did not grow visibly: {intermediate}"
    live = [_shape(article) for article in page.locator("article").all()]

    page.reload()
    expect(page.locator("article")).to_have_count(2)
    # Shown live or after a reload, the messages are the same markup (the model included).
    assert [_shape(article) for article in page.locator("article").all()] == live
    assert "SPAN.message__model" in live[1]
    expect(page.locator('article[data-role="user"]')).to_contain_text("Tell me about streaming")
    expect(last_reply(page)).to_contain_text("offline demo model")
    expect(page.get_by_role("log")).to_be_visible()


def _shape(article: Any) -> str:
    """The elements of a message, in order, by tag and class."""
    return article.evaluate(
        "a => [a, ...a.querySelectorAll('*')].map(e => `${e.tagName}.${e.className}`).join(' ')"
    )


def test_stop_mid_reply_then_send_again(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    gateway.enqueue(Script(words=2000, token_delay=0.01))
    send(page, "Write something long")
    expect(last_reply(page)).to_contain_text("w20")
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "stopped")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    # Focus goes back to the composer.
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()

    send(page, "And now a short one")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    stopped = Message.objects.filter(role="assistant", status="stopped").get()
    assert 0 < len(stopped.content.split()) < 2000


def test_an_upstream_error_is_explained_and_a_retry_works(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    gateway.enqueue(*[Script(status=529)] * 3)
    send(page, "Are you there?")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "error")
    expect(reply.get_by_role("alert")).to_contain_text("overloaded")
    expect(page.locator('article[data-role="user"]')).to_contain_text("Are you there?")

    page.get_by_role("button", name="Regenerate").click()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(last_reply(page)).to_contain_text("offline demo model")
    expect(page.locator(ASSISTANT)).to_have_count(1)


# Loaded before the page's scripts: the page's socket loses the delta with seq 5, once, as
# a channel layer over capacity would drop it.
DROP_ONE_DELTA = """(() => {
    const Native = window.WebSocket;
    window.__dropped = 0;
    window.WebSocket = class extends Native {
        addEventListener(type, listener, options) {
            if (type !== "message") return super.addEventListener(type, listener, options);
            return super.addEventListener(type, (event) => {
                const frame = JSON.parse(event.data);
                if (frame.type === "delta" && frame.seq === 5 && !window.__dropped) {
                    window.__dropped = 1;
                    return;
                }
                listener(event);
            }, options);
        }
    };
})();"""


def test_a_lost_delta_makes_the_page_start_over_from_the_servers_text(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    context.add_init_script(DROP_ONE_DELTA)
    page = open_new_chat(context, server, chatter)
    reloads: list[str] = []
    page.on("request", lambda r: reloads.append(r.url) if "/messages/" in r.url else None)
    whole = " ".join(f"w{i}" for i in range(1, 301))
    gateway.enqueue(Script(words=300, token_delay=0.01))
    send(page, "Count slowly")
    body = last_reply(page).locator(".message__body")
    # While it is written, the reply is always a beginning of the whole: never a hole.
    seen: list[str] = []
    while last_reply(page).get_attribute("data-status") != "complete":
        seen.append(body.inner_text())
        page.wait_for_timeout(50)
    assert page.evaluate("window.__dropped") == 1
    assert reloads, "the page did not reload the stored messages after the gap"
    # Only what it lacked: what follows the question, the last message it showed whole.
    question = page.locator('article[data-role="user"]').last.get_attribute("data-message-id")
    assert all(url.endswith(f"/messages/?since={question}") for url in reloads), reloads
    assert all(whole.startswith(text.strip()) for text in seen), seen
    assert len({text for text in seen if text}) > 3  # it was seen growing
    expect(body).to_have_text(whole)


def test_search_open_rename_export_and_delete(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    gateway.enqueue(Script(text="The zephyrine glacier melts slowly."))
    send(page, "Tell me about ice")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    conversation_url = page.url

    page.goto(f"{server.http_url}/")
    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill("zephyrine")
    search.press("Enter")
    hit = page.locator(".result").first
    expect(hit.locator("mark")).to_have_text("zephyrine")
    hit.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/"))
    assert page.url.split("?")[0].split("#")[0] == conversation_url

    page.get_by_label("Conversation actions").click()
    page.get_by_role("button", name="Rename").click()
    title_box = page.get_by_role("textbox", name="Title")
    title_box.fill("Glaciers")
    title_box.press("Enter")
    expect(page.get_by_role("heading", name="Glaciers")).to_be_visible()
    expect(
        page.get_by_role("navigation", name="Conversations").get_by_role("link", name="Glaciers")
    ).to_be_visible()

    page.get_by_label("Conversation actions").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export JSON").click()
    exported = json.loads(open(download_info.value.path(), encoding="utf-8").read())
    assert exported["conversation"]["title"] == "Glaciers"
    assert [m["content"] for m in exported["messages"]] == [
        "Tell me about ice",
        "The zephyrine glacier melts slowly.",
    ]

    page.get_by_label("Conversation actions").click()
    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url(f"{server.http_url}/")
    expect(
        page.get_by_role("navigation", name="Conversations").get_by_role("link", name="Glaciers")
    ).to_have_count(0)
    assert not Conversation.objects.filter(owner=chatter).exists()


def test_html_and_scripts_from_the_model_render_inert(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    sign_in_with_cookie(context, server, chatter)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.http_url}/")
    new_chat(page)
    payload = (
        "<img src=x onerror=\"alert('img')\"> <script>window.__xss = 1; alert('script')</script> "
        "[click me](javascript:alert('link')) <svg onload=\"alert('svg')\"></svg> "
        "<a href=\"javascript:alert('a')\">raw</a>\n\n```html\n<script>alert('code')</script>\n```\n"
    )
    gateway.enqueue(Script(text=payload))
    send(page, "Be naughty")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    for link in page.locator(f"{ASSISTANT} a").all():
        href = link.get_attribute("href") or ""
        assert not href.lower().startswith("javascript"), href
    assert (
        page.locator(f"{ASSISTANT} img[onerror], {ASSISTANT} script, {ASSISTANT} svg").count() == 0
    )
    expect(last_reply(page).locator("code")).to_contain_text("<script>alert('code')</script>")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_close_the_page_mid_reply_and_find_the_whole_reply_later(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    url = page.url
    gateway.enqueue(Script(words=150, token_delay=0.01))
    send(page, "Keep going without me")
    expect(last_reply(page)).to_contain_text("w5")
    page.close()

    again = context.new_page()
    again.goto(url)
    reply = last_reply(again)
    expect(reply).to_have_attribute("data-status", "complete", timeout=15_000)
    expect(reply.locator(".message__body")).to_have_text(" ".join(f"w{i}" for i in range(1, 151)))


def test_the_admin_gives_a_user_a_key_and_that_user_chats(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    browser: Any,
    request: pytest.FixtureRequest,
    transactional_db: None,
    gateway: FakeGateway,
) -> None:
    admin = make_user("boss", is_staff=True, is_superuser=True)
    dave = make_user("dave")
    context, _ = browser_context
    sign_in_with_cookie(context, server, admin)
    page = context.new_page()
    page.goto(f"{server.http_url}/admin/conversations/apicredential/add/")
    _pick_user(page, "dave")
    page.get_by_label("Label").fill("Dave's CloudBase key")
    page.get_by_label("Base URL").fill(gateway.base_url)
    page.get_by_label("Default model").fill("hy3-preview")
    page.get_by_label("API key").fill("sk-dave-from-admin-9f3e")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert "sk-dave-from-admin-9f3e" not in page.content()

    from tests.e2e.conftest import _context, _finish

    dave_context, dave_console = _context(browser, request)
    try:
        sign_in_with_cookie(dave_context, server, dave)
        dave_page = dave_context.new_page()
        dave_page.goto(f"{server.http_url}/")
        new_chat(dave_page)
        send(dave_page, "Hello from Dave")
        expect(last_reply(dave_page)).to_have_attribute("data-status", "complete")
    finally:
        _finish(request, dave_context, dave_console)
    assert gateway.requests[-1].headers["authorization"] == "Bearer sk-dave-from-admin-9f3e"


def _pick_user(page: Page, username: str) -> None:
    # The admin's autocomplete widget (select2) for the user field.
    page.locator(".select2-selection").first.click()
    page.locator(".select2-search__field").fill(username)
    page.locator(".select2-results__option", has_text=username).first.click()


def test_a_refused_send_gives_the_text_back_and_send_works_again(
    limited_server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, limited_server, chatter)
    box = page.get_by_role("textbox", name="Message")
    # Turns are counted per clock minute: start early enough for all five to fit in one.
    seconds_left = 60 - time.time() % 60
    if seconds_left < 25:
        time.sleep(seconds_left + 0.5)
    for n in range(1, 5):
        send(page, f"Question {n}")
        expect(page.locator(ASSISTANT)).to_have_count(n)
        expect(last_reply(page)).to_have_attribute("data-status", "complete")

    send(page, "Question 5, one too many")
    expect(page.get_by_role("alert").filter(has_text="too quickly")).to_be_visible()
    # Nothing was stored: the text is back in the composer, Send works, nothing hangs.
    expect(box).to_have_value("Question 5, one too many")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.locator('article[data-status="sending"]')).to_have_count(0)
    expect(page.locator('article[data-role="user"]')).to_have_count(4)
    assert Message.objects.filter(role="user", conversation__owner=chatter).count() == 4

    # The text given back is a draft again: a reload keeps it.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(box).to_have_value("Question 5, one too many")
    expect(page.locator('article[data-role="user"]')).to_have_count(4)
    # A refusal with no send pending (Regenerate is over the limit too) still says why.
    expect(page.get_by_role("alert").filter(has_text="too quickly")).to_have_count(0)
    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("alert").filter(has_text="too quickly")).to_be_visible()
    expect(box).to_have_value("Question 5, one too many")
    expect(page.locator(ASSISTANT)).to_have_count(4)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")


def test_the_page_rides_out_server_restarts_and_a_message_written_offline_goes_once(
    django_db_setup: None,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    # A process of its own to kill; a short lease, so the restarted one soon marks the
    # reply the killed one was writing as interrupted.
    process = DaphneProcess(CHAT_RATE_LIMIT_PER_MINUTE="0", CHAT_LEASE_SECONDS="1")
    process.start()
    try:
        context, _ = browser_context
        page = open_new_chat(context, process, chatter)
        connection = page.locator("#connection")
        gateway.enqueue(Script(words=2000, token_delay=0.01))
        send(page, "Write until the server dies")
        expect(last_reply(page)).to_contain_text("w20")
        process.kill()
        expect(connection).to_have_attribute("data-state", "offline")
        process.start()
        # Back: the page reloads the stored messages, where the reply is now interrupted.
        expect(connection).to_have_attribute("data-state", "online", timeout=20_000)
        expect(last_reply(page)).to_have_attribute("data-status", "interrupted")
        expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        # The way to continue it.
        expect(last_reply(page).get_by_role("button", name="Regenerate")).to_be_visible()

        # Written while offline: shown as sending, and sent once the socket is back.
        process.kill()
        expect(connection).to_have_attribute("data-state", "offline")
        send(page, "Sent while offline")
        question = page.locator('article[data-role="user"]').last
        expect(question).to_have_attribute("data-status", "sending")
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
        process.start()
        expect(connection).to_have_attribute("data-state", "online", timeout=20_000)
        expect(question).to_have_attribute("data-status", "complete")
        expect(page.locator(ASSISTANT)).to_have_count(2)
        expect(last_reply(page)).to_have_attribute("data-status", "complete")
        expect(last_reply(page)).to_contain_text("offline demo model")
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
        assert Message.objects.filter(role="user", content="Sent while offline").count() == 1
    finally:
        process.stop()


def test_a_graceful_restart_keeps_the_reply_shown_and_the_page_comes_back_by_itself(
    django_db_setup: None,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    # SIGTERM as systemd or Kubernetes sends it; a grace shorter than the reply.
    process = DaphneProcess(CHAT_RATE_LIMIT_PER_MINUTE="0", CHAT_SHUTDOWN_GRACE="2")
    process.start()
    try:
        context, _ = browser_context
        page = open_new_chat(context, process, chatter)
        connection = page.locator("#connection")
        gateway.enqueue(Script(words=3000, token_delay=0.01))
        send(page, "Write until the deploy")
        expect(last_reply(page)).to_contain_text("w20")
        process.process.send_signal(signal.SIGTERM)
        # The reply goes on through the grace, then ends interrupted, as shown.
        expect(last_reply(page)).to_have_attribute("data-status", "interrupted", timeout=15_000)
        expect(connection).to_have_text("Server restarting, reconnecting…")
        assert process.process.wait(20) == 0
        reply = Message.objects.get(role="assistant", conversation__owner=chatter)
        assert reply.status == "interrupted"
        shown = last_reply(page).locator(".message__body").inner_text()
        assert reply.content.split() == shown.split()
        # Written while the server is away: sent once it is back.
        send(page, "After the deploy")
        question = page.locator('article[data-role="user"]').last
        expect(question).to_have_attribute("data-status", re.compile("sending|waiting"))
        process.start()
        expect(connection).to_have_attribute("data-state", "online", timeout=20_000)
        expect(question).to_have_attribute("data-status", "complete")
        expect(page.locator(ASSISTANT)).to_have_count(2)
        expect(last_reply(page)).to_have_attribute("data-status", "complete")
        assert Message.objects.filter(role="user", content="After the deploy").count() == 1
        # The interrupted reply offers a way to continue it.
        interrupted = page.locator(ASSISTANT).first
        expect(interrupted).to_have_attribute("data-status", "interrupted")
        expect(interrupted.get_by_role("button", name="Regenerate")).to_be_visible()
    finally:
        process.stop()


def test_copy_message_puts_the_markdown_source_on_the_clipboard(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http_url)
    page = open_new_chat(context, server, chatter)
    send(page, "Show me **Markdown**")
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")

    def copied(article: Any) -> str:
        article.get_by_role("button", name="Copy message").click()
        expect(page.locator("#announcer")).to_have_text("Message copied.")
        text = page.evaluate("navigator.clipboard.readText()")
        page.locator("#announcer").evaluate("(el) => { el.textContent = ''; }")
        return text

    # The reply as it was streamed: its Markdown, not the rendered text.
    stored = Message.objects.get(role="assistant", conversation__owner=chatter).content
    assert copied(reply) == stored
    assert "**offline demo model**" in stored and "```python" in stored
    question = page.locator('article[data-role="user"]').last
    assert copied(question) == "Show me **Markdown**"
    # After a reload, from the server's rendering of the stored reply.
    page.reload()
    assert copied(last_reply(page)) == stored


def test_the_model_select_changes_the_model_the_gateway_receives(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    transactional_db: None,
    gateway: FakeGateway,
) -> None:
    user = make_user("mina")
    give_key(user, gateway, "sk-mina", model="hy3-preview", allowed_models=["hunyuan-t1"])
    context, _ = browser_context
    page = open_new_chat(context, server, user)
    model = page.get_by_role("combobox", name="Model")
    expect(model).to_have_value("hy3-preview")
    expect(model.locator("option")).to_have_text(["hy3-preview", "hunyuan-t1"])
    with page.expect_response(lambda response: response.url.endswith("/model/")) as answer:
        model.select_option("hunyuan-t1")
    assert answer.value.status == 200
    send(page, "Which model are you?")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert gateway.requests[-1].body["model"] == "hunyuan-t1"
    # Kept with the conversation.
    page.reload()
    expect(page.get_by_role("combobox", name="Model")).to_have_value("hunyuan-t1")
