"""Who may do what: every URL and the websocket, for every kind of visitor; CSRF on every
write; the websocket's Origin check."""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.test import Client

from conversations import services
from conversations.consumers import ConversationConsumer
from conversations.models import Conversation, Message
from conversations.services.replies import Outcome
from tests.conftest import ORIGIN, make_user, receive, session_cookie

SECRET_WORD = "quillwort"
TITLE = "Alice's private conversation"

# Visitors: nobody, the owner, someone else, staff without permissions, a superuser.
VISITORS = ["anonymous", "owner", "other", "staff", "superuser"]


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    # Five users per test: a deliberately slow password hash would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_visitors() -> dict[str, Any]:
    return {
        "anonymous": None,
        "owner": make_user("owner"),
        "other": make_user("other"),
        "staff": make_user("staff", is_staff=True),
        "superuser": make_user("root", is_staff=True, is_superuser=True),
    }


def owned_conversation(owner: Any) -> Conversation:
    """A conversation with settings and one finished exchange, made through the services."""
    services.credentials.set_api_key(owner, key="sk-authz", base_url="http://127.0.0.1:9")
    conversation = services.conversations.create_conversation(owner, title=TITLE)
    services.conversations.update_settings(
        conversation,
        system_prompt="Keep it secret.",
        model="",
        temperature=None,
        top_p=None,
        max_tokens=None,
    )
    start = services.turns.start_turn(owner, conversation, f"Tell me about {SECRET_WORD}")
    services.replies.finish_reply(
        start.plan,
        Outcome(
            status=Message.Status.COMPLETE,
            content=f"{SECRET_WORD} is a fern.",
            stop_reason="end_turn",
        ),
    )
    conversation.refresh_from_db()
    return conversation


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def snapshot(conversation: Conversation) -> tuple[Any, ...]:
    """Everything a visitor could try to change about the conversation."""
    row = Conversation.objects.filter(pk=conversation.pk).values().first()
    messages = list(Message.objects.filter(conversation_id=conversation.pk).values().order_by("id"))
    return row, messages


def conversation_requests(public_id: Any) -> list[tuple[str, str, dict[str, str], int]]:
    """Every URL of one conversation, with what its owner gets; the deleting POST is last."""
    return [
        ("get", f"/c/{public_id}/", {}, 200),
        ("get", f"/c/{public_id}/messages/", {}, 200),
        ("post", f"/c/{public_id}/rename/", {"title": "Taken over"}, 302),
        ("get", f"/c/{public_id}/delete/", {}, 200),
        ("get", f"/c/{public_id}/settings/", {}, 200),
        ("post", f"/c/{public_id}/settings/", {"system_prompt": "Obey me.", "model": ""}, 302),
        ("get", f"/c/{public_id}/export.md", {}, 200),
        ("get", f"/c/{public_id}/export.json", {}, 200),
        ("post", f"/c/{public_id}/delete/", {}, 302),
    ]


def assert_sent_to_sign_in(response: Any, login_url: str = "/accounts/login/") -> None:
    assert response.status_code == 302
    assert response["Location"].startswith(f"{login_url}?next="), response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", VISITORS)
def test_a_conversation_answers_only_its_owner(visitor: str) -> None:
    people = make_visitors()
    conversation = owned_conversation(people["owner"])
    before = snapshot(conversation)
    client = client_for(people[visitor])

    for method, url, data, owner_status in conversation_requests(conversation.public_id):
        response = getattr(client, method)(url, data)
        if visitor == "anonymous":
            assert_sent_to_sign_in(response)
        elif visitor == "owner":
            assert response.status_code == owner_status, (method, url)
        else:
            # Staff and superusers too: the chat pages are a person's own, and another
            # person's conversation looks exactly like a missing one.
            assert response.status_code == 404, (visitor, method, url)
            body = response.content.decode()
            assert SECRET_WORD not in body and TITLE not in body

    if visitor == "owner":
        assert not Conversation.objects.filter(pk=conversation.pk).exists()
    else:
        assert snapshot(conversation) == before


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", VISITORS)
def test_the_pages_without_a_conversation(visitor: str) -> None:
    people = make_visitors()
    conversation = owned_conversation(people["owner"])
    count = Conversation.objects.count()
    client = client_for(people[visitor])

    pages = ["/", "/conversations/", f"/search/?q={SECRET_WORD}"]
    for url in pages:
        response = client.get(url)
        if visitor == "anonymous":
            assert_sent_to_sign_in(response)
            continue
        assert response.status_code == 200, url
        # Each list and search shows its visitor's own conversations only.
        shown = str(conversation.public_id) in response.content.decode()
        assert shown == (visitor == "owner"), (visitor, url)

    response = client.post("/c/")
    if visitor == "anonymous":
        assert_sent_to_sign_in(response)
        assert Conversation.objects.count() == count
    else:
        # A new conversation of the visitor's own, addressed by its UUID.
        match = re.fullmatch(r"/c/([0-9a-f-]{36})/", response["Location"])
        assert response.status_code == 302 and match
        created = Conversation.objects.get(public_id=UUID(match.group(1)))
        assert created.owner == people[visitor]


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", VISITORS)
def test_the_admin_and_its_usage_page(visitor: str) -> None:
    people = make_visitors()
    owned_conversation(people["owner"])
    client = client_for(people[visitor])

    index = client.get("/admin/")
    usage = client.get("/admin/usage/")
    credentials = client.get("/admin/conversations/apicredential/")
    if visitor in ("anonymous", "owner", "other"):
        for response in (index, usage, credentials):
            assert_sent_to_sign_in(response, login_url="/admin/login/")
    elif visitor == "staff":
        # Staff without permissions sees an empty admin, no usage, no credentials.
        assert index.status_code == 200
        assert b"/admin/usage/" not in index.content
        assert usage.status_code == 403
        assert credentials.status_code == 403
    else:
        assert index.status_code == 200 and b"/admin/usage/" in index.content
        assert usage.status_code == 200
        assert credentials.status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("visitor", VISITORS)
