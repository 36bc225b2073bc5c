"""Conversation titles: the question's first words at once, a generated title after the first
reply, and a person's own title is never replaced."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from conversations import generation, services, titles
from conversations.demo.script import Script
from conversations.models import Conversation
from tests.conftest import frames_until, give_key, open_socket, receive

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

QUESTION = "How do I keep sourdough starter alive during a long holiday?"


async def first_exchange(
    user, gateway, conversation: Conversation, reply: str = "Feed it."
) -> None:
    gateway.enqueue(Script(text=reply))
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    await sock.send_json_to({"type": "send", "content": QUESTION})
    await frames_until(sock, "done")
    # The title is asked for after the reply, inside the same generation task.
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()


async def title_of(conversation: Conversation) -> tuple[str, bool]:
    await conversation.arefresh_from_db()
    return conversation.title, conversation.title_is_custom


async def test_the_first_exchange_names_the_conversation(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles", model="hy3-preview")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(text="Feed it before you leave."))
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    await sock.send_json_to({"type": "send", "content": QUESTION})

    # First the question's first words, then the generated title, both as frames.
    titles = []
    while len(titles) < 2:
        frame = await receive(sock, skip=())
        if frame["type"] == "conversation":
            assert frame["conversation"]["id"] == str(conversation.public_id)
            titles.append(frame["conversation"]["title"])
    await sock.disconnect()
    assert titles == [
        services.conversations.fallback_title(QUESTION),
        "Demo: How do I keep sourdough",
    ]
    assert await title_of(conversation) == ("Demo: How do I keep sourdough", False)

    # One non-streaming request, with the same key and model, that quotes the exchange.
    [side] = gateway.side_requests
    assert not side.body.get("stream")
    assert side.headers["authorization"] == "Bearer sk-titles"
    assert side.body["model"] == "hy3-preview"
    prompt = side.body["messages"][0]["content"]
    assert QUESTION in prompt and "Feed it before you leave." in prompt


async def test_later_exchanges_keep_the_title(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    await first_exchange(alice, gateway, conversation)
    gateway.enqueue(Script(text="Second answer."))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "Another question entirely"})
    await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert len(gateway.side_requests) == 1
    assert (await title_of(conversation))[0] == "Demo: How do I keep sourdough"


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(Script(status=500), id="500"),
        pytest.param(Script(status=429, retry_after="1"), id="429"),
        pytest.param(Script(json_error_200=True), id="200-with-error-body"),
        pytest.param(Script(close_connection=True), id="connection-closed"),
        pytest.param(Script(text="   "), id="blank-title"),
    ],
)
async def test_a_failed_title_request_keeps_the_first_words(alice, gateway, script):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.side_scripts.append(script)
    await first_exchange(alice, gateway, conversation)
    assert len(gateway.side_requests) == 1
    assert await title_of(conversation) == (services.conversations.fallback_title(QUESTION), False)


async def test_a_failed_reply_asks_for_no_title(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(status=401))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": QUESTION})
    assert (await frames_until(sock, "done"))[-1]["status"] == "error"
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert gateway.side_requests == []
    assert await title_of(conversation) == (services.conversations.fallback_title(QUESTION), False)


async def test_a_renamed_conversation_is_not_named_again(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post(f"/c/{conversation.public_id}/rename/", {"title": "My bread"})
    assert response.status_code == 302
    await first_exchange(alice, gateway, conversation)
    assert gateway.side_requests == []
    assert await title_of(conversation) == ("My bread", True)


async def test_a_rename_during_the_first_reply_wins_over_the_generated_title(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(words=30, token_delay=0.02))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": QUESTION})
    await frames_until(sock, "delta")
    stored = await Conversation.objects.aget(pk=conversation.pk)
    await db(services.conversations.rename_conversation)(stored, "Renamed while writing")
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    # The title may still have been asked for; its answer is dropped.
    assert await title_of(conversation) == ("Renamed while writing", True)


async def test_a_generated_title_never_replaces_a_rename_made_after_it(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    await first_exchange(alice, gateway, conversation)
    await db(services.conversations.rename_conversation)(conversation, "Mine now")
    await db(services.conversations.set_generated_title)(conversation.pk, "Late generated title")
    assert await title_of(conversation) == ("Mine now", True)


async def test_a_rename_with_the_chat_open_survives_the_first_message(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(text="Feed it."))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    # The chat page renames in place (JSON), with its socket open.
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.post(
        f"/c/{conversation.public_id}/rename/",
        {"title": "My bread"},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200
    await sock.send_json_to({"type": "send", "content": QUESTION})
    await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert await title_of(conversation) == ("My bread", True)


async def test_a_generated_title_waits_while_turns_are_being_started(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(text="Feed it."))
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    # Another turn of this process is between "send" and stored, as in a burst of sends.
    with generation.registry.titles.starting():
        await sock.send_json_to({"type": "send", "content": QUESTION})
        await frames_until(sock, "done")
        await asyncio.sleep(0.5)
        # The reply is complete, but its title is not asked for yet.
        assert gateway.side_requests == []
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert len(gateway.side_requests) == 1
    assert (await title_of(conversation))[0] == "Demo: How do I keep sourdough"


async def test_title_requests_are_spaced_when_many_replies_end_together(monkeypatch):
    monkeypatch.setattr(titles, "TITLES_PER_SECOND", 20.0)
    now = 100.0
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))

    pacer = titles.TitlePacer(clock=lambda: now, sleep=sleep)
    for _ in range(5):  # five replies ending in the same instant
        await pacer.pace()
    # The first goes at once; the others one every 1/20 s after it.
    assert waits == [0.05, 0.1, 0.15, 0.2]


async def test_a_first_reply_regenerated_after_a_failure_names_the_conversation(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(status=401), Script(text="Feed it."))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": QUESTION})
    assert (await frames_until(sock, "done"))[-1]["status"] == "error"
    await sock.send_json_to({"type": "regenerate"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert len(gateway.side_requests) == 1
    assert await title_of(conversation) == ("Demo: How do I keep sourdough", False)


async def test_a_new_version_of_the_first_question_names_the_conversation_again(alice, gateway):
    await db(give_key)(alice, gateway, "sk-titles")
    conversation = await db(services.conversations.create_conversation)(alice)
    await first_exchange(alice, gateway, conversation)
    first = await conversation.messages.aearliest("id")
    gateway.enqueue(Script(text="Tea is best fresh."), Script(text="Sure."))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    edit = {
        "type": "edit",
        "message_id": str(first.public_id),
        "content": "Why brew green tea cool?",
    }
    await sock.send_json_to(edit)
    await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    assert await title_of(conversation) == ("Demo: Why brew green tea cool?", False)
    # A title the person chose stays, whatever the versions.
    await db(services.conversations.rename_conversation)(conversation, "Mine")
    await sock.send_json_to({**edit, "content": "Something else"})
    await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    assert len(gateway.side_requests) == 2
    assert await title_of(conversation) == ("Mine", True)
