"""Single sign-on end to end: a real OpenID Connect provider process (django-oidc-provider,
tests/oidc_provider/), the chat in its own Daphne process configured for it by environment
variables only, and the real redirect flow in Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conversations import services
from conversations.demo.server import FakeGateway
from conversations.models import SingleSignOnIdentity
from tests.conftest import make_user
from tests.e2e import axe
from tests.e2e.conftest import Console
from tests.support.processes import ROOT, DaphneProcess, free_port, wait_until_listening

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENT_ID = "chat-e2e"
CLIENT_SECRET = "idp-client-secret-e2e-5f1c"
PEOPLE = [
    # A group that exists in the chat, and one that does not.
    {"username": "dana", "password": "pw-dana-idp", "email": "dana@example.org",
     "first_name": "Dana", "groups": ["research", "unknown-team"]},
    # No preferred_username claim (tests/oidc_provider/claims.py).
    {"username": "nameless-erin", "password": "pw-erin-idp", "email": "erin@example.org"},
    # The name of a local account of the chat.
    {"username": "frank", "password": "pw-frank-idp"},
]  # fmt: skip


class IdentityProvider:
    def __init__(self, chat_url: str) -> None:
        self.port = free_port()
        self.database = ROOT / "var" / f"idp-{self.port}.sqlite3"
        self.log_path = ROOT / "var" / f"idp-{self.port}.log"
        self.env = {
            **os.environ,
            "IDP_PORT": str(self.port),
            "IDP_DATABASE": str(self.database),
            "IDP_CLIENT": json.dumps(
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uri": f"{chat_url}/oidc/callback/",
                }
            ),
            "IDP_USERS": json.dumps(PEOPLE),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IdentityProvider:
        self.database.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider.serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_listening(self.port, self.process, 60, self.log_path.read_text)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.database.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def sso(django_db_setup: None) -> Iterator[tuple[DaphneProcess, IdentityProvider]]:
    chat = DaphneProcess(CHAT_RATE_LIMIT_PER_MINUTE="0")
    provider = IdentityProvider(chat.http_url).start()
    chat.env.update(
        {
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{provider.url}/openid/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{provider.url}/openid/token",
            "OIDC_OP_USER_ENDPOINT": f"{provider.url}/openid/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{provider.url}/openid/jwks",
            "OIDC_RP_SCOPES": "openid email profile groups",
            "OIDC_GROUPS_CLAIM": "groups",
        }
    )
    chat.start()
    yield chat, provider
    chat.stop()
    provider.stop()


def sign_in_at_the_provider(
    page: Page, chat: DaphneProcess, provider: IdentityProvider, who: dict
) -> None:
    page.goto(f"{chat.http_url}/accounts/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(re.compile(re.escape(provider.url) + r"/accounts/login/"))
    page.get_by_label("Username").fill(who["username"])
    page.get_by_label("Password").fill(who["password"])
    page.get_by_role("button", name="Continue").click()


def test_a_person_signs_in_with_the_provider_gets_an_account_and_known_groups_then_signs_out(
    sso: tuple[DaphneProcess, IdentityProvider],
    browser_context: tuple[BrowserContext, Console],
    gateway: FakeGateway,
) -> None:
    chat, provider = sso
    research = Group.objects.create(name="research")
    services.credentials.set_api_key(
        None, group=research, key="sk-research-e2e", base_url=gateway.base_url
    )
    context, _ = browser_context
    page = context.new_page()
    sign_in_at_the_provider(page, chat, provider, PEOPLE[0])
    page.wait_for_url(f"{chat.http_url}/")
    # Signed in, and the group from the token's claim brought its key: no "no API key" note.
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # The home page greets them by the name from the token's claims.
    expect(page.get_by_role("heading", name="What can I help with, Dana?")).to_be_visible()
    expect(page.get_by_text("No API key yet")).to_have_count(0)

    dana = get_user_model().objects.get(username="dana")
    assert (dana.email, dana.first_name) == ("dana@example.org", "Dana")
    assert not dana.has_usable_password()
    # The group the chat knows is given; the unknown one is not made.
    assert list(dana.groups.all()) == [research]
    assert not Group.objects.filter(name="unknown-team").exists()
    identity = SingleSignOnIdentity.objects.get(user=dana)
    assert identity.subject and identity.last_sign_in_at is not None

    # Sign-out ends the session: the chat asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.goto(f"{chat.http_url}/")
    page.wait_for_url(re.compile(r"/accounts/login/"))

    # Signing in again (the provider remembers the person) finds the same account.
    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{chat.http_url}/")
    assert get_user_model().objects.filter(username="dana").count() == 1
    assert SingleSignOnIdentity.objects.count() == 1


def test_a_token_without_the_username_claim_signs_no_one_in_and_says_why(
    sso: tuple[DaphneProcess, IdentityProvider], browser_context: tuple[BrowserContext, Console]
) -> None:
    chat, provider = sso
    context, _ = browser_context
    page = context.new_page()
    sign_in_at_the_provider(page, chat, provider, PEOPLE[1])
    page.wait_for_url(re.compile(re.escape(chat.http_url) + r"/accounts/login/"))
    expect(page.get_by_role("alert")).to_contain_text("no preferred_username claim")
    assert not get_user_model().objects.filter(email="erin@example.org").exists()
    assert not SingleSignOnIdentity.objects.exists()


def test_the_provider_cannot_take_over_a_local_account_and_local_accounts_keep_working(
    sso: tuple[DaphneProcess, IdentityProvider], browser_context: tuple[BrowserContext, Console]
) -> None:
    chat, provider = sso
    make_user("frank")
    context, _ = browser_context
    page = context.new_page()
    sign_in_at_the_provider(page, chat, provider, PEOPLE[2])
    page.wait_for_url(re.compile(re.escape(chat.http_url) + r"/accounts/login/"))
    expect(page.get_by_role("alert")).to_contain_text("An account named “frank” already exists")
    assert not SingleSignOnIdentity.objects.exists()

    # The local account signs in with its password, beside the provider's button.
    page.get_by_label("Username").fill("frank")
    page.get_by_label("Password").fill("pw-frank")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{chat.http_url}/")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_without_oidc_variables_the_login_page_has_no_provider_button(
    server: DaphneProcess, page: Page
) -> None:
    page.goto(f"{server.http_url}/accounts/login/")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Sign in with"))).to_have_count(0)
    assert page.request.get(f"{server.http_url}/oidc/authenticate/").status == 404


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sign_in_page_with_the_provider_button_and_a_refusal_passes_axe(
    sso: tuple[DaphneProcess, IdentityProvider], browser: Browser, scheme: str
) -> None:
    chat, provider = sso
    # The injected axe script is inline: the page's CSP would block it.
    context = browser.new_context(color_scheme=scheme, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{chat.http_url}/accounts/login/")
        assert axe.blocking(axe.run(page)) == []
        sign_in_at_the_provider(page, chat, provider, PEOPLE[1])
        page.wait_for_url(re.compile(re.escape(chat.http_url) + r"/accounts/login/"))
        expect(page.get_by_role("alert")).to_be_visible()
        serious = axe.blocking(axe.run(page))
        assert serious == [], axe.describe(serious)
    finally:
        context.close()
