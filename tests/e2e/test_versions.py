"""Versions in a real browser: Regenerate on a reply, Previous / Next version, Edit in
place, and a second tab that follows every switch."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from tests.e2e.conftest import Console, open_new_chat
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'
USER = 'article[data-role="user"]'
QUESTIONS = f"{USER} .message__body"


# What a Chinese input method does: composition events around the candidate text; the keys
# that pick or drop a candidate arrive flagged as composing (keyCode 229), or, in some
# browsers, flagged as nothing (the composition events alone must hold them).
IME_KEYS = """(box) => {
    box.dispatchEvent(new CompositionEvent("compositionstart", {data: ""}));
    box.value = "nihao";
    for (const key of ["Enter", "Escape"]) {
        for (const init of [{key, keyCode: 229, isComposing: true}, {key}]) {
            box.dispatchEvent(new KeyboardEvent("keydown", {...init, bubbles: true, cancelable: true}));
        }
    }
    box.value = "你好";
    box.dispatchEvent(new CompositionEvent("compositionend", {data: "你好"}));
}"""


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def settled(page: Page, replies: int) -> None:
    """Connected, `replies` replies shown, the last one complete."""
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    expect(page.locator(ASSISTANT)).to_have_count(replies)
    expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")


def test_regenerate_go_back_to_version_one_follow_up_edit_and_return(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    gateway.enqueue(
        Script(text="Answer one"),
        Script(text="Answer two"),
        Script(text="Answer three"),
        Script(text="Answer to the follow-up"),
        Script(text="Answer to the edit"),
    )
    send(page, "First question")
    settled(page, 1)
    # A second tab on the same conversation follows every change.
    other = context.new_page()
    other.goto(page.url)
    settled(other, 1)

    reply = page.locator(ASSISTANT).last
    answers = {2: "Answer two", 3: "Answer three"}
    for version in (2, 3):
        reply.get_by_role("button", name="Regenerate").click()
        expect(reply.locator(".versions__count")).to_have_text(f"{version} / {version}")
        settled(page, 1)
        # The second tab follows each regenerate: the new version, and its count.
        expect(other.locator(ASSISTANT).last).to_contain_text(answers[version])
        expect(other.locator(f"{ASSISTANT} .versions__count")).to_have_text(
            f"{version} / {version}"
        )
    expect(reply).to_contain_text("Answer three")
    expect(page.get_by_role("group", name="Version 3 of 3")).to_be_visible()
    # The composer's old Regenerate button is gone: one per reply.
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(1)

    previous = page.get_by_role("button", name="Previous version")
    previous.click()
    expect(reply.locator(".versions__count")).to_have_text("2 / 3")
    expect(other.locator(f"{ASSISTANT} .versions__count")).to_have_text("2 / 3")
    expect(other.locator(ASSISTANT).last).to_contain_text("Answer two")
    # The focus stays on the button pressed, on the version now shown.
    expect(page.get_by_role("button", name="Previous version")).to_be_focused()
    page.keyboard.press("Enter")
    expect(reply.locator(".versions__count")).to_have_text("1 / 3")
    expect(reply).to_contain_text("Answer one")
    expect(page.get_by_role("button", name="Previous version")).to_be_disabled()
    expect(other.locator(ASSISTANT).last).to_contain_text("Answer one")
    expect(other.locator(f"{ASSISTANT} .versions__count")).to_have_text("1 / 3")

    send(page, "A follow-up")
    settled(page, 2)
    expect(page.locator(ASSISTANT).last).to_contain_text("Answer to the follow-up")
    assert gateway.requests[-1].body["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "Answer one"},
        {"role": "user", "content": "A follow-up"},
    ]
    settled(other, 2)

    # Edit the first question in place: Esc cancels, Enter saves and sends.
    first = page.locator(USER).first
    first.get_by_role("button", name="Edit").click()
    editor = first.get_by_role("textbox", name="Edited text")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("First question")
    editor.press("Escape")
    expect(editor).to_have_count(0)
    expect(first.get_by_role("button", name="Edit")).to_be_focused()
    expect(page.locator(ASSISTANT)).to_have_count(2)  # Esc stopped nothing, sent nothing

    first.get_by_role("button", name="Edit").click()
    editor = first.get_by_role("textbox", name="Edited text")
    # An input method composing: its Enter (and Esc) belong to the candidate window.
    editor.evaluate(IME_KEYS)
    page.wait_for_timeout(300)
    expect(editor).to_have_value("你好")
    expect(page.locator(ASSISTANT)).to_have_count(2)
    editor.fill("First question, edited")
    editor.press("Enter")
    settled(page, 1)
    expect(page.locator(QUESTIONS)).to_have_text(["First question, edited"])
    expect(page.locator(USER).first.locator(".versions__count")).to_have_text("2 / 2")
    expect(page.locator(ASSISTANT).last).to_contain_text("Answer to the edit")
    assert gateway.requests[-1].body["messages"] == [
        {"role": "user", "content": "First question, edited"}
    ]
    expect(other.locator(QUESTIONS)).to_have_text(["First question, edited"])

    # Back to the old branch: the thread that was below the first question then.
    page.locator(USER).first.get_by_role("button", name="Previous version").click()
    expect(page.locator(QUESTIONS)).to_have_text(["First question", "A follow-up"])
    expect(page.locator(ASSISTANT).first).to_contain_text("Answer one")
    expect(page.locator(ASSISTANT).last).to_contain_text("Answer to the follow-up")
    expect(other.locator(QUESTIONS)).to_have_text(["First question", "A follow-up"])
    expect(other.locator(f"{USER} .versions__count")).to_have_text(["1 / 2"])


def test_a_reply_written_on_a_thread_switched_away_from_goes_on_and_is_there_after(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    gateway.enqueue(Script(text="Answer one"), Script(words=300, token_delay=0.01))
    send(page, "First question")
    settled(page, 1)
    reply = page.locator(ASSISTANT).last
    reply.get_by_role("button", name="Regenerate").click()
    expect(reply).to_contain_text("w5")

    reply.get_by_role("button", name="Previous version").click()
    expect(reply.locator(".versions__count")).to_have_text("1 / 2")
    expect(reply).to_contain_text("Answer one")
    # Still being written, elsewhere: Stop stays, Send waits, as for any reply.
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden(timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(reply).to_have_attribute("data-status", "complete")

    reply.get_by_role("button", name="Next version").click()
    expect(reply.locator(".versions__count")).to_have_text("2 / 2")
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator(".message__body")).to_have_text(" ".join(f"w{i}" for i in range(1, 301)))
