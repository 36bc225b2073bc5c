"""Reasoning blocks: streamed as `thinking` frames, stored apart from the answer, never sent
upstream again; content blocks of unknown types are ignored without breaking the stream."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.demo.script import Script
from tests.conftest import frames_until, give_key, joined_deltas, open_socket, receive
from tests.support.chat import new_conversation, stored
from tests.support.turns import stored_thread

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

THINKING = "The user greets me. A short friendly answer will do."


async def chat(user: Any, gateway: Any) -> tuple[Any, Any]:
    await db(give_key)(user, gateway, "sk-thinking")
    conversation = await new_conversation(user)
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    return conversation, sock


async def test_a_thinking_block_is_streamed_and_stored_apart_and_never_resent(
    alice: Any, gateway: Any
) -> None:
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(thinking=THINKING, text="Hello there!"), Script(text="Fine."))

    await sock.send_json_to({"type": "send", "content": "Hi"})
    received = await frames_until(sock, "done")
    # Thinking first, answer after, one sequence for both so a gap in either is seen.
    kinds = [f["type"] for f in received if f["type"] in ("thinking", "delta")]
    assert kinds[0] == "thinking" and kinds[-1] == "delta"
    assert kinds.index("delta") > max(i for i, k in enumerate(kinds) if k == "thinking")
    seqs = [f["seq"] for f in received if f["type"] in ("thinking", "delta")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert joined_deltas(received, "thinking") == THINKING
    assert joined_deltas(received) == "Hello there!"
    done = received[-1]
    assert (done["status"], done["content"], done["thinking"]) == (
        "complete",
        "Hello there!",
        THINKING,
    )
    assert THINKING not in done["html"]

    _, reply = await stored(conversation)
    assert (reply.content, reply.thinking) == ("Hello there!", THINKING)

    await sock.send_json_to({"type": "send", "content": "How are you?"})
    await frames_until(sock, "done")
    await sock.disconnect()
    replies = [r for r in gateway.requests if r.body.get("stream")]
    assert replies[-1].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there!"},
        {"role": "user", "content": "How are you?"},
    ]


async def test_a_reconnecting_socket_gets_the_thinking_so_far(alice: Any, gateway: Any) -> None:
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(thinking=THINKING, words=400, token_delay=0.01))
    await sock.send_json_to({"type": "send", "content": "Hi"})
    await frames_until(sock, "delta")
    again = await open_socket(alice, conversation.public_id)
    state = await receive(again)
    assert state["type"] == "state" and state["generation"]["thinking"] == THINKING
    await sock.send_json_to({"type": "stop"})
    done = (await frames_until(sock, "done"))[-1]
    assert done["status"] == "stopped" and done["thinking"] == THINKING
    await sock.disconnect()
    await again.disconnect()


async def test_an_unknown_block_type_is_ignored_and_the_reply_completes(
    alice: Any, gateway: Any
) -> None:
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(unknown_block=True, thinking="Hmm.", text="Still here."))
    await sock.send_json_to({"type": "send", "content": "Hi"})
    received = await frames_until(sock, "done")
    await sock.disconnect()
    assert {f["type"] for f in received} <= {"message", "thinking", "delta", "done"}
    assert received[-1]["status"] == "complete"
    assert joined_deltas(received) == "Still here."
    _, reply = await stored(conversation)
    assert (reply.status, reply.content, reply.thinking, reply.error_code) == (
        "complete",
        "Still here.",
        "Hmm.",
        "",
    )


def test_a_stored_thinking_block_is_rendered_folded_above_the_answer(
    alice: Any, gateway: Any
) -> None:
    from conversations import services

    conversation = services.conversations.create_conversation(alice)
    stored_thread(
        conversation,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "**Hello**", "thinking": "<b>plan</b>"},
    )
    client = Client()
    client.force_login(alice)
    page = client.get(f"/c/{conversation.public_id}/").content.decode()
    # The stored messages: the <template> of messages to come (after them) is another matter.
    page = page.split('<template id="message-template">')[0]
    details = page.index('<details class="message__thinking">')
    assert '<details class="message__thinking" open' not in page
    assert details < page.index("<strong>Hello</strong>")
    # Thinking is plain text, escaped like the question.
    assert "&lt;b&gt;plan&lt;/b&gt;" in page
