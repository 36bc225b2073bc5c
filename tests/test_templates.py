"""What the pages say on a first run and in their empty states, and the markup that screen
readers rely on (the browser side is in tests/e2e/test_i18n_a11y.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from conversations import services
from conversations.models import ApiCredential, Message
from conversations.rendering import browser_config
from tests.support.turns import stored_thread

pytestmark = pytest.mark.django_db


def page(user: Any, url: str = "/", **headers: str) -> str:
    client = Client(**headers)
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def stored_messages(html: str) -> str:
    """The page without its <template> of messages to come (it follows the log)."""
    return html.split('<template id="message-template">')[0]


def test_the_home_page_is_the_composer_and_says_what_to_do(alice: Any, gateway: Any) -> None:
    services.credentials.set_api_key(alice, key="sk-alice", base_url=gateway.base_url)
    html = page(alice)
    assert "No conversations yet. Type a message to start one." in html
    assert 'id="composer-input"' in html and 'data-create-url="/c/"' in html
    assert "What can I help with?" in html
    # The shortcuts are listed in their dialog, on every page.
    assert 'id="shortcuts-dialog"' in html and "<kbd>O</kbd>" in html
    # No conversation yet: no menu for one, no socket to show.
    assert 'id="conversation-menu"' not in html and 'data-conversation-id="' not in html


def test_a_new_chat_says_how_to_write_and_send(alice: Any, gateway: Any) -> None:
    services.credentials.set_api_key(alice, key="sk-alice", base_url=gateway.base_url)
    conversation = services.conversations.create_conversation(alice)
    html = page(alice, f"/c/{conversation.public_id}/")
    assert 'id="log-empty"' in html
    assert "Enter sends, Shift+Enter starts a new line, Esc stops a reply." in html
    assert 'id="conversation-menu"' in html and 'id="settings-dialog"' in html


def test_the_offline_demo_banner_says_what_to_ask_the_administrator(
    alice: Any, gateway: Any, settings: Any
) -> None:
    settings.CHAT_DEMO_GATEWAY_URL = gateway.base_url
    html = page(alice)
    assert 'id="demo-banner"' in html
    assert "Offline demo." in html
    assert "add an API credential for your username “alice”" in html
    assert "(API credentials → Add)" in html and "CLOUDBASE_API_KEY" in html
    assert 'id="no-key-banner"' not in html


def test_without_any_key_the_banner_says_what_to_ask_the_administrator(
    alice: Any, gateway: Any
) -> None:
    services.credentials.set_api_key(alice, key="sk-alice", base_url=gateway.base_url)
    ApiCredential.objects.filter(user=alice).update(is_active=False)
    html = page(alice)
    assert 'id="no-key-banner"' in html
    assert "your messages cannot be answered" in html
    assert "username “alice”" in html and "(API credentials → Add)" in html
    chinese = page(alice, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert "还没有 API 密钥" in chinese and "“alice”" in chinese


def test_with_a_key_there_is_no_banner(alice: Any, gateway: Any) -> None:
    services.credentials.set_api_key(alice, key="sk-alice", base_url=gateway.base_url)
    html = page(alice)
    assert 'id="demo-banner"' not in html and 'id="no-key-banner"' not in html


def test_the_log_is_a_polite_live_region_and_a_streaming_reply_is_busy(alice: Any) -> None:
    conversation = services.conversations.create_conversation(alice)
    _question, streaming = stored_thread(
        conversation,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hel", "status": Message.Status.STREAMING},
    )
    html = page(alice, f"/c/{conversation.public_id}/")
    assert 'role="log" aria-live="polite"' in html
    # Completed replies are announced in a status region of their own.
    assert '<p class="visually-hidden" id="announcer" role="status"></p>' in html
    assert f'data-message-id="{streaming.public_id}" aria-busy="true"' in html


def test_a_failed_reply_shows_its_error_as_an_alert(alice: Any) -> None:
    conversation = services.conversations.create_conversation(alice)
    stored_thread(
        conversation,
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "status": Message.Status.ERROR,
            "error_code": "overloaded",
            "error_message": "The model is overloaded right now. Try again in a minute.",
        },
    )
    html = stored_messages(page(alice, f"/c/{conversation.public_id}/"))
    assert 'data-status="error"' in html and "aria-busy" not in html
    assert '<p class="message__error" role="alert">' in html
    assert "The model is overloaded right now." in html


def test_new_messages_are_cloned_from_the_partial_of_stored_ones(alice: Any) -> None:
    conversation = services.conversations.create_conversation(alice)
    stored_thread(conversation, {"role": "user", "content": "Hi"})
    url = f"/c/{conversation.public_id}/"
    # Up to the next template of the page: a reply's prototype holds a <template> of its own
    # (its Markdown source, for Copy message).
    template = re.search(
        r'<template id="message-template">(.*)</template>\s*<template id="file-chip-template">',
        page(alice, url),
        re.S,
    ).group(1)
    # One message of each role, not stored yet (no ids), as the script first adds it.
    user, assistant, rest = template.split("</article>")
    assert "data-message-id" not in template and ' id="m-' not in template
    # Then the two kinds of attached file a message shows, empty, from _attachment.html.
    image, file, end = rest.strip().split("</li>")
    assert image.startswith('<li class="attachment attachment--image">') and "<img" in image
    assert file.strip().startswith('<li class="attachment attachment--file">') and not end
    assert '<ul class="message__files" aria-label="Attached files"></ul>' in user
    assert 'class="message message--user" data-role="user" data-status="complete">' in user
    assert '<span class="message__author">You</span>' in user
    assert 'data-role="assistant" data-status="streaming" aria-busy="true">' in assistant
    assert '<span class="message__author">Assistant</span>' in assistant
    # A reply's optional parts are there, empty, for the script to fill or drop; a
    # question has none.
    for part in (
        '<span class="message__model"></span>',
        '<details class="message__thinking" open><summary>Thinking</summary>'
        '<div class="message__thinking-text"></div></details>',
        '<div class="message__body message__body--plain"></div>',
        '<p class="message__error" role="alert"><span class="message__error-code"></span> '
        '<span class="message__error-text"></span></p>',
    ):
        assert part in assistant, part
    assert '<template class="message__source"></template>' in assistant
    for name in ("message__model", "message__thinking", "message__error", "message__source"):
        assert name not in user
    # In the page's language, like the stored messages.
    chinese = page(alice, url, HTTP_ACCEPT_LANGUAGE="zh-CN")
    template = chinese.split('<template id="message-template">')[1]
    assert "<summary>思考过程</summary>" in template and ">助手</span>" in template


def test_the_login_page_says_who_to_ask_for_an_account(db: None) -> None:
    html = Client().get("/accounts/login/").content.decode()
    assert "Ask your administrator to create one for you." in html


def test_the_chat_page_embeds_the_servers_markdown_settings_for_live_rendering(
    alice: Any, gateway: Any
) -> None:
    services.credentials.set_api_key(alice, key="sk-alice", base_url=gateway.base_url)
    conversation = services.conversations.create_conversation(alice)
    html = page(alice, f"/c/{conversation.public_id}/")
    match = re.search(
        r'<script id="markdown-config" type="application/json">(.*?)</script>', html, re.S
    )
    assert match is not None
    assert json.loads(match.group(1)) == browser_config()
