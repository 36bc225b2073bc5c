"""Browser protections: the Content-Security-Policy and the other security headers, pages
that need no inline script or style, and production settings that pass `check --deploy`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from conversations import services
from conversations.models import ApiCredential, Message
from conversations.services.replies import Outcome
from tests.conftest import make_user
from tests.support.processes import ROOT

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def directives(header: str) -> dict[str, str]:
    parts = [part.strip().split(None, 1) for part in header.split(";") if part.strip()]
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


class InlineCode(HTMLParser):
    """What a strict CSP would block in a page: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self._open = "script"
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_data(self, data: str) -> None:
        if self._open == "script" and data.strip():
            self.found.append(f"<script>{data.strip()[:60]}")

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


def every_page(client: Client, admin: Client, user: Any) -> dict[str, Any]:
    services.credentials.set_api_key(user, key="sk-headers", base_url="http://127.0.0.1:9")
    conversation = services.conversations.create_conversation(user, title="Tables")
    start = services.turns.start_turn(user, conversation, "A table, please")
    table = "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n```python\nprint('hi')\n```"
    services.replies.finish_reply(
        start.plan,
        Outcome(status=Message.Status.COMPLETE, content=table, stop_reason="end_turn"),
    )
    c = conversation.public_id
    credential = ApiCredential.objects.get(user=user)
    urls = {
        client: [
            "/",
            "/conversations/",
            "/search/?q=table",
            f"/c/{c}/",
            f"/c/{c}/messages/",
            f"/c/{c}/delete/",
            f"/c/{c}/settings/",
        ],
        admin: [
            "/admin/",
            "/admin/usage/",
            f"/admin/usage/?user={user.pk}",
            "/admin/conversations/apicredential/",
            "/admin/conversations/apicredential/add/",
            f"/admin/conversations/apicredential/{credential.pk}/change/",
            "/admin/conversations/conversation/",
            f"/admin/conversations/conversation/{conversation.pk}/change/",
            "/admin/conversations/message/",
            "/admin/auth/user/",
            f"/admin/auth/user/{user.pk}/change/",
            "/admin/auth/user/add/",
        ],
    }
    pages = {"/accounts/login/": Client().get("/accounts/login/")}
    for who, paths in urls.items():
        for path in paths:
            pages[path] = who.get(path)
    return pages


@pytest.mark.django_db
def test_every_page_has_the_policy_and_needs_no_inline_code() -> None:
    user = make_user("alice")
    client = Client()
    client.force_login(user)
    admin = Client()
    admin.force_login(make_user("root", is_staff=True, is_superuser=True))
    for path, response in every_page(client, admin, user).items():
        assert response.status_code == 200, path
        assert directives(response["Content-Security-Policy"]) == CSP, path
        assert inline_code(response.content.decode()) == [], path


@pytest.mark.django_db
def test_the_other_security_headers() -> None:
    response = Client().get("/accounts/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    # Errors and downloads carry them too.
    missing = Client().get("/no-such-page/")
    assert missing.status_code == 404
    assert "frame-ancestors 'none'" in missing["Content-Security-Policy"]
    assert missing["X-Frame-Options"] == "DENY"


def test_the_inline_code_finder_finds_inline_code() -> None:
    # The page check above means something only if this finds what a CSP would block.
    assert inline_code('<script>alert(1)</script><script src="/a.js"></script>') == [
        "<script>alert(1)"
    ]
    assert inline_code('<p style="color:red" onclick="x()">') == [
        "<p style='color:red'>",
        "<p onclick='x()'>",
    ]
    assert inline_code("<style>p{}</style>") == ["<style>"]
    assert inline_code('<a href="javascript:alert(1)">') == ["<a href='javascript:alert(1)'>"]


# --- Production settings ---------------------------------------------------------------------
def production_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "production-" + Fernet.generate_key().decode() * 2,
            "ALLOWED_HOSTS": "chat.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": "sqlite://:memory:",
            **extra,
        }
    )
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_finds_nothing_to_warn_about_in_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stderr


def test_check_deploy_does_warn_when_a_protection_is_turned_off() -> None:
    # The check above would be worthless if it could not fail.
    env = production_env(SESSION_COOKIE_SECURE="0", SECURE_HSTS_SECONDS="0")
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "security.W012" in result.stderr and "security.W004" in result.stderr


PROBE = """
import json
from django.conf import settings
from django.test import Client
# A page without static files: production expects `collectstatic` to have run.
client = Client(HTTP_HOST="chat.example.com")
secure = client.get("/jsi18n/", secure=True)
plain = client.get("/jsi18n/")
print(json.dumps({
    "hsts": secure.get("Strict-Transport-Security"),
    "redirect": [plain.status_code, plain.get("Location")],
    "csrf_cookie": [settings.CSRF_COOKIE_SECURE, settings.CSRF_COOKIE_SAMESITE],
    "session_cookie": [settings.SESSION_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
                       settings.SESSION_COOKIE_SAMESITE],
    "validators": len(settings.AUTH_PASSWORD_VALIDATORS),
}))
"""


def probed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    # `shell` may print a line of its own first.
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))


def test_production_uses_https_only_and_secure_cookies() -> None:
    seen = probed(manage("shell", "-c", PROBE, env=production_env()))
    assert seen["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["redirect"] == [301, "https://chat.example.com/jsi18n/"]
    assert seen["csrf_cookie"] == [True, "Lax"]
    assert seen["session_cookie"] == [True, True, "Lax"]
    assert seen["validators"] == 4


def test_hsts_for_subdomains_can_be_turned_off() -> None:
    env = production_env(SECURE_HSTS_INCLUDE_SUBDOMAINS="0", SECURE_HSTS_SECONDS="600")
    result = manage("shell", "-c", PROBE, env=env)
    assert probed(result)["hsts"] == "max-age=600"


def test_the_policy_is_built_from_the_settings(settings: Any) -> None:
    from chatsite.middleware import policy

    header = policy(settings.CONTENT_SECURITY_POLICY)
    assert directives(header) == CSP
    assert not re.search(r"unsafe-(inline|eval)", header)
