"""The Content-Security-Policy in Chromium: the pages work under it (the websocket, the
admin), and it really stops inline script and framing. (Playwright's own `evaluate` is
exempt from the policy, so `eval` cannot be tried from here; tests/test_headers.py checks
that the policy allows no 'unsafe-eval'.)

The conftest fails any test whose pages trigger a CSP report; these tests provoke some on
purpose and take exactly those out of the list.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from conversations.demo.server import FakeGateway
from tests.conftest import make_user
from tests.e2e.conftest import Console, open_new_chat, sign_in_with_cookie
from tests.support.processes import DaphneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def expected_violations(console: Console, fragment: str) -> list[str]:
    """Take the CSP reports that mention `fragment` out of the failures, and return them."""
    found = [e for e in console.errors if "Content Security Policy" in e and fragment in e]
    console.errors[:] = [e for e in console.errors if e not in found]
    return found


def test_the_chat_works_under_the_policy_and_the_policy_blocks_inline_script(
    server: DaphneProcess,
    browser_context: tuple[BrowserContext, Console],
    chatter: Any,
    gateway: FakeGateway,
) -> None:
    context, console = browser_context
    # Connected: connect-src 'self' lets the page's own websocket through (ws: on the host).
    page = open_new_chat(context, server, chatter)
    page.get_by_role("textbox", name="Message").fill("A table please")
    page.get_by_role("button", name="Send").click()
    expect(page.locator('article[data-role="assistant"]').last).to_have_attribute(
        "data-status", "complete"
    )
    assert console.errors == []

    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(
            """() => {
                const script = document.createElement("script");
                script.textContent = "window.__inline = 1";
                document.body.append(script);
            }"""
        )
    assert page.evaluate("() => window.__inline") is None
    assert expected_violations(console, "script")


def test_another_site_cannot_frame_the_pages(
    server: DaphneProcess, browser_context: tuple[BrowserContext, Console], chatter: Any
) -> None:
    context, console = browser_context
    sign_in_with_cookie(context, server, chatter)
    page = context.new_page()
    # A page of another origin (the fake gateway would do; about:blank is simpler).
    page.set_content(f'<iframe src="{server.http_url}/" title="framed"></iframe>')
    frame = page.frame_locator("iframe")
    page.wait_for_timeout(1000)
    assert frame.get_by_role("button", name="New chat").count() == 0
    assert expected_violations(console, "frame-ancestors")


def test_the_admin_usage_and_user_pages_work_under_the_policy(
    server: DaphneProcess, browser_context: tuple[BrowserContext, Console], transactional_db: None
) -> None:
    admin = make_user("boss", is_staff=True, is_superuser=True)
    context, console = browser_context
    sign_in_with_cookie(context, server, admin)
    page: Page = context.new_page()
    page.goto(f"{server.http_url}/admin/usage/")
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    # The page's stylesheet is a file now, and it applies.
    assert page.locator(".usage-columns").evaluate("e => getComputedStyle(e).display") == "flex"
    page.goto(f"{server.http_url}/admin/auth/user/{admin.pk}/change/")
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_visible()
    page.goto(f"{server.http_url}/admin/auth/user/")
    expect(page.get_by_role("link", name="boss")).to_be_visible()
    assert console.errors == []
