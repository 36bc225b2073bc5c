"""English and Simplified Chinese: complete catalogs, the browser's language, the switch,
the JavaScript catalog, and sentences sent over the websocket in the page's language."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import translation

from conversations import credentials, limits, services
from conversations.demo.script import Script
from conversations.models import ApiCredential
from tests.conftest import ORIGIN, frames_until, give_key, receive, session_cookie
from tests.support.chat import new_conversation
from tests.support.turns import stored_thread

ROOT = Path(settings.BASE_DIR)
# Everything makemessages reads: templates, Python and the JavaScript of static/js.
SOURCES = ["chatsite", "conversations", "templates", "static"]
DOMAINS = ["django", "djangojs"]

db = database_sync_to_async


def signed_in(user: Any, **headers: str) -> Client:
    client = Client(**headers)
    client.force_login(user)
    return client


# --- the catalogs -------------------------------------------------------------------------
def _msgids(po_text: str) -> list[str]:
    """The msgids of a .po text (its header, the empty msgid, left out)."""
    ids = []
    for block in po_text.split("\n\n"):
        match = re.search(r'^msgid ((?:".*"\n?)+)', block, re.M)
        if match:
            text = "".join(re.findall(r'"(.*)"', match.group(1)))
            if text:
                ids.append(text)
    return ids


@pytest.fixture(scope="module")
def fresh_catalogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed catalogs merged with the strings of today's source, in a copy.

    makemessages writes next to the files it reads, so it runs on a copy of the source
    with LOCALE_PATHS pointing into the copy; the working tree is never touched.
    """
    if shutil.which("xgettext") is None:
        pytest.fail("GNU gettext is missing: apt-get install gettext")
    copy = tmp_path_factory.mktemp("i18n")
    for name in SOURCES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "locale", copy / "locale", ignore=shutil.ignore_patterns("*.mo"))
    with contextlib.chdir(copy), override_settings(LOCALE_PATHS=[copy / "locale"]):
        for domain in DOMAINS:
            call_command("makemessages", locale=["zh_Hans"], domain=domain, verbosity=0)
    return copy / "locale" / "zh_Hans" / "LC_MESSAGES"


def _msgattrib(po: Path, flag: str) -> list[str]:
    result = subprocess.run(
        ["msgattrib", flag, "--no-obsolete", str(po)],
        capture_output=True,
        text=True,
        check=True,
    )
    return _msgids(result.stdout)


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_string_of_the_source_has_a_chinese_translation(
    fresh_catalogs: Path, domain: str
) -> None:
    po = fresh_catalogs / f"{domain}.po"
    untranslated = _msgattrib(po, "--untranslated")
    fuzzy = _msgattrib(po, "--only-fuzzy")
    assert not untranslated, (
        f"{len(untranslated)} string(s) without a zh-hans translation (run `make messages` "
        f"and translate them in locale/zh_Hans/LC_MESSAGES/{domain}.po): {untranslated[:10]}"
    )
    assert not fuzzy, f"fuzzy (unchecked) translations in {domain}.po: {fuzzy[:10]}"
    assert len(_msgids(po.read_text(encoding="utf-8"))) > 15


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_committed_catalogs_compile_with_matching_placeholders(domain: str) -> None:
    po = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / f"{domain}.po"
    # --check verifies that every %(name)s of a msgid is in its msgstr, and the header.
    subprocess.run(["msgfmt", "--check", "-o", "/dev/null", str(po)], check=True)


def test_the_check_reports_an_entry_without_a_translation(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Translated"\nmsgstr "已翻译"\n\nmsgid "Forgotten"\nmsgstr ""\n',
        encoding="utf-8",
    )
    assert _msgattrib(po, "--untranslated") == ["Forgotten"]


