"""The chat page as people coming from other chat apps expect it (issue 17): the home page is
the composer, a conversation menu (settings and delete dialogs, pin, archive), the details
of each reply, Jump to newest, a sidebar that folds on a desktop, the Shortcuts dialog."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from conversations import services
from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from conversations.models import Conversation, Message
from tests.conftest import give_key
from tests.e2e.conftest import Console, new_chat, open_new_chat, signed_in_page
from tests.support.processes import DaphneProcess
from tests.support.turns import stored_thread

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'
UUID_URL = re.compile(r"/c/([0-9a-f-]{36})/$")


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def open_menu(page: Page) -> Any:
    page.locator("#conversation-menu summary").click()
    return page.locator("#conversation-menu")


def sidebar_titles(page: Page) -> list[tuple[str, list[str]]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#conversation-list section')].map(s => [
            s.dataset.label, [...s.querySelectorAll('a')].map(a => a.textContent.trim())])"""
    )


def test_typing_on_the_home_page_creates_the_conversation_and_streams_there_without_a_reload(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    give_key(chatter, gateway, "sk-carol-e2e", allowed_models=["hy3-preview", "hunyuan-t1"])
    page = signed_in_page(context, server, chatter)
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    expect(page.locator("#connection")).to_be_hidden()  # no conversation, no socket yet
    # A page load would lose this.
    page.evaluate("window.__samePage = true")
    page.get_by_role("combobox", name="Model").select_option("hunyuan-t1")
    gateway.enqueue(Script(words=60, token_delay=0.02))
    page.get_by_role("textbox", name="Message").fill("Hello from the home page")
    page.keyboard.press("Enter")

    page.wait_for_url(UUID_URL)
    public_id = UUID_URL.search(page.url).group(1)
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "streaming")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    assert page.evaluate("window.__samePage") is True
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    conversation = Conversation.objects.get(public_id=public_id)
    assert conversation.owner == chatter and conversation.model == "hunyuan-t1"
    assert gateway.requests[-1].body["model"] == "hunyuan-t1"
    assert gateway.requests[-1].body["messages"][-1]["content"] == "Hello from the home page"
    # The list shows it, marked as the open one; the header has its menu now.
    current = page.locator('#conversation-list a[aria-current="page"]')
    expect(current).to_have_attribute("data-conversation-id", public_id)
    expect(page.locator("#conversation-menu summary")).to_be_visible()
    # Stored once: a reload shows the same two messages.
    page.reload()
    expect(page.locator("article")).to_have_count(2)
    assert Message.objects.filter(conversation=conversation).count() == 2

    # New chat goes back to the composer, empty and focused; Back returns here.
    new_chat(page)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
    expect(page.locator("article")).to_have_count(0)


def test_a_model_the_key_no_longer_allows_is_refused_on_the_home_page_and_nothing_is_created(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    # What a page opened before the administrator narrowed the key would still offer.
    page.evaluate(
        """() => {
            const select = document.getElementById('model-select');
            select.add(new Option('gpt-9', 'gpt-9'));
            select.value = 'gpt-9';
        }"""
    )
    send(page, "Which model?")
    expect(page.locator("#notice")).to_contain_text("Choose one of the models your API key allows")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("Which model?")
    assert page.url.endswith(f"{server.http_url}/") or page.url == f"{server.http_url}/"
    assert not Conversation.objects.filter(owner=chatter).exists()
    assert gateway.requests == []


def test_a_file_attached_on_the_home_page_makes_the_conversation_it_is_sent_in(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = signed_in_page(context, server, chatter)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach").click()
    chooser.value.set_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"kestrel notes"}]
    )
    expect(page.locator(".file-chip")).to_have_attribute("data-state", "ready")
    page.wait_for_url(UUID_URL)
    send(page, "Summarise the file")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    blocks = gateway.requests[-1].body["messages"][-1]["content"]
    assert any("kestrel notes" in block.get("text", "") for block in blocks)
    assert Conversation.objects.filter(owner=chatter).count() == 1


