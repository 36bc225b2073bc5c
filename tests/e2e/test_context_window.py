"""A conversation longer than the model's window, in a real browser: every turn is
answered, the page marks where the model's memory begins (live, and after a reload), the
gauge in the header shows how full the window was, and the reply says what it left out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from conversations.models import ApiCredential, Conversation
from tests.e2e.conftest import Console, open_new_chat
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ASSISTANT = 'article[data-role="assistant"]'
SUMMARISED = "Earlier messages are summarised for the model"
WINDOW = 4_000


def question(n: int) -> str:
    # Plain four-letter words: the app's estimate and the fake model's count agree.
    return f"Question {n}: " + " ".join(["word"] * 250)


def test_the_page_marks_where_the_models_memory_begins(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    ApiCredential.objects.filter(user=chatter).update(context_window=WINDOW)
    gateway.context_limit = WINDOW
    context, _ = browser_context
    page = open_new_chat(context, server, chatter)
    Conversation.objects.filter(owner=chatter).update(max_tokens=200)
    gauge = page.locator("#context-gauge")
    expect(gauge).to_be_hidden()  # nothing sent yet
    turns = 0
    while not page.locator("#context-marker").count():
        turns += 1
        assert turns <= 10, "the window never overflowed"
        gateway.enqueue(Script(words=150, token_delay=0))
        page.get_by_role("textbox", name="Message").fill(question(turns))
        page.get_by_role("button", name="Send").click()
        expect(page.locator(ASSISTANT)).to_have_count(turns)
        expect(page.locator(ASSISTANT).last).to_have_attribute("data-status", "complete")
        expect(gauge).to_be_visible()
    assert gateway.refused_too_long == 0
    assert turns > 2

    marker = page.locator("#context-marker")
    expect(marker.locator("[data-when]:visible")).to_have_text(SUMMARISED)
    expect(page.get_by_role("note")).to_match_aria_snapshot(f"- note: {SUMMARISED}")
    # Right above the first question the model was sent: the first one of the last request.
    first_sent = gateway.requests[-1].body["messages"][0]["content"]
    after = marker.locator("xpath=following-sibling::article[1]")
    expect(after).to_have_attribute("data-role", "user")
    expect(after.locator(".message__body")).to_have_text(first_sent)
    expect(page.locator(ASSISTANT).last.locator("[data-context-note]")).to_contain_text(
        "Answered without the"
    )
    expect(page.locator("#context-value")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.get_by_label("Context")).to_be_visible()

    # The server renders the same after a reload.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    marker = page.locator("#context-marker")
    expect(marker.locator("[data-when]:visible")).to_have_text(SUMMARISED)
    after = marker.locator("xpath=following-sibling::article[1]")
    expect(after.locator(".message__body")).to_have_text(first_sent)
    expect(gauge).to_be_visible()
