"""The conversation pages: list, rename, delete, settings, and who may see them (exports:
test_exports.py)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from typing import Any
from uuid import uuid4

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import listing, pages, search, services
from conversations.demo.script import Script
from conversations.models import ApiCredential, Conversation, Message, SearchDocument
from tests.conftest import frames_until, give_key, open_socket, receive, signed_in
from tests.support.long import long_thread, thread_ids
from tests.support.turns import exchange, keyed

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _no_rate_limit(settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def sidebar(html: str) -> list[tuple[str, list[str]]]:
    """The conversation list as (day label, [conversation ids]) in page order."""
    start = html.index('<nav aria-label="Conversations"')
    nav = html[start : html.index("</nav>", start)]
    return list_groups(nav)


def list_groups(html: str) -> list[tuple[str, list[str]]]:
    groups = []
    for label, body in re.findall(
        r'<section [^>]*data-label="([^"]*)"[^>]*>(.*?)</section>', html, re.S
    ):
        groups.append((unescape(label), re.findall(r'data-conversation-id="([^"]+)"', body)))
    return groups


def load_more(html: str) -> str | None:
    link = re.search(r"<a [^>]*data-load-more[^>]*>", html)
    return unescape(re.search(r'href="([^"]+)"', link.group()).group(1)) if link else None


def conversation_at(user: Any, when: Any, title: str) -> Conversation:
    conversation = services.conversations.create_conversation(user, title=title)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    return conversation


# --- The list -----------------------------------------------------------------------------
def test_the_home_page_lists_conversations_newest_activity_first_by_day(alice):
    now = timezone.now()
    older = conversation_at(alice, now - timedelta(days=60), "older")
    month = conversation_at(alice, now - timedelta(days=20), "month")
    week = conversation_at(alice, now - timedelta(days=3), "week")
    yesterday = conversation_at(alice, now - timedelta(days=1), "yesterday")
    today_early = conversation_at(alice, now - timedelta(seconds=2), "today early")
    today_late = conversation_at(alice, now - timedelta(seconds=1), "today late")

    response = signed_in(alice).get("/")
    assert response.status_code == 200
    assert sidebar(response.content.decode()) == [
        ("Today", [str(today_late.public_id), str(today_early.public_id)]),
        ("Yesterday", [str(yesterday.public_id)]),
        ("Previous 7 days", [str(week.public_id)]),
        ("Previous 30 days", [str(month.public_id)]),
        ("Older", [str(older.public_id)]),
    ]


def test_new_activity_moves_a_conversation_to_the_top(alice):
    keyed(alice)
    first = conversation_at(alice, timezone.now() - timedelta(days=2), "first")
    second = conversation_at(alice, timezone.now() - timedelta(days=1), "second")
    exchange(alice, first, "back to this one", "ok")
    assert sidebar(signed_in(alice).get("/").content.decode()) == [
        ("Today", [str(first.public_id)]),
        ("Yesterday", [str(second.public_id)]),
    ]


def test_the_list_shows_only_ones_own_conversations(alice, bob):
    services.conversations.create_conversation(bob, title="Bob's secret")
    mine = services.conversations.create_conversation(alice, title="Mine")
    page = signed_in(alice).get("/").content.decode()
    assert sidebar(page) == [("Today", [str(mine.public_id)])]
    assert "Bob" not in page


def test_an_empty_list_says_how_to_start(alice):
    page = signed_in(alice).get("/").content.decode()
    assert "No conversations yet" in page
    assert load_more(page) is None


def test_load_more_pages_through_every_conversation_once(alice):
    Conversation.objects.bulk_create(
        [Conversation(owner=alice, title=f"c{i:03}") for i in range(120)]
    )
    # Ten conversations share each timestamp, over twelve days: ties are broken by id.
    now = timezone.now()
    rows = list(Conversation.objects.filter(owner=alice).order_by("pk"))
    for hour in range(12):
        ids = [c.pk for c in rows[hour * 10 : hour * 10 + 10]]
        Conversation.objects.filter(pk__in=ids).update(updated_at=now - timedelta(days=11 - hour))
    expected = [
        str(c.public_id)
        for c in Conversation.objects.filter(owner=alice).order_by("-updated_at", "-pk")
    ]

    client = signed_in(alice)
    page = client.get("/").content.decode()
    seen = [i for _, ids in sidebar(page) for i in ids]
    pages = 1
    link = load_more(page)
    while link is not None:
        assert link.startswith("/conversations/?cursor=")
        response = client.get(link)
        assert response.status_code == 200
        fragment = response.content.decode()
        assert "<nav" not in fragment and "<html" not in fragment
        seen += [i for _, ids in list_groups(fragment) for i in ids]
        link = load_more(fragment)
        pages += 1
    assert pages == 3
    assert seen == expected


def test_a_page_continues_the_day_group_of_the_one_before(alice):
    Conversation.objects.bulk_create([Conversation(owner=alice, title=f"c{i}") for i in range(60)])
    client = signed_in(alice)
    page = client.get("/").content.decode()
    fragment = client.get(load_more(page)).content.decode()
    # Same label: the page's script appends these to the last group instead of a new heading.
    assert [label for label, _ in sidebar(page)] == ["Today"]
    assert [(label, len(ids)) for label, ids in list_groups(fragment)] == [("Today", 10)]


def test_a_hand_made_cursor_answers(alice):
    services.conversations.create_conversation(alice, title="x")
    client = signed_in(alice)
    for cursor in ["", "nonsense", "9999-12-31T23:59:59-12:00~1", "0001-01-01T00:00:00+14:00~1"]:
        response = client.get("/conversations/", {"cursor": cursor})
        assert response.status_code == 200, cursor


def test_the_page_marks_the_open_conversation(alice):
    other = services.conversations.create_conversation(alice, title="other")
    current = services.conversations.create_conversation(alice, title="current")
    page = signed_in(alice).get(f"/c/{current.public_id}/").content.decode()
    assert f'data-conversation-id="{current.public_id}" aria-current="page"' in page
    assert f'data-conversation-id="{other.public_id}" aria-current' not in page


# --- Rename -------------------------------------------------------------------------------
def test_rename_from_the_form(alice):
    conversation = services.conversations.create_conversation(alice, title="Old")
    response = signed_in(alice).post(
        f"/c/{conversation.public_id}/rename/", {"title": "  A   new\tname "}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.public_id}/"
    conversation.refresh_from_db()
    assert conversation.title == "A new name"
    assert conversation.title_is_custom
    assert [h.conversation for h in search.search(alice.pk, "new name")] == [conversation]


def test_rename_as_json(alice):
    conversation = services.conversations.create_conversation(alice, title="Old")
    response = signed_in(alice).post(
        f"/c/{conversation.public_id}/rename/",
        {"title": "Trip to Kyoto"},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"title": "Trip to Kyoto"}
    conversation.refresh_from_db()
    assert conversation.title == "Trip to Kyoto"


def test_rename_accepts_two_hundred_characters(alice):
    conversation = services.conversations.create_conversation(alice, title="Old")
    signed_in(alice).post(f"/c/{conversation.public_id}/rename/", {"title": "é" * 200})
    conversation.refresh_from_db()
    assert conversation.title == "é" * 200


@pytest.mark.parametrize(
    ("title", "error"),
    [
        pytest.param("", "A title cannot be empty.", id="empty"),
        pytest.param(" \t\n ", "A title cannot be empty.", id="whitespace"),
        pytest.param("x" * 201, "A title can have at most 200 characters.", id="201-chars"),
        pytest.param(None, "A title cannot be empty.", id="missing"),
    ],
)
def test_rename_refuses_bad_titles_and_changes_nothing(alice, title, error):
    conversation = services.conversations.create_conversation(alice, title="Keep me")
    url = f"/c/{conversation.public_id}/rename/"
    data = {} if title is None else {"title": title}
    client = signed_in(alice)

    response = client.post(url, data)
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(rf'role="alert"[^>]*>\s*{re.escape(error)}', page)
    # The page is still the conversation, with its title.
    assert re.search(r"<h1[^>]*>Keep me</h1>", page)

    response = client.post(url, data, headers={"accept": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"errors": [error]}

    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_is_custom) == ("Keep me", False)


def test_rename_is_post_only(alice):
    conversation = services.conversations.create_conversation(alice, title="Old")
    assert signed_in(alice).get(f"/c/{conversation.public_id}/rename/").status_code == 405


# --- Delete -------------------------------------------------------------------------------
def test_delete_asks_first(alice):
    conversation = services.conversations.create_conversation(alice, title="Precious")
    response = signed_in(alice).get(f"/c/{conversation.public_id}/delete/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Delete this conversation?" in page
    assert "“Precious” and all its messages will be deleted" in page
    assert re.search(
        r'<form method="post"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken"', page
    )
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_delete_removes_the_conversation_its_messages_and_its_index(alice):
    keyed(alice)
    doomed = services.conversations.create_conversation(alice)
    exchange(alice, doomed, "the doomed question", "the doomed answer")
    kept = services.conversations.create_conversation(alice)
    exchange(alice, kept, "the kept question", "the kept answer")
    assert SearchDocument.objects.filter(conversation=doomed).count() == 3  # title + 2

    response = signed_in(alice).post(f"/c/{doomed.public_id}/delete/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert not Message.objects.filter(conversation_id=doomed.pk).exists()
    assert not SearchDocument.objects.filter(conversation_id=doomed.pk).exists()
    assert [h.conversation for h in search.search(alice.pk, "question")] == [kept]
    assert Message.objects.filter(conversation=kept).count() == 2
    assert SearchDocument.objects.filter(conversation=kept).count() == 3


@pytest.mark.django_db(transaction=True)
async def test_a_tab_left_open_on_a_deleted_conversation_is_told_it_is_gone(alice, gateway):
    await db(give_key)(alice, gateway, "sk-delete-open")
    conversation = await db(services.conversations.create_conversation)(alice, title="Doomed")
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    client = AsyncClient()
    await client.aforce_login(alice)
    assert (await client.post(f"/c/{conversation.public_id}/delete/")).status_code == 302
    assert await receive(sock, skip=()) == {"type": "deleted"}

    await sock.send_json_to({"type": "send", "content": "anyone there?"})
    output = await sock.receive_output(timeout=5)
    # Either answer is fine: a refusal, or the close code of a conversation that is not there.
    if output["type"] == "websocket.send":
        assert json.loads(output["text"])["type"] == "error"
    else:
        assert output == {"type": "websocket.close", "code": 4404}
    await sock.disconnect()
    assert not await Message.objects.aexists()


# --- Settings -----------------------------------------------------------------------------
def with_models(user: Any, *models: str) -> None:
    services.credentials.set_api_key(
        user, key="sk-settings", base_url="http://127.0.0.1:9", model=models[0]
    )
    ApiCredential.objects.filter(user=user).update(allowed_models="\n".join(models))


VALID = {
    "system_prompt": "Answer in French.",
    "model": "hy3-large",
    "temperature": "0.2",
    "top_p": "0.8",
    "max_tokens": "512",
}


def test_settings_form_offers_the_credentials_models(alice):
    with_models(alice, "hy3-preview", "hy3-large")
    conversation = services.conversations.create_conversation(alice)
    response = signed_in(alice).get(f"/c/{conversation.public_id}/settings/")
    assert response.status_code == 200
    page = response.content.decode()
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options == ["", "hy3-preview", "hy3-large"]
    for name in ("system_prompt", "model", "temperature", "top_p", "max_tokens"):
        assert f'<label for="id_{name}">' in page, name


def test_settings_are_saved(alice):
    with_models(alice, "hy3-preview", "hy3-large")
    conversation = services.conversations.create_conversation(alice)
    response = signed_in(alice).post(f"/c/{conversation.public_id}/settings/", VALID)
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.public_id}/"
    conversation.refresh_from_db()
    assert (
        conversation.system_prompt,
        conversation.model,
        conversation.temperature,
        conversation.top_p,
        conversation.max_tokens,
    ) == ("Answer in French.", "hy3-large", 0.2, 0.8, 512)


def test_empty_settings_mean_the_defaults(alice):
    with_models(alice, "hy3-preview")
    conversation = services.conversations.create_conversation(alice)
    Conversation.objects.filter(pk=conversation.pk).update(
        system_prompt="x", model="hy3-preview", temperature=0.5, top_p=0.5, max_tokens=9
    )
    empty = dict.fromkeys(VALID, "")
    assert signed_in(alice).post(f"/c/{conversation.public_id}/settings/", empty).status_code == 302
    conversation.refresh_from_db()
    assert (
        conversation.system_prompt,
        conversation.model,
        conversation.temperature,
        conversation.top_p,
        conversation.max_tokens,
    ) == ("", "", None, None, None)


def test_settings_accept_the_bounds(alice):
    with_models(alice, "hy3-preview", "hy3-large")
    conversation = services.conversations.create_conversation(alice)
    limit = django_settings.CHAT_MAX_TOKENS_LIMIT
    for values in (
        {"temperature": "0", "top_p": "0", "max_tokens": "1"},
        {"temperature": "1", "top_p": "1", "max_tokens": str(limit)},
    ):
        response = signed_in(alice).post(
            f"/c/{conversation.public_id}/settings/", {**VALID, **values}
        )
        assert response.status_code == 302, values
        conversation.refresh_from_db()
        assert conversation.max_tokens == int(values["max_tokens"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "-0.1"),
        ("temperature", "1.01"),
        ("temperature", "hot"),
        ("temperature", "nan"),
        ("top_p", "1.5"),
        ("top_p", "-1"),
        ("max_tokens", "0"),
        ("max_tokens", "-5"),
        ("max_tokens", "LIMIT+1"),
        ("max_tokens", "1.5"),
        ("model", "someone-elses-model"),
    ],
)
def test_settings_refuse_out_of_range_values_and_change_nothing(alice, field, value):
    with_models(alice, "hy3-preview", "hy3-large")
    conversation = services.conversations.create_conversation(alice)
    before = Conversation.objects.filter(pk=conversation.pk).values().get()
    if value == "LIMIT+1":
        value = str(django_settings.CHAT_MAX_TOKENS_LIMIT + 1)

    response = signed_in(alice).post(
        f"/c/{conversation.public_id}/settings/", {**VALID, field: value}
    )
    assert response.status_code == 400
    page = response.content.decode()
    errors = re.findall(r'<div class="field field--error">\s*<label for="id_(\w+)">', page)
    assert errors == [field]
    assert re.search(r'<p class="field__error" role="alert">[^<]+</p>', page)
    # The form keeps what was typed, to correct it.
    assert f'value="{value}"' in page or field == "model"
    assert Conversation.objects.filter(pk=conversation.pk).values().get() == before


def test_a_model_chosen_earlier_stays_selectable(alice):
    with_models(alice, "hy3-preview")
    conversation = services.conversations.create_conversation(alice)
    Conversation.objects.filter(pk=conversation.pk).update(model="retired-model")
    client = signed_in(alice)
    page = client.get(f"/c/{conversation.public_id}/settings/").content.decode()
    assert '<option value="retired-model" selected>' in page
    response = client.post(
        f"/c/{conversation.public_id}/settings/", {**VALID, "model": "retired-model"}
    )
    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_changed_settings_shape_the_next_upstream_request(alice, gateway):
    await db(give_key)(alice, gateway, "sk-settings-live", model="hy3-preview")
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview\nhy3-large")
    conversation = await db(services.conversations.create_conversation)(alice, title="Settings")
    client = AsyncClient()
    await client.aforce_login(alice)
    gateway.enqueue(Script(text="Before."), Script(text="After."))
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"

    await sock.send_json_to({"type": "send", "content": "first"})
    await frames_until(sock, "done")
    before = gateway.requests[-1].body
    assert before["model"] == "hy3-preview"
    assert before["max_tokens"] == django_settings.CHAT_DEFAULT_MAX_TOKENS
    assert "system" not in before and "temperature" not in before and "top_p" not in before

    await sock.disconnect()

    # As in the browser: the settings page, then back to the chat with a new socket.
    response = await client.post(f"/c/{conversation.public_id}/settings/", VALID)
    assert response.status_code == 302
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    await sock.send_json_to({"type": "send", "content": "second"})
    done = (await frames_until(sock, "done"))[-1]
    await sock.disconnect()

    after = gateway.requests[-1].body
    assert after["system"] == "Answer in French."
    assert after["model"] == "hy3-large"
    assert (after["temperature"], after["top_p"], after["max_tokens"]) == (0.2, 0.8, 512)
    assert done["model"] == "hy3-large"


@pytest.mark.django_db(transaction=True)
async def test_settings_changed_while_a_socket_is_open_apply_to_its_next_turn(alice, gateway):
    await db(give_key)(alice, gateway, "sk-settings-open", model="hy3-preview")
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview\nhy3-large")
    conversation = await db(services.conversations.create_conversation)(alice, title="Settings")
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    client = AsyncClient()
    await client.aforce_login(alice)
    assert (await client.post(f"/c/{conversation.public_id}/settings/", VALID)).status_code == 302

    gateway.enqueue(Script(text="After."))
    await sock.send_json_to({"type": "send", "content": "question"})
    await frames_until(sock, "done")
    await sock.disconnect()
    body = gateway.requests[-1].body
    assert (body.get("system"), body["model"], body["max_tokens"]) == (
        "Answer in French.",
        "hy3-large",
        512,
    )


# --- Who may see what ---------------------------------------------------------------------
def conversation_urls(public_id: Any) -> list[tuple[str, str]]:
    return [
        ("get", f"/c/{public_id}/"),
        ("get", f"/c/{public_id}/messages/"),
        ("post", f"/c/{public_id}/rename/"),
        ("get", f"/c/{public_id}/delete/"),
        ("post", f"/c/{public_id}/delete/"),
        ("get", f"/c/{public_id}/settings/"),
        ("post", f"/c/{public_id}/settings/"),
        ("get", f"/c/{public_id}/export.md"),
        ("get", f"/c/{public_id}/export.json"),
    ]


def test_another_users_conversation_is_not_found_on_every_url(alice, bob):
    keyed(alice)
    conversation = services.conversations.create_conversation(alice, title="Alice only")
    exchange(alice, conversation, "private question", "private answer")
    before = list(Message.objects.values())
    client = signed_in(bob)
    for method, url in conversation_urls(conversation.public_id):
        data = {"title": "Bob was here", **VALID} if method == "post" else {}
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url)
        assert b"private" not in response.content and b"Alice only" not in response.content
    conversation.refresh_from_db()
    assert conversation.title == "Alice only" and conversation.system_prompt == ""
    assert list(Message.objects.values()) == before


def test_a_missing_conversation_is_not_found_either(alice):
    client = signed_in(alice)
    for method, url in conversation_urls(uuid4()):
        assert getattr(client, method)(url).status_code == 404, (method, url)


def test_anonymous_visitors_are_sent_to_sign_in(alice):
    conversation = services.conversations.create_conversation(alice)
    urls = [("get", "/"), ("get", "/conversations/"), ("get", "/search/?q=x"), ("post", "/c/")]
    for method, url in urls + conversation_urls(conversation.public_id):
        response = getattr(Client(), method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith("/accounts/login/?next="), (method, url)
    assert Conversation.objects.count() == 1


def test_posts_need_the_csrf_token(alice):
    conversation = services.conversations.create_conversation(alice, title="Guarded")
    client = signed_in(alice, enforce_csrf_checks=True)
    posts = [
        (f"/c/{conversation.public_id}/rename/", {"title": "Forged"}),
        (f"/c/{conversation.public_id}/settings/", {"system_prompt": "Forged"}),
        (f"/c/{conversation.public_id}/delete/", {}),
        ("/c/", {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
        assert client.post(url, data, headers={"accept": "application/json"}).status_code == 403
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt) == ("Guarded", "")
    assert Conversation.objects.count() == 1

    # With the token of the page, the same request goes through.
    page = client.get(f"/c/{conversation.public_id}/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        f"/c/{conversation.public_id}/rename/", {"title": "Renamed", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"


# --- Queries ------------------------------------------------------------------------------
def bulk_conversations(user: Any, count: int, word: str = "heron") -> None:
    """`count` conversations of one exchange each, indexed for search, made in bulk."""
    conversations = Conversation.objects.bulk_create(
        [Conversation(owner=user, title=f"{word} topic {i}") for i in range(count)]
    )
    messages = Message.objects.bulk_create(
        [
            Message(conversation=c, role=role, content=f"{role} says {word} number {i}")
            for i, c in enumerate(conversations)
            for role in (Message.Role.USER, Message.Role.ASSISTANT)
        ]
    )
    # On SQLite the FTS5 triggers fire for these inserts too; PostgreSQL computes the vector.
    SearchDocument.objects.bulk_create(
        [
            SearchDocument(owner=user, conversation=c, body=search.segment(c.title))
            for c in conversations
        ]
        + [
            SearchDocument(
                owner=user,
                conversation_id=m.conversation_id,
                message=m,
                body=search.segment(m.content),
            )
            for m in messages
        ]
    )


def count_queries(client: Client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.content.decode()


@pytest.mark.parametrize("url", ["/", "/conversations/"])
def test_the_list_uses_a_constant_number_of_queries(alice, url):
    keyed(alice)
    client = signed_in(alice)
    bulk_conversations(alice, 10)
    client.get(url)  # the session and the user, loaded once like on any later request
    few, page = count_queries(client, url)
    bulk_conversations(alice, 990)
    many, page_many = count_queries(client, url)
    assert few == many <= 8
    assert page.count("data-conversation-id=") == 10
    assert page_many.count("data-conversation-id=") == listing.PAGE_SIZE
    assert load_more(page) is None and load_more(page_many) is not None


@pytest.mark.parametrize("url", ["/search/?q=heron", "/search/?q=heron&fragment=1"])
def test_search_uses_a_constant_number_of_queries(alice, url):
    keyed(alice)
    client = signed_in(alice)
    bulk_conversations(alice, 10)
    client.get(url)
    few, page = count_queries(client, url)
    bulk_conversations(alice, 990)
    many, page_many = count_queries(client, url)
    assert few == many <= 8
    assert page.count('class="result"') == 10
    assert page_many.count('class="result"') == search.MAX_CONVERSATIONS


def test_the_chat_page_uses_a_constant_number_of_queries(alice):
    keyed(alice)
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(alice)
    exchange(alice, conversation, "first", "reply")
    client.get(f"/c/{conversation.public_id}/")
    few, _ = count_queries(client, f"/c/{conversation.public_id}/")
    # 200 more on the shown thread, each following the one before.
    conversation.refresh_from_db()
    parent = conversation.shown_leaf
    for i in range(200):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"m{i}"
        )
    Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=parent)
    many, page = count_queries(client, f"/c/{conversation.public_id}/")
    assert few == many
    # The newest page of the thread (the page's <template> of messages to come follows it),
    # and where the older ones are fetched from.
    shown = page.split('<template id="message-template">')[0]
    assert shown.count("<article ") == pages.PAGE_SIZE
    assert f'data-cursor="{parent.public_id}"' not in shown
    assert 'data-history="before"' in shown


def test_opening_a_conversation_at_a_version_shows_its_thread_then_forgets_the_parameter(
    alice, bob
):
    keyed(alice)
    conversation = services.conversations.create_conversation(alice)
    first = exchange(alice, conversation, "Q", "the kestrel answer")
    start = services.turns.regenerate(alice, conversation, first.public_id)
    services.replies.finish_reply(
        start.plan, services.replies.Outcome(status="complete", content="the other answer")
    )
    client = signed_in(alice)
    url = f"/c/{conversation.public_id}/"
    assert "the other answer" in client.get(url).content.decode()

    # A search hit links here: the version that matched is shown.
    response = client.get(url, {"at": str(first.public_id)})
    assert response.status_code == 302
    assert response["Location"] == f"{url}?message={first.public_id}#m-{first.public_id}"
    page = client.get(url).content.decode()
    assert "the kestrel answer" in page and "the other answer" not in page
    assert "1 / 2" in page

    # Not a message of this conversation (another person's, or no id): the page as it is.
    keyed(bob)
    theirs = exchange(bob, services.conversations.create_conversation(bob), "b", "bob's")
    for at in (str(theirs.public_id), "not-a-uuid"):
        response = client.get(url, {"at": at})
        assert response.status_code == 200
        assert "the kestrel answer" in response.content.decode()


def test_the_model_select_lists_the_keys_models_and_changes_the_next_turns_model(alice, bob):
    services.credentials.set_api_key(
        alice,
        key="sk-models",
        base_url="http://127.0.0.1:9",
        model="hy3-preview",
        allowed_models=["hy3-preview", "hunyuan-t1"],
    )
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(alice)
    page = client.get(f"/c/{conversation.public_id}/").content.decode()
    options = re.search(r'<select id="model-select" name="model"[^>]*>(.*?)</select>', page, re.S)
    assert re.findall(r'<option value="([^"]+)"', options.group(1)) == ["hy3-preview", "hunyuan-t1"]
    assert '<label for="model-select" class="model-picker__label">Model</label>' in page

    url = f"/c/{conversation.public_id}/model/"
    chosen = client.post(url, {"model": "hunyuan-t1"}, HTTP_ACCEPT="application/json")
    assert chosen.json() == {"model": "hunyuan-t1"}
    conversation.refresh_from_db()
    assert conversation.model == "hunyuan-t1"

    refused = client.post(url, {"model": "gpt-9"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert "hy3-preview, hunyuan-t1" in refused.json()["error"]["message"]
    conversation.refresh_from_db()
    assert conversation.model == "hunyuan-t1"
    # Someone else's conversation: as missing.
    assert signed_in(bob).post(url, {"model": "hy3-preview"}).status_code == 404


def models_key(user: Any) -> None:
    services.credentials.set_api_key(
        user,
        key="sk-models",
        base_url="http://127.0.0.1:9",
        model="hy3-preview",
        allowed_models=["hy3-preview", "hunyuan-t1"],
    )


def test_the_home_pages_first_send_creates_the_conversation_as_json(alice):
    models_key(alice)
    client = signed_in(alice)
    home = client.get("/").content.decode()
    # The home page offers the key's models, its default chosen.
    assert re.search(r'<option value="hy3-preview" selected>', home)
    response = client.post("/c/", {"model": "hunyuan-t1"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 201
    body = response.json()
    conversation = Conversation.objects.get(owner=alice)
    assert conversation.model == "hunyuan-t1"
    public_id = str(conversation.public_id)
    assert body["id"] == public_id and body["url"] == f"/c/{public_id}/"
    assert body["messages_url"] == f"/c/{public_id}/messages/"
    assert body["attachments_url"] == f"/c/{public_id}/attachments/"
    # The page swaps in the server's header and list for it: the menu, the model chosen,
    # the new conversation marked in the list.
    assert 'id="conversation-menu"' in body["header_html"]
    assert '<option value="hunyuan-t1" selected>' in body["header_html"]
    assert list_groups(body["list_html"]) == [("Today", [public_id])]
    assert 'aria-current="page"' in body["list_html"]


def test_a_first_send_with_a_model_the_key_does_not_allow_creates_nothing(alice):
    models_key(alice)
    client = signed_in(alice)
    response = client.post("/c/", {"model": "gpt-9"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert client.post("/c/", {"model": "gpt-9"}).status_code == 400
    assert not Conversation.objects.filter(owner=alice).exists()
    # A plain post (no model) still creates and redirects, as before.
    response = client.post("/c/")
    assert response.status_code == 302 and response["Location"].startswith("/c/")


def test_pinned_conversations_stay_on_top_of_the_list(alice):
    now = timezone.now()
    old = conversation_at(alice, now - timedelta(days=40), "old but pinned")
    new = conversation_at(alice, now, "new")
    client = signed_in(alice)
    response = client.post(
        f"/c/{old.public_id}/pin/", {"pinned": "1"}, HTTP_ACCEPT="application/json"
    )
    assert response.json()["pinned"] is True
    assert list_groups(response.json()["list_html"]) == [
        ("Pinned", [str(old.public_id)]),
        ("Today", [str(new.public_id)]),
    ]
    assert sidebar(client.get("/").content.decode())[0] == ("Pinned", [str(old.public_id)])
    # Pinning is not activity: the conversation keeps its place in time when unpinned.
    old.refresh_from_db()
    assert old.updated_at == now - timedelta(days=40)
    page = client.get(f"/c/{old.public_id}/").content.decode()
    assert ">Unpin<" in page
    client.post(f"/c/{old.public_id}/pin/", {"pinned": "0"})
    assert [label for label, _ in sidebar(client.get("/").content.decode())] == [
        "Today",
        "Older",
    ]


def test_archived_conversations_leave_the_list_and_are_found_under_archived_and_by_search(
    alice,
):
    kept = services.conversations.create_conversation(alice, title="kept")
    gone = services.conversations.create_conversation(alice)
    services.conversations.rename_conversation(gone, "quarterly kestrel report")  # indexed
    client = signed_in(alice)
    client.post(f"/c/{gone.public_id}/pin/", {"pinned": "1"})
    response = client.post(
        f"/c/{gone.public_id}/archive/", {"archived": "1"}, HTTP_ACCEPT="application/json"
    )
    assert response.json() == {
        "pinned": False,  # archiving unpins
        "archived": True,
        "list_html": response.json()["list_html"],
    }
    assert list_groups(response.json()["list_html"]) == [("Today", [str(kept.public_id)])]
    assert sidebar(client.get("/").content.decode()) == [("Today", [str(kept.public_id)])]
    page = client.get("/archived/").content.decode()
    archived = page[page.index('<div class="page-body">') :]
    assert f'href="/c/{gone.public_id}/"' in archived and f"/c/{kept.public_id}/" not in archived
    assert "quarterly kestrel report" in archived
    hits = client.get("/search/", {"q": "kestrel"}).content.decode()
    assert "quarterly kestrel report" in hits
    # Still opens by its URL, and comes back to the list from the Archived page.
    assert ">Unarchive<" in client.get(f"/c/{gone.public_id}/").content.decode()
    assert client.post(f"/c/{gone.public_id}/archive/", {"archived": "0"}).status_code == 302
    assert {c for _, ids in sidebar(client.get("/").content.decode()) for c in ids} == {
        str(kept.public_id),
        str(gone.public_id),
    }
    assert "Nothing archived" in client.get("/archived/").content.decode()


@pytest.mark.parametrize("value", ["", "yes", "2", "true"])
def test_pin_and_archive_refuse_anything_but_0_or_1_and_change_nothing(alice, value):
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(alice)
    assert client.post(f"/c/{conversation.public_id}/pin/", {"pinned": value}).status_code == 400
    assert (
        client.post(f"/c/{conversation.public_id}/archive/", {"archived": value}).status_code == 400
    )
    conversation.refresh_from_db()
    assert conversation.pinned_at is None and conversation.archived_at is None


def test_pin_and_archive_are_the_owners_only(alice, bob):
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(bob)
    assert client.post(f"/c/{conversation.public_id}/pin/", {"pinned": "1"}).status_code == 404
    assert (
        client.post(f"/c/{conversation.public_id}/archive/", {"archived": "1"}).status_code == 404
    )
    assert client.get(f"/c/{conversation.public_id}/pin/").status_code == 405


def test_the_settings_dialog_gets_its_form_back_with_errors_and_nothing_is_stored(alice):
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(alice)
    url = f"/c/{conversation.public_id}/settings/"
    refused = client.post(
        url, {"temperature": "1.5", "system_prompt": "be brief"}, HTTP_ACCEPT="application/json"
    )
    assert refused.status_code == 400
    form = refused.json()["form_html"]
    assert 'class="field__error" role="alert"' in form and "1.5" in form
    assert "data-dialog-close" in form  # the dialog's Cancel, not the page's link back
    conversation.refresh_from_db()
    assert conversation.temperature is None and conversation.system_prompt == ""
    saved = client.post(
        url, {"temperature": "0.5", "system_prompt": "be brief"}, HTTP_ACCEPT="application/json"
    )
    assert saved.status_code == 200
    conversation.refresh_from_db()
    assert conversation.temperature == 0.5 and conversation.system_prompt == "be brief"


# --- The message fragment and pages of a long thread (issue 22) ---------------------------


def articles(html: str) -> list[str]:
    """The message ids of the articles in a page or fragment, in order (the chat page's
    <template> of messages to come left out)."""
    shown = html.split('<template id="message-template">')[0]
    return re.findall(r'<article id="m-([0-9a-f-]{36})"', shown)


def test_the_chat_page_opens_with_the_newest_page_and_a_way_up(alice):
    conversation = long_thread(alice, 300)
    every = thread_ids(conversation)
    page = signed_in(alice).get(f"/c/{conversation.public_id}/").content.decode()

    assert articles(page) == every[-pages.PAGE_SIZE :]
    assert f'data-history="before" data-cursor="{every[-pages.PAGE_SIZE]}"' in page
    assert 'data-history="after"' not in page


def test_the_fragment_pages_up_to_the_first_message(alice):
    conversation = long_thread(alice, 100)
    every = thread_ids(conversation)
    client = signed_in(alice)
    url = f"/c/{conversation.public_id}/messages/"
    seen, cursor = [], every[-pages.PAGE_SIZE]
    while cursor:
        response = client.get(url, {"before": cursor})
        assert response.status_code == 200 and response["X-Thread-Part"] == "before"
        html = response.content.decode()
        seen = articles(html) + seen
        found = re.search(r'data-history="before" data-cursor="([0-9a-f-]{36})"', html)
        cursor = found.group(1) if found else None

    assert seen + every[-pages.PAGE_SIZE :] == every


def test_the_fragment_answers_only_what_a_reconnecting_page_lacks(alice):
    conversation = long_thread(alice, 100)
    every = thread_ids(conversation)
    url = f"/c/{conversation.public_id}/messages/"
    client = signed_in(alice)

    tail = client.get(url, {"since": every[-3]})
    assert tail["X-Thread-Part"] == "since"
    assert articles(tail.content.decode()) == every[-2:]
    # Too far behind (or another thread shown): the newest page, for the page to start over.
    newest = client.get(url, {"since": every[3]})
    assert newest["X-Thread-Part"] == "newest"
    assert articles(newest.content.decode()) == every[-pages.PAGE_SIZE :]


def test_a_search_hit_opens_the_thread_around_it(alice):
    conversation = long_thread(alice, 400)
    every = thread_ids(conversation)
    client = signed_in(alice)
    hit = every[100]

    response = client.get(f"/c/{conversation.public_id}/", {"at": hit})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()

    shown = articles(page)
    assert hit in shown and len(shown) == pages.PAGE_SIZE
    start = every.index(shown[0])
    assert shown == every[start : start + len(shown)]
    assert f'data-history="after" data-cursor="{shown[-1]}"' in page
    after = client.get(f"/c/{conversation.public_id}/messages/", {"after": shown[-1]})
    assert articles(after.content.decode())[0] == every[every.index(shown[-1]) + 1]


def test_the_fragment_refuses_bad_cursors_and_other_peoples_messages(alice, bob):
    mine, theirs = long_thread(alice, 10), long_thread(bob, 10)
    url = f"/c/{mine.public_id}/messages/"
    client = signed_in(alice)

    assert client.get(url, {"before": "nope"}).status_code == 400
    assert (
        client.get(url, {"before": thread_ids(mine)[1], "after": thread_ids(mine)[1]}).status_code
        == 400
    )
    assert client.get(url, {"before": thread_ids(theirs)[5]}).status_code == 404
    assert client.get(url, {"after": thread_ids(theirs)[5]}).status_code == 404
    assert signed_in(bob).get(url).status_code == 404
    # A link to a message not shown (another person's): the conversation as it is.
    page = client.get(f"/c/{mine.public_id}/", {"message": thread_ids(theirs)[5]})
    assert page.status_code == 200 and articles(page.content.decode()) == thread_ids(mine)