def test_each_reply_shows_its_model_time_and_tokens_live_and_after_a_reload(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    send(page, "Count for me")
    reply = page.locator(ASSISTANT)
    expect(reply).to_have_attribute("data-status", "complete")
    stored = Message.objects.get(role="assistant")
    expected = f"{stored.input_tokens} in · {stored.output_tokens} out"
    assert stored.output_tokens
    expect(reply.locator(".message__tokens")).to_have_text(expected)
    expect(reply.locator(".message__model")).to_have_text(stored.model)
    expect(reply.locator("time")).not_to_be_empty()
    page.reload()
    expect(page.locator(ASSISTANT).locator(".message__tokens")).to_have_text(expected)


def test_pin_keeps_a_conversation_on_top_and_archive_moves_it_to_archived(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    older = services.conversations.create_conversation(chatter, title="Older plans")
    services.search_index.index_title(older)  # for the search below
    services.conversations.create_conversation(chatter, title="Newest notes")
    page = signed_in_page(context, server, chatter)
    page.goto(f"{server.http_url}/c/{older.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    open_menu(page).get_by_role("button", name="Pin").click()
    expect(page.locator("#conversation-menu")).not_to_have_attribute("open", "")
    assert sidebar_titles(page)[0] == ["Pinned", ["Older plans"]]
    page.reload()
    assert sidebar_titles(page)[0] == ["Pinned", ["Older plans"]]

    open_menu(page).get_by_role("button", name="Archive").click()
    expect(page.locator("#conversation-list")).not_to_contain_text("Older plans")
    assert sidebar_titles(page) == [["Today", ["Newest notes"]]]
    older.refresh_from_db()
    assert older.archived_at is not None and older.pinned_at is None

    page.get_by_role("link", name="Archived").click()
    expect(page.get_by_role("heading", name="Archived conversations")).to_be_visible()
    expect(page.locator(".page-body")).to_contain_text("Older plans")
    page.get_by_role("searchbox", name="Search conversations").fill("Older")
    page.keyboard.press("Enter")
    expect(page.locator("#search-results")).to_contain_text("Older plans")
    page.goto(f"{server.http_url}/archived/")
    page.get_by_role("button", name="Unarchive “Older plans”").click()
    page.wait_for_url(UUID_URL)
    expect(page.locator("#conversation-list")).to_contain_text("Older plans")


def test_settings_open_in_a_dialog_that_refuses_bad_values_and_saves_good_ones(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    url = page.url
    open_menu(page).get_by_role("link", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()
    assert page.url == url  # a dialog, not a page
    dialog.get_by_label("Temperature").fill("1.7")
    dialog.get_by_label("System prompt").fill("Answer in haiku.")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("alert")).to_contain_text("1")
    expect(dialog.get_by_label("Temperature")).to_be_focused()
    conversation = Conversation.objects.get(owner=chatter)
    assert conversation.temperature is None and conversation.system_prompt == ""

    dialog.get_by_label("Temperature").fill("0.3")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog).to_be_hidden()
    conversation.refresh_from_db()
    assert conversation.temperature == 0.3 and conversation.system_prompt == "Answer in haiku."
    send(page, "Write about rain")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    body = gateway.requests[-1].body
    assert body["temperature"] == 0.3 and body["system"] == "Answer in haiku."


def test_rename_from_the_menu_refuses_an_empty_title_beside_the_box(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    open_menu(page).get_by_role("button", name="Rename").click()
    box = page.get_by_role("textbox", name="Title")
    expect(box).to_be_focused()
    box.fill("   ")
    page.keyboard.press("Enter")
    expect(page.locator("#rename-error")).to_have_text("A title cannot be empty.")
    assert Conversation.objects.get(owner=chatter).title == ""
    box.fill("Trip to Hangzhou")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Trip to Hangzhou")).to_be_visible()
    expect(page.locator("#conversation-list")).to_contain_text("Trip to Hangzhou")


def test_delete_asks_in_a_dialog_and_cancel_keeps_everything(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    open_menu(page).get_by_role("link", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert Conversation.objects.filter(owner=chatter).count() == 1
    open_menu(page).get_by_role("link", name="Delete").click()
    dialog.get_by_role("button", name="Delete for good").click()
    page.wait_for_url(f"{server.http_url}/")
    assert not Conversation.objects.filter(owner=chatter).exists()


def test_the_list_follows_a_reply_only_at_the_bottom_and_jump_to_newest_brings_it_back(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    conversation = services.conversations.create_conversation(chatter)
    stored_thread(
        conversation,
        *(
            {"role": role, "content": f"{role} message {i}\n\n" + "A line of text. " * 40}
            for i in range(12)
            for role in ("user", "assistant")
        ),
    )
    page = signed_in_page(context, server, chatter)
    page.goto(f"{server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    jump = page.get_by_role("button", name="Jump to newest")
    expect(jump).to_be_hidden()  # opened at the newest message

    gateway.enqueue(Script(words=400, token_delay=0.02))
    send(page, "Write a long one")
    reply = page.locator(ASSISTANT).last
    expect(reply).to_have_attribute("data-status", "streaming")
    log = page.get_by_role("log")
    log.evaluate("log => { log.scrollTop = 0; }")
    expect(jump).to_be_visible()
    # Scrolled up, the reading position stays put while the reply grows below.
    before = reply.locator(".message__body").inner_text()
    page.wait_for_function(
        "n => document.querySelector('article[data-role=assistant]:last-of-type .message__body')"
        ".innerText.length > n + 50",
        arg=len(before),
    )
    assert log.evaluate("log => log.scrollTop") == 0
    expect(jump).to_have_attribute("data-new", "")

    jump.click()
    expect(jump).to_be_hidden()
    at_bottom = "log => log.scrollHeight - log.scrollTop - log.clientHeight < 80"
    assert log.evaluate(at_bottom)
    # At the bottom again, the list follows the reply to its end.
    expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    assert log.evaluate(at_bottom)


def test_the_sidebar_folds_to_a_rail_on_a_desktop_and_remembers_it(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    toggle = page.get_by_role("button", name="Menu")
    list_ = page.get_by_role("navigation", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(list_).to_be_visible()
    wide = page.locator("#sidebar").bounding_box()["width"]
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(list_).to_be_hidden()
    assert page.locator("#sidebar").bounding_box()["width"] < wide / 3
    # New chat stays one click away in the rail, by its name.
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Control+Shift+S")
    expect(list_).to_be_visible()
    # Ctrl+K unfolds it to reach the search box.
    page.keyboard.press("Control+Shift+S")
    expect(list_).to_be_hidden()
    page.keyboard.press("Control+k")
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()


def test_the_shortcuts_dialog_lists_the_keys_and_they_work(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    page.get_by_role("log").focus()
    page.keyboard.press("Control+/")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for action in ("New chat", "Search conversations", "Show or hide the list", "Send"):
        expect(dialog.get_by_text(action, exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    # Shift+Esc: back to the message box from anywhere.
    page.get_by_role("log").focus()
    page.keyboard.press("Shift+Escape")
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    # Ctrl+Shift+O: a new chat, the composer ready.
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(f"{server.http_url}/")
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()


def test_a_phone_shows_message_actions_without_hover_and_the_list_folded(
    server: DaphneProcess,
    make_context: Any,
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context = make_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = open_new_chat(context, server, chatter)
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    send(page, "Hello")
    expect(page.locator(ASSISTANT)).to_have_attribute("data-status", "complete")
    send(page, "Again")
    expect(page.locator(ASSISTANT).nth(1)).to_have_attribute("data-status", "complete")
    # Not the last message, not hovered: its buttons are still there to tap.
    first_copy = page.locator("article").first.get_by_role("button", name="Copy message")
    assert (
        first_copy.evaluate("b => getComputedStyle(b.closest('.message__actions')).opacity") == "1"
    )
