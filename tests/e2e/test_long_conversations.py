"""A conversation of 1,000 messages in a real browser (issue 22): it opens with its newest
page, scrolls up to its first message page by page with what the person reads kept still,
scrolls back down, and a search hit deep in it opens the thread around the hit."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conversations import pages
from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from tests.e2e import axe
from tests.e2e.conftest import Console, _context, _finish, signed_in_page
from tests.support.long import long_thread, thread_ids
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOWN = "() => [...document.querySelectorAll('#log article')].map((a) => a.dataset.messageId)"

# Scrolls the log to its top and notes where the first message is on the screen, in the
# same task (before a page of older messages can arrive).
TO_TOP = """() => {
    const log = document.getElementById("log");
    log.scrollTop = 0;
    const first = log.querySelector("article");
    return { id: first.dataset.messageId, top: first.getBoundingClientRect().top,
             count: log.querySelectorAll("article").length };
}"""

TOP_OF = "(id) => document.getElementById(`m-${id}`).getBoundingClientRect().top"


def loaded_more_than(page: Page, count: int) -> None:
    page.wait_for_function(
        "(count) => document.querySelectorAll('#log article').length > count", arg=count
    )


def test_scroll_to_the_first_message_and_back_without_a_jump_then_open_a_deep_search_hit(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
) -> None:
    context, _ = browser_context
    conversation = long_thread(chatter, 1000, title="Thousand")
    every = thread_ids(conversation)
    page = signed_in_page(context, server, chatter)
    page.goto(f"{server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    # The newest page only, at its end.
    assert page.evaluate(SHOWN) == every[-pages.PAGE_SIZE :]
    expect(page.locator(f"#m-{every[-1]}")).to_be_in_viewport()

    # Up to the first message: each page of older ones lands above what was read, which
    # stays where it was on the screen.
    jumps = []
    while page.locator('[data-history="before"]').count():
        before = page.evaluate(TO_TOP)
        loaded_more_than(page, before["count"])
        jumps.append(abs(page.evaluate(TOP_OF, before["id"]) - before["top"]))
    assert len(jumps) >= (1000 - pages.PAGE_SIZE) // pages.PAGE_SIZE
    assert max(jumps) < 2, jumps
    assert page.evaluate(SHOWN) == every  # all of it, in order, nothing twice
    page.evaluate("() => { document.getElementById('log').scrollTop = 0; }")
    expect(page.locator(f"#m-{every[0]}")).to_be_in_viewport()
    expect(page.locator(f"#m-{every[0]} .message__body")).to_have_text("Question 0 about topic0")

    # And back to the newest, still connected, still all of it.
    page.locator("#log").focus()
    page.keyboard.press("End")
    expect(page.locator(f"#m-{every[-1]}")).to_be_in_viewport()
    assert page.evaluate(SHOWN) == every
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    # A search hit deep in it (question 200 of 1,000) opens the thread around that message.
    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill("topic200")
    search.press("Enter")
    page.locator(".result").first.get_by_role("link").click()
    hit = every[200]
    page.wait_for_url(re.compile(rf"\?message={hit}#m-{hit}$"))
    expect(page.locator(f"#m-{hit}")).to_be_in_viewport()
    expect(page.locator(f"#m-{hit}")).to_have_class(re.compile("message--target"))
    shown = page.evaluate(SHOWN)
    assert hit in shown and len(shown) == pages.PAGE_SIZE
    assert shown == every[every.index(shown[0]) : every.index(shown[0]) + len(shown)]

    # Above and below it, as far as the person scrolls: the thread without gaps.
    before = page.evaluate(TO_TOP)
    loaded_more_than(page, before["count"])
    assert abs(page.evaluate(TOP_OF, before["id"]) - before["top"]) < 2
    while page.locator('[data-history="after"]').count():
        count = page.locator("#log article").count()
        page.evaluate(
            "() => { const log = document.getElementById('log'); log.scrollTop = log.scrollHeight; }"
        )
        loaded_more_than(page, count)
    shown = page.evaluate(SHOWN)
    assert shown == every[every.index(shown[0]) :] and shown[-1] == every[-1]
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")


def test_writing_from_a_search_hit_jumps_to_the_end_and_the_reply_streams_there(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, _ = browser_context
    conversation = long_thread(chatter, 1000)
    every = thread_ids(conversation)
    page = signed_in_page(context, server, chatter)
    page.goto(f"{server.http_url}/c/{conversation.public_id}/?message={every[300]}#m-{every[300]}")
    expect(page.locator(f"#m-{every[300]}")).to_be_in_viewport()
    expect(page.locator('[data-history="after"]')).to_have_count(1)

    # Writing happens at the end of the thread: the page goes there first.
    page.get_by_role("textbox", name="Message").click()
    expect(page.locator(f"#m-{every[-1]}")).to_be_in_viewport()
    expect(page.locator('[data-history="after"]')).to_have_count(0)
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    gateway.enqueue(Script(text="The **thousand and first** reply."))
    page.get_by_role("textbox", name="Message").fill("And now?")
    page.get_by_role("button", name="Send").click()

    reply = page.locator('#log article[data-role="assistant"]').last
    expect(reply).to_have_attribute("data-status", "complete")
    expect(reply.locator("strong")).to_have_text("thousand and first")
    shown = page.evaluate(SHOWN)
    assert (
        shown[: pages.PAGE_SIZE] == every[-pages.PAGE_SIZE :] and len(shown) == pages.PAGE_SIZE + 2
    )


def test_the_markers_of_more_messages_pass_axe(
    server: DaphneProcess, browser: Browser, request: pytest.FixtureRequest, chatter: Any
) -> None:
    # Opened at a message in the middle: a marker above it and one below.
    context, console = _context(browser, request, bypass_csp=True)
    try:
        conversation = long_thread(chatter, 300)
        every = thread_ids(conversation)
        page = signed_in_page(context, server, chatter)
        page.goto(f"{server.http_url}/c/{conversation.public_id}/?message={every[150]}")
        expect(page.locator("[data-history]")).to_have_count(2)
        expect(page.get_by_role("button", name="Show later messages")).to_be_visible()
        serious = axe.blocking(axe.run(page))
        assert not serious, axe.describe(serious)
    finally:
        _finish(request, context, console)
