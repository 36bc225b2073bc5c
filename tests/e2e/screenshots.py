"""Screenshots of every page: phone and desktop, light and dark, English and Chinese.

    .venv/bin/python -m tests.e2e.screenshots [--out docs/screenshots] [--only chat,login]

Runs the app like the browser tests do (a Daphne process, the fake gateway, Debian's
Chromium) on a throwaway SQLite database in var/, filled with a few conversations.
Files are named <page>-<phone|desktop>-<light|dark>-<en|zh>.png. Not collected by pytest
(the name does not start with test_).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
DATABASE = ROOT / "var" / "screenshots.sqlite3"

VIEWPORTS = {"phone": (390, 844), "desktop": (1280, 860)}
SCHEMES = ("light", "dark")
LANGUAGES = {"en": "en-US", "zh": "zh-CN"}


def _setup_django() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ["DATABASE_URL"] = f"sqlite:///{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are sync.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _fill_database(gateway_url: str) -> dict[str, Any]:
    """Users and conversations that show every state of the pages."""
    from django.core.management import call_command
    from django.utils import timezone

    from conversations import services
    from conversations.models import ApiCredential, Conversation, Message, SearchDocument
    from conversations.search import segment
    from tests.support.turns import stored_thread

    for suffix in ("", "-shm", "-wal"):
        Path(f"{DATABASE}{suffix}").unlink(missing_ok=True)
    DATABASE.parent.mkdir(exist_ok=True)
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    mei = users.create_superuser("mei", password="pw-mei")
    services.credentials.set_api_key(
        mei, key="sk-mei-screenshots", base_url=gateway_url, model="hy3-preview"
    )
    # First run: no key of her own, the offline demo answers.
    users.create_user("lin", password="pw-lin")
    # A revoked key: "no API key" (the demo is not a way around a revoked key).
    kai = users.create_user("kai", password="pw-kai")
    services.credentials.set_api_key(kai, key="sk-kai-revoked", base_url=gateway_url)
    ApiCredential.objects.filter(user=kai).update(is_active=False)

    now = timezone.now()

    def conversation(title: str, age: timedelta, turns: list[dict[str, Any]]) -> Conversation:
        conv = services.conversations.create_conversation(mei, title=title)
        # Stored directly (no gateway round trip), so indexed here for the search page.
        SearchDocument.objects.update_or_create(
            conversation=conv, message=None, defaults={"owner": mei, "body": segment(title)}
        )
        for message in stored_thread(conv, *({"model": "hy3-preview", **t} for t in turns)):
            if message.content:
                SearchDocument.objects.create(
                    owner=mei, conversation=conv, message=message, body=segment(message.content)
                )
        Conversation.objects.filter(pk=conv.pk).update(updated_at=now - age)
        return conv

    older = [
        ("数据库索引怎么设计", timedelta(days=40)),
        ("Weekly report outline", timedelta(days=12)),
        ("Regex for Chinese phone numbers", timedelta(days=5)),
        ("杭州三日游行程", timedelta(days=3)),
        ("Tea ceremony vocabulary", timedelta(days=1, hours=2)),
    ]
    for title, age in older:
        conversation(
            title,
            age,
            [
                {"role": "user", "content": title},
                {"role": "assistant", "content": "…"},
            ],
        )
    error = conversation(
        "Summarise the meeting notes",
        timedelta(minutes=30),
        [
            {"role": "user", "content": "Summarise these meeting notes in three bullet points."},
            {
                "role": "assistant",
                "status": Message.Status.ERROR,
                "error_code": "overloaded",
                "error_message": "The model is overloaded right now. Try again in a minute.",
            },
        ],
    )
    chat = conversation(
        "Python 异步编程入门",
        timedelta(minutes=2),
        [
            {
                "role": "user",
                "content": "How do I run two HTTP requests at the same time in Python?",
            },
            {
                "role": "assistant",
                "thinking": (
                    "The person wants concurrency for I/O. asyncio with an async HTTP client "
                    "is the simplest answer; mention gather and a timeout."
                ),
                "content": (
                    "Use **asyncio** with an async HTTP client, and `asyncio.gather` to wait "
                    "for both:\n\n"
                    "```python\nimport asyncio\nimport httpx\n\n"
                    "async def main():\n"
                    "    async with httpx.AsyncClient(timeout=10) as client:\n"
                    "        a, b = await asyncio.gather(\n"
                    '            client.get("https://example.com/a"),\n'
                    '            client.get("https://example.com/b"),\n'
                    "        )\n"
                    "    print(a.status_code, b.status_code)\n\n"
                    "asyncio.run(main())\n```\n\n"
                    "- Both requests are in flight at once.\n"
                    "- `gather` returns the results in the order you passed them."
                ),
                "input_tokens": 412,
                "output_tokens": 168,
            },
            {"role": "user", "content": "用中文再解释一下 gather 的作用。"},
            {
                "role": "assistant",
                "content": (
                    "`asyncio.gather` 会**同时**运行传入的多个协程，并等待它们全部完成，"
                    "然后按传入的顺序返回结果。\n\n"
                    "如果其中一个抛出异常，默认会把异常传给调用者；"
                    "传入 `return_exceptions=True` 则会把异常作为结果返回。"
                ),
                "input_tokens": 620,
                "output_tokens": 96,
            },
        ],
    )
    attached = _conversation_with_files_and_versions(mei, conversation)
    empty = services.conversations.create_conversation(mei)
    # A pinned conversation on top of the list, and one archived out of it.
    pinned = Conversation.objects.get(owner=mei, title="Weekly report outline")
    services.conversations.pin(pinned, True)
    services.conversations.archive(
        Conversation.objects.get(owner=mei, title="Regex for Chinese phone numbers"), True
    )
    kai_chat = services.conversations.create_conversation(kai)

    # A group sharing a key and a quota, with its audit: a few changes by mei in the admin.
    from django.contrib.auth.models import Group

    research = Group.objects.create(name="1-research")
    research.user_set.add(users.get(username="lin"))
    team_key = services.credentials.set_api_key(
        None, group=research, key="sk-research-shared-4f2e", base_url=gateway_url,
        model="hy3-preview", label="Research team",
    )  # fmt: skip
    team_key.monthly_token_quota = 2_000_000
    team_key.rate_limit_per_minute = 60
    services.credentials.save_credential(team_key, by=mei)
    team_key.set_key("sk-research-rotated-9a0b")
    services.credentials.save_credential(team_key, by=mei)
    return {
        "team_key": team_key,
        "users": {"mei": mei, "lin": users.get(username="lin"), "kai": kai},
        "chat": chat,
        "attached": attached,
        "error": error,
        "empty": empty,
        "kai_chat": kai_chat,
    }


def _bar_chart() -> bytes:
    """A small bar chart, as a person would attach a screenshot of one."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 400), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.line([(60, 340), (600, 340)], fill=(90, 90, 90), width=2)
    draw.line([(60, 40), (60, 340)], fill=(90, 90, 90), width=2)
    for index, value in enumerate((120, 180, 150, 260)):
        left = 100 + index * 125
        draw.rectangle([(left, 340 - value), (left + 70, 339)], fill=(36, 86, 199))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _conversation_with_files_and_versions(mei: Any, conversation: Any) -> Any:
    """A question sent with an image and a PDF, answered twice (Regenerate): the second
    version is shown, "2 / 2" beside Previous version."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from conversations import services
    from conversations.models import Attachment, Conversation, Message
    from tests.support import files

    attached = conversation(
        "Q3 sales review",
        timedelta(minutes=20),
        [
            {"role": "user", "content": "What stands out in this chart and the report?"},
            {
                "role": "assistant",
                "content": "Sales rose in three of the four quarters; Q3 dipped.",
                "input_tokens": 2210,
                "output_tokens": 18,
            },
        ],
    )
    question = attached.messages.get(role=Message.Role.USER)
    second = attached.messages.create(
        parent=question,
        role=Message.Role.ASSISTANT,
        model="hy3-preview",
        content=(
            "**Q4 is the standout**: the highest bar, about 70 % above Q1.\n\n"
            "- Q3 dipped after a strong Q2; the report puts it down to a late product launch.\n"
            "- The report's 12 % revenue growth matches the chart's trend."
        ),
        input_tokens=2210,
        output_tokens=64,
    )
    Conversation.objects.filter(pk=attached.pk).update(shown_leaf=second)
    for name, data in (
        ("sales-by-quarter.png", _bar_chart()),
        ("q3-report.pdf", files.pdf("Q3 report: revenue grew by 12 percent year on year.")),
    ):
        upload = services.attachments.upload(mei, attached, SimpleUploadedFile(name, data))
        Attachment.objects.filter(pk=upload.pk).update(message=question)
    return attached


def _attach_a_file(page: Any) -> None:
    from playwright.sync_api import expect

    page.locator("#attach-input").set_input_files(
        files=[{"name": "targets-2027.csv", "mimeType": "text/csv", "buffer": b"q,target\n1,120\n"}]
    )
    expect(page.locator("#composer-files .file-chip")).to_have_attribute("data-state", "ready")
    page.locator("#composer-input").fill("Compare with next year's targets")


def _open_menu(page: Any) -> None:
    page.locator("#conversation-menu summary").click()


def _open_settings(page: Any) -> None:
    _open_menu(page)
    page.locator("#conversation-menu [data-dialog=settings-dialog]").click()


def _open_shortcuts(page: Any) -> None:
    page.keyboard.press("Control+/")


def _fold_sidebar(page: Any) -> None:
    page.locator("#sidebar-toggle").click()


def _open_sidebar(page: Any) -> None:
    page.locator("#sidebar-toggle").click()


# (name, user, path, wait for the websocket[, what to do first]). Paths may use the
# conversations from the data.
def _pages(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        ("login", None, "/accounts/login/", False),
        ("home", "mei", "/", False),
        ("home-first-run", "lin", "/", False),
        ("home-list", "mei", "/", False, _open_sidebar),
        ("chat", "mei", f"/c/{data['chat'].public_id}/", True),
        ("chat-menu", "mei", f"/c/{data['chat'].public_id}/", True, _open_menu),
        ("chat-settings-dialog", "mei", f"/c/{data['chat'].public_id}/", True, _open_settings),
        ("chat-sidebar-folded", "mei", f"/c/{data['chat'].public_id}/", True, _fold_sidebar),
        ("shortcuts", "mei", f"/c/{data['chat'].public_id}/", True, _open_shortcuts),
        ("archived", "mei", "/archived/", False),
        ("chat-attachments", "mei", f"/c/{data['attached'].public_id}/", True, _attach_a_file),
        ("chat-error", "mei", f"/c/{data['error'].public_id}/", True),
        ("chat-new", "mei", f"/c/{data['empty'].public_id}/", True),
        ("chat-no-key", "kai", f"/c/{data['kai_chat'].public_id}/", True),
        ("search", "mei", "/search/?q=gather", False),
        ("settings", "mei", f"/c/{data['chat'].public_id}/settings/", False),
        ("delete", "mei", f"/c/{data['error'].public_id}/delete/", False),
        ("admin-credential", "mei", "/admin/conversations/apicredential/add/", False),
        ("admin-usage", "mei", "/admin/usage/", False),
        # Single sign-on configured (a second server, with OIDC_* variables).
        ("login-sso", None, "/accounts/login/", False),
        ("admin-credentials", "mei", "/admin/conversations/apicredential/", False),
        (
            "admin-credential-audit",
            "mei",
            f"/admin/conversations/apicredential/{data['team_key'].pk}/change/#fieldset-0-3-heading",
            False,
        ),
        ("admin-audit", "mei", "/admin/conversations/credentialchange/", False),
        ("admin-users", "mei", "/admin/auth/user/", False),
    ]


# What a server with single sign-on configured is started with (the provider is not
# reached: the login page only shows its button).
SSO_ENV = {
    "OIDC_PROVIDER_NAME": "Keycloak",
    "OIDC_RP_CLIENT_ID": "chat",
    "OIDC_RP_CLIENT_SECRET": "screenshots-only",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://sso.example.org/realms/staff/protocol/openid-connect/auth",
    "OIDC_OP_TOKEN_ENDPOINT": "https://sso.example.org/realms/staff/protocol/openid-connect/token",
    "OIDC_OP_USER_ENDPOINT": "https://sso.example.org/realms/staff/protocol/openid-connect/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://sso.example.org/realms/staff/protocol/openid-connect/certs",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--only", default="", help="comma-separated page names")
    args = parser.parse_args(argv)

    _setup_django()
    from django.conf import settings
    from playwright.sync_api import expect, sync_playwright

    from conversations.demo.server import FakeGateway
    from tests.conftest import session_cookie
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.support.processes import DaphneProcess

    gateway = FakeGateway().start_in_thread()
    server = DaphneProcess(CHAT_DEMO_GATEWAY_URL=gateway.base_url)
    sso_server = DaphneProcess(CHAT_DEMO_GATEWAY_URL=gateway.base_url, **SSO_ENV)
    try:
        data = _fill_database(gateway.base_url)
        cookies = {
            name: session_cookie(user).decode().split("=", 1)[1]
            for name, user in data["users"].items()
        }
        server.start()
        only = {name for name in args.only.split(",") if name}
        if not only or "login-sso" in only:
            sso_server.start()
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name, user, path, live, *before in _pages(data):
                if only and name not in only:
                    continue
                for size, (width, height) in VIEWPORTS.items():
                    for scheme in SCHEMES:
                        for language, locale in LANGUAGES.items():
                            context = browser.new_context(
                                viewport={"width": width, "height": height},
                                color_scheme=scheme,
                                locale=locale,
                                reduced_motion="reduce",
                            )
                            if user is not None:
                                context.add_cookies(
                                    [
                                        {
                                            "name": settings.SESSION_COOKIE_NAME,
                                            "value": cookies[user],
                                            "url": server.http_url,
                                        }
                                    ]
                                )
                            page = context.new_page()
                            origin = sso_server if name == "login-sso" else server
                            page.goto(origin.http_url + path)
                            if live:
                                expect(page.locator("#connection")).to_have_attribute(
                                    "data-state", "online"
                                )
                            if before:
                                if name in ("home-list", "chat-sidebar-folded") and size != (
                                    "phone" if name == "home-list" else "desktop"
                                ):
                                    context.close()
                                    continue
                                before[0](page)
                            page.evaluate("document.fonts.ready")
                            # A caret would blink into some shots and not others.
                            page.evaluate("document.activeElement && document.activeElement.blur()")
                            target = args.out / f"{name}-{size}-{scheme}-{language}.png"
                            page.screenshot(path=str(target))
                            print(target.relative_to(ROOT))
                            context.close()
            browser.close()
    finally:
        server.stop()
        sso_server.stop()
        gateway.stop_thread()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