# --- pages ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-hans"),
        ("zh", "zh-hans"),
        ("zh-Hans-CN", "zh-hans"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9", "en"),
        ("", "en"),
    ],
)
def test_the_login_page_follows_the_browsers_language(db: None, accept: str, language: str) -> None:
    headers = {"HTTP_ACCEPT_LANGUAGE": accept} if accept else {}
    response = Client(**headers).get("/accounts/login/")
    page = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Language"] == language
    assert f'<html lang="{language}">' in page
    if language == "zh-hans":
        assert "<title>登录</title>" in page and "用户名" in page and "密码" in page
    else:
        assert "<title>Sign in</title>" in page and "Username" in page


def test_the_chat_page_in_chinese_keeps_the_names_of_its_controls_translated(
    alice: Any,
) -> None:
    conversation = services.conversations.create_conversation(alice)
    page = (
        signed_in(alice, HTTP_ACCEPT_LANGUAGE="zh-CN")
        .get(f"/c/{conversation.public_id}/")
        .content.decode()
    )
    for text in ("发送", "停止", "重新生成", "新对话", "搜索对话", "消息", "退出登录"):
        assert text in page, text
    assert '<nav aria-label="对话列表"' in page
    assert 'role="log"' in page
    english = signed_in(alice).get(f"/c/{conversation.public_id}/").content.decode()
    for text in (">Send<", ">Stop<", ">Regenerate<", ">New chat<", ">Message<"):
        assert text in english, text
    assert '<nav aria-label="Conversations"' in english


def test_the_language_switch_sets_a_cookie_that_wins_over_the_browser(alice: Any) -> None:
    client = signed_in(alice, HTTP_ACCEPT_LANGUAGE="en-US")
    page = client.get("/").content.decode()
    # The switch is a plain form in the sidebar: no JavaScript needed.
    assert 'action="/i18n/setlang/"' in page
    assert 'name="language" value="zh-hans"' in page

    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "zh-hans"
    # Remembered beyond the browser session.
    assert int(cookie["max-age"]) >= 180 * 24 * 3600
    assert "新对话" in client.get("/").content.decode()

    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert ">New chat<" in client.get("/").content.decode()


def test_the_login_page_has_the_language_switch(db: None) -> None:
    page = Client().get("/accounts/login/?next=/c/").content.decode()
    assert 'action="/i18n/setlang/"' in page
    # Back to the same page (with its `next`) after switching.
    assert 'name="next" value="/accounts/login/?next=/c/"' in page


def test_the_javascript_catalog_is_loaded_by_a_script_before_the_modules(alice: Any) -> None:
    conversation = services.conversations.create_conversation(alice)
    page = signed_in(alice).get(f"/c/{conversation.public_id}/").content.decode()
    # JSON data blocks (the Markdown settings for the live rendering) are never executed.
    data = 'type="application/json"'
    scripts = [tag for tag in re.findall(r"<script\b[^>]*>", page) if data not in tag]
    assert scripts[0] == '<script src="/jsi18n/">'
    assert all('type="module"' in tag for tag in scripts[1:]) and len(scripts) >= 2
    # No inline script anywhere (a CSP without 'unsafe-inline' is coming).
    assert all("src=" in tag for tag in scripts)
    assert all(
        not body.strip()
        for tag, body in re.findall(r"(<script\b[^>]*>)(.*?)</script>", page, re.S)
        if data not in tag
    )


def test_the_javascript_catalog_translates_the_chat_strings(db: None) -> None:
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-CN").get("/jsi18n/").content.decode()
    assert '"Retry": "\\u91cd\\u8bd5"' in chinese  # 重试
    assert '"Reply complete."' in chinese
    english = Client(HTTP_ACCEPT_LANGUAGE="en").get("/jsi18n/").content.decode()
    assert "\\u91cd\\u8bd5" not in english


def test_dates_in_the_page_are_localised(alice: Any) -> None:
    conversation = services.conversations.create_conversation(alice)
    stored_thread(conversation, {"role": "user", "content": "hi"})
    url = f"/c/{conversation.public_id}/"
    chinese = signed_in(alice, HTTP_ACCEPT_LANGUAGE="zh-CN").get(url).content.decode()
    english = signed_in(alice).get(url).content.decode()
    assert re.search(
        r'<time class="message__time" datetime="[^"]+">\d{4}年\d{1,2}月\d{1,2}日', chinese
    )
    assert re.search(r'<time class="message__time" datetime="[^"]+">\d\d/\d\d/\d{4}', english)


