"""Real-browser journeys: a live Daphne process on the test database, the fake gateway,
and Debian's headless Chromium driven by Playwright.

On failure a screenshot and the browser console log are saved in `test-artifacts/`.
Any uncaught JavaScript error fails the test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from conversations import services
from conversations.demo.server import FakeGateway
from tests.conftest import give_key, make_user, session_cookie
from tests.support.processes import ROOT, DaphneProcess

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.e2e

# Playwright's sync API keeps an event loop running in this thread for the whole session;
# the ORM calls of these synchronous tests are not async code, so let Django allow them.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_async_state() -> Iterator[None]:
    # Overrides the async fixture of tests/conftest.py: these tests are synchronous, and
    # Playwright's sync API must not run inside an event loop.
    yield


@pytest.fixture(autouse=True)
def _stable_content_types(django_db_serialized_rollback: None) -> None:
    """Restore content types and permissions with their original ids after each test.

    A plain flush recreates them with new ids, but the live server (another process)
    caches the old ones, and the admin's log entries then break a foreign key.
    """


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The session's Playwright keeps an event loop running in the main thread until the
    # end: every async test must run before the first browser test starts it.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def e2e_gateway() -> Iterator[FakeGateway]:
    # Slow enough that a reply visibly grows in the browser.
    server = FakeGateway(token_delay=0.02).start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def gateway(e2e_gateway: FakeGateway) -> Iterator[FakeGateway]:
    e2e_gateway.reset()
    yield e2e_gateway
    e2e_gateway.reset()
    e2e_gateway.context_limit = None


@pytest.fixture(scope="session")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[DaphneProcess]:
    process = DaphneProcess(
        CHAT_UPSTREAM_RETRY_BACKOFF="0.05",
        CHAT_RATE_LIMIT_PER_MINUTE="0",
        CHAT_CHECKPOINT_INTERVAL="0.3",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Console:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.errors: list[str] = []


def _context(
    browser: Browser, request: pytest.FixtureRequest, **options: Any
) -> tuple[BrowserContext, Console]:
    options.setdefault("viewport", {"width": 1280, "height": 860})
    context = browser.new_context(**options)
    console = Console()

    def on_console(message: Any) -> None:
        console.lines.append(f"[{message.type}] {message.text}")
        # Whatever the Content-Security-Policy blocks is a bug of the page: fail on it too.
        if "Content Security Policy" in message.text:
            console.errors.append(message.text)

    def watch(page: Page) -> None:
        page.on("console", on_console)
        page.on("pageerror", lambda e: console.errors.append(str(e)))

    context.on("page", watch)
    return context, console


@pytest.fixture
def browser_context(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[tuple[BrowserContext, Console]]:
    context, console = _context(browser, request)
    yield context, console
    _finish(request, context, console)


def _finish(request: pytest.FixtureRequest, context: BrowserContext, console: Console) -> None:
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed or console.errors:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        for index, page in enumerate(context.pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{index}.png"), full_page=True)
            except Exception:  # a closed page has nothing to show
                pass
        (ARTIFACTS / f"{name}.console.log").write_text("\n".join(console.lines + console.errors))
    context.close()
    if console.errors:
        unique = list(dict.fromkeys(console.errors))
        pytest.fail(f"{len(console.errors)} uncaught JavaScript error(s), e.g. {unique[:5]}")


MakeContext = Callable[..., BrowserContext]


@pytest.fixture
def make_context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[MakeContext]:
    """New browser contexts with options (locale, color_scheme, viewport, ...), closed and
    checked for JavaScript errors at the end like the `browser_context` fixture."""
    made: list[tuple[BrowserContext, Any]] = []

    def make(**options: Any) -> BrowserContext:
        context, console = _context(browser, request, **options)
        made.append((context, console))
        return context

    yield make
    for context, console in made:
        _finish(request, context, console)


@pytest.fixture
def page(browser_context: tuple[BrowserContext, Console]) -> Page:
    context, _ = browser_context
    return context.new_page()


def sign_in_with_cookie(context: BrowserContext, server: DaphneProcess, user: Any) -> None:
    """Skip the login form (journey 1 uses it): put a real session cookie in the browser."""
    cookie = session_cookie(user).decode().split("=", 1)[1]
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": server.http_url}]
    )


def signed_in_page(context: BrowserContext, server: DaphneProcess, user: Any) -> Page:
    """A page of `user` (signed in by cookie) on the conversation list."""
    sign_in_with_cookie(context, server, user)
    page = context.new_page()
    page.goto(f"{server.http_url}/")
    return page


def new_chat(page: Page, button: str = "New chat") -> None:
    """Press New chat (by its name in the page's language): the home page, the composer
    focused; the first send there creates the conversation."""
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("#composer-input")).to_be_focused()


def open_new_chat(context: BrowserContext, server: DaphneProcess, user: Any) -> Page:
    """Signed in as `user`, on a fresh conversation (created as `POST /c/` does), connected."""
    sign_in_with_cookie(context, server, user)
    conversation = services.conversations.create_conversation(user)
    page = context.new_page()
    page.goto(f"{server.http_url}/c/{conversation.public_id}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    return page


@pytest.fixture
def chatter(transactional_db: None, gateway: FakeGateway) -> Any:
    user = make_user("carol")
    give_key(user, gateway, "sk-carol-e2e")
    return user