async def test_the_websocket_answers_only_the_owner(visitor: str) -> None:
    people = await database_sync_to_async(make_visitors)()
    conversation = await database_sync_to_async(owned_conversation)(people["owner"])
    before = await database_sync_to_async(snapshot)(conversation)
    from chatsite.asgi import application

    headers = [ORIGIN]
    if people[visitor] is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(people[visitor])))
    socket = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/", headers=headers
    )
    connected, _ = await socket.connect(timeout=5)
    assert connected
    if visitor == "owner":
        assert await receive(socket) == {"type": "state", "generation": None}
        await socket.disconnect()
        return
    expected = 4401 if visitor == "anonymous" else 4404
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": expected}
    # A frame sent anyway changes nothing.
    await socket.send_to(text_data=json.dumps({"type": "send", "content": "let me in"}))
    await socket.wait()
    assert await database_sync_to_async(snapshot)(conversation) == before


@pytest.mark.django_db
def test_urls_carry_uuids_never_the_database_id() -> None:
    people = make_visitors()
    owner = people["owner"]
    conversations = [owned_conversation(owner)] + [
        services.conversations.create_conversation(owner, title=f"more {i}") for i in range(3)
    ]
    client = client_for(owner)
    pages = ["/", "/conversations/", f"/search/?q={SECRET_WORD}"]
    pages += [f"/c/{c.public_id}/" for c in conversations]
    for url in pages:
        html = client.get(url).content.decode()
        addresses = re.findall(r'(?:href|action|data-[a-z-]+)="(/c/[^"]*)"', html)
        assert addresses, url
        for address in addresses:
            match = re.match(r"/c/([^/?#]+)/", address)
            if match:
                UUID(match.group(1))  # raises for "/c/17/"
    exported = json.loads(client.get(f"/c/{conversations[0].public_id}/export.json").content)
    assert exported["conversation"]["id"] == str(conversations[0].public_id)
    assert all(UUID(m["id"]) for m in exported["messages"])
    # The integer primary key is not an address at all.
    for conversation in conversations:
        assert client.get(f"/c/{conversation.pk}/").status_code == 404
        assert client.get(f"/c/{conversation.pk}/export.json").status_code == 404


# --- CSRF -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_every_state_changing_request_needs_the_csrf_token() -> None:
    people = make_visitors()
    owner = people["owner"]
    conversation = owned_conversation(owner)
    before = snapshot(conversation)
    client = client_for(owner, enforce_csrf_checks=True)
    public_id = conversation.public_id
    writes = [
        ("/c/", {}),
        (f"/c/{public_id}/rename/", {"title": "Forged"}),
        (f"/c/{public_id}/settings/", {"system_prompt": "Forged", "model": ""}),
        (f"/c/{public_id}/delete/", {}),
        ("/accounts/logout/", {}),
        ("/i18n/setlang/", {"language": "zh-hans", "next": "/"}),
    ]
    for url, data in writes:
        assert client.post(url, data).status_code == 403, url
    assert snapshot(conversation) == before
    assert Conversation.objects.count() == 1
    assert client.session.get(SESSION_KEY) == str(owner.pk)  # still signed in
    assert django_settings.LANGUAGE_COOKIE_NAME not in client.cookies

    # Signing in is protected too (login CSRF), and the token makes each request pass.
    anonymous = Client(enforce_csrf_checks=True)
    assert (
        anonymous.post(
            "/accounts/login/", {"username": "owner", "password": "pw-owner"}
        ).status_code
        == 403
    )
    page = anonymous.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    signed_in = anonymous.post(
        "/accounts/login/",
        {"username": "owner", "password": "pw-owner", "csrfmiddlewaretoken": token},
    )
    assert signed_in.status_code == 302
    token = anonymous.cookies[django_settings.CSRF_COOKIE_NAME].value
    response = anonymous.post(
        f"/c/{public_id}/rename/", {"title": "Mine", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


# --- The websocket's Origin -----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(b"https://evil.example", id="foreign"),
        pytest.param(b"http://127.0.0.1.evil.example", id="lookalike"),
        pytest.param(b"null", id="null"),
        pytest.param(None, id="missing"),
    ],
)
async def test_a_handshake_from_another_origin_never_reaches_the_consumer(
    origin: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await database_sync_to_async(make_user)("owner")
    conversation = await database_sync_to_async(services.conversations.create_conversation)(owner)
    reached: list[str] = []
    real_connect = ConversationConsumer.connect

    async def spy(self: ConversationConsumer) -> None:
        reached.append("connect")
        await real_connect(self)

    monkeypatch.setattr(ConversationConsumer, "connect", spy)
    from chatsite.asgi import application

    # The owner's own session cookie: what a cross-site page would make the browser send.
    headers = [(b"cookie", await database_sync_to_async(session_cookie)(owner))]
    if origin is not None:
        headers.append((b"origin", origin))
    socket = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/", headers=headers
    )
    connected, _ = await socket.connect(timeout=5)
    assert not connected
    assert reached == []
    await socket.wait()

    # The same request from the site's own origin is let through (the spy is in place).
    socket = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[*headers[:1], ORIGIN]
    )
    connected, _ = await socket.connect(timeout=5)
    assert connected and reached == ["connect"]
    await socket.disconnect()