def test_limits_say_dates_and_numbers_in_the_active_language(alice: Any, gateway: Any) -> None:
    give_key(alice, gateway, "sk-alice")
    ApiCredential.objects.filter(user=alice).update(monthly_token_quota=0)
    credential = credentials.resolve(alice)
    now = datetime(2026, 1, 20, tzinfo=UTC)
    with translation.override("zh-hans"), pytest.raises(limits.LimitExceeded) as chinese:
        limits.check_quota(alice, credential, now=now)
    assert "2026年2月1日" in chinese.value.message and "额度" in chinese.value.message
    with translation.override("en"), pytest.raises(limits.LimitExceeded) as english:
        limits.check_quota(alice, credential, now=now)
    assert "Feb. 1, 2026" in english.value.message


def test_the_admin_help_texts_are_translated(db: None) -> None:
    from django.contrib.auth import get_user_model

    boss = get_user_model().objects.create_superuser("boss", password="pw-boss")
    page = (
        signed_in(boss, HTTP_ACCEPT_LANGUAGE="zh-CN")
        .get("/admin/conversations/apicredential/add/")
        .content.decode()
    )
    for text in ("新建时必填", "每行一个模型名称", "基础 URL", "API 密钥", "每月 token 额度"):
        assert text in page, text


# --- the websocket ----------------------------------------------------------------------------
async def _socket(
    user: Any, conversation: Any, accept_language: bytes, language_cookie: str = ""
) -> WebsocketCommunicator:
    from chatsite.asgi import application

    cookie = await db(session_cookie)(user)
    if language_cookie:
        cookie += f"; {settings.LANGUAGE_COOKIE_NAME}={language_cookie}".encode()
    headers = [ORIGIN, (b"cookie", cookie), (b"accept-language", accept_language)]
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert (await receive(communicator))["type"] == "state"
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_refusal_is_sent_in_the_browsers_language(alice: Any, gateway: Any) -> None:
    conversation = await new_conversation(alice)
    chinese = await _socket(alice, conversation, b"zh-CN,zh;q=0.9")
    await chinese.send_json_to({"type": "send", "content": "   "})
    error = await receive(chinese)
    assert error["code"] == "empty_message" and error["message"] == "请先输入消息再发送。"
    await chinese.disconnect()

    english = await _socket(alice, conversation, b"en-US")
    await english.send_json_to({"type": "send", "content": "   "})
    assert (await receive(english))["message"] == "Type a message before sending."
    await english.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_language_cookie_wins_over_the_header_on_the_socket(
    alice: Any, gateway: Any
) -> None:
    conversation = await new_conversation(alice)
    sock = await _socket(alice, conversation, b"en-US", language_cookie="zh-hans")
    await sock.send_json_to({"type": "stop"})
    assert (await receive(sock))["message"] == "当前没有正在生成的回复。"
    await sock.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_gateway_error_is_explained_and_stored_in_the_browsers_language(
    alice: Any, gateway: Any
) -> None:
    await db(give_key)(alice, gateway, "sk-alice")
    conversation = await new_conversation(alice)
    sock = await _socket(alice, conversation, b"zh-CN")
    gateway.enqueue(*[Script(status=529)] * 3)
    await sock.send_json_to({"type": "send", "content": "你好"})
    done = (await frames_until(sock, "done"))[-1]
    assert done["error"]["message"] == "模型当前负载过高。请过一分钟再试。"
    error = await receive(sock)
    assert error["type"] == "error" and error["message"] == done["error"]["message"]
    await sock.disconnect()
    reply = await conversation.messages.filter(role="assistant").aget()
    assert reply.error_message == "模型当前负载过高。请过一分钟再试。"
