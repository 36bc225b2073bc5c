"""Conversation exports: Markdown for people, JSON for programs, with the websocket's ids
(docs/protocol.md; DESIGN, "HTTP surface")."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from conversations import exports, services
from conversations.demo.script import Script
from conversations.models import Conversation, Message
from conversations.services.replies import Outcome
from tests.conftest import frames_until, give_key, open_socket, receive, signed_in
from tests.support.turns import exchange, keyed

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _no_rate_limit(settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def stored_conversation(user: Any) -> Conversation:
    """A conversation with two versions of a complete reply, and a failed one."""
    keyed(user)
    conversation = services.conversations.create_conversation(user)
    services.conversations.update_settings(conversation, system_prompt="Be brief.\nBe kind.")
    exchange(user, conversation, "What is **2+2**?", "It is 4.")
    again = services.turns.regenerate(user, conversation)
    assert again.plan is not None
    services.replies.finish_reply(
        again.plan,
        Outcome(
            status=Message.Status.COMPLETE,
            content="Four.",
            stop_reason="end_turn",
            model="hy3-preview",
            input_tokens=12,
            output_tokens=3,
        ),
    )
    start = services.turns.start_turn(user, conversation, "And 3+3?")
    services.replies.finish_reply(
        start.plan,
        Outcome(
            status=Message.Status.ERROR,
            content="Si",
            error_code="stream_interrupted",
            error_message="The connection was cut.",
        ),
    )
    conversation.refresh_from_db()
    return conversation


def test_the_json_export_is_the_stored_conversation(alice):
    conversation = stored_conversation(alice)
    response = signed_in(alice).get(f"/c/{conversation.public_id}/export.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="conversation-{conversation.public_id}.json"'
    )
    data = json.loads(response.content)
    assert data["conversation"]["id"] == str(conversation.public_id)
    assert data["conversation"]["title"] == "What is **2+2**?"
    assert data["conversation"]["system_prompt"] == "Be brief.\nBe kind."
    messages = list(conversation.messages.order_by("id"))
    assert len(data["messages"]) == len(messages) == 5
    for exported, m in zip(data["messages"], messages, strict=True):
        assert exported["id"] == str(m.public_id)
        assert exported["role"] == m.role
        assert exported["content"] == m.content
        assert exported["status"] == m.status
        assert exported["created_at"] == m.created_at.isoformat()
        assert exported["model"] == m.model
        assert exported["usage"] == {
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "cache_read_input_tokens": m.cache_read_input_tokens,
            "cache_creation_input_tokens": m.cache_creation_input_tokens,
        }
        assert exported["stop_reason"] == (m.stop_reason or None)
        parent = m.parent.public_id if m.parent else None
        assert exported["parent_id"] == (str(parent) if parent else None)
    assert [m["status"] for m in data["messages"]] == [
        "complete",
        "complete",
        "complete",
        "complete",
        "error",
    ]
    # Every version, with where it hangs and whether it is shown: both replies answer the
    # question, and the thread goes on from the second.
    ids = [m["id"] for m in data["messages"]]
    assert [m["parent_id"] for m in data["messages"]] == [None, ids[0], ids[0], ids[2], ids[3]]
    assert [m["active"] for m in data["messages"]] == [True, False, True, True, True]
    assert data["messages"][2]["usage"] == {
        "input_tokens": 12,
        "output_tokens": 3,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    assert data["messages"][4]["error"] == {
        "code": "stream_interrupted",
        "message": "The connection was cut.",
    }


def test_the_markdown_export_is_the_stored_conversation(alice):
    conversation = stored_conversation(alice)
    response = signed_in(alice).get(f"/c/{conversation.public_id}/export.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="conversation-{conversation.public_id}.md"'
    )
    text = response.content.decode()
    assert text.startswith("# What is **2+2**?\n\n> System prompt:\n> Be brief.\n> Be kind.\n")
    headings = re.findall(r"^## (.*)$", text, re.M)
    stamps = [f"{m.created_at:%Y-%m-%d %H:%M} UTC" for m in conversation.messages.order_by("id")]
    # The shown thread: the first reply, a previous version, is in the JSON export only.
    assert headings == [
        f"You · {stamps[0]}",
        f"Assistant (hy3-preview) · {stamps[2]} — version 2 of 2",
        f"You · {stamps[3]}",
        f"Assistant (hy3-preview) · {stamps[4]} — error",
    ]
    first, *shown = conversation.messages.order_by("id")
    for m in [first, *shown[1:]]:
        assert f"\n\n{m.content}\n\n" in text
    assert "It is 4." not in text
    assert "> Error `stream_interrupted`: The connection was cut." in text


def test_an_empty_conversation_exports(alice):
    conversation = services.conversations.create_conversation(alice)
    client = signed_in(alice)
    assert client.get(f"/c/{conversation.public_id}/export.md").content.decode() == "# New chat\n"
    data = client.get(f"/c/{conversation.public_id}/export.json").json()
    assert data["messages"] == [] and data["conversation"]["title"] == "New chat"


@pytest.mark.django_db(transaction=True)
async def test_exported_ids_are_the_websocket_ids(alice, gateway):
    await db(give_key)(alice, gateway, "sk-export", model="hy3-preview")
    conversation = await db(services.conversations.create_conversation)(alice)
    gateway.enqueue(Script(text="Hello **there**."))
    sock = await open_socket(alice, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    await sock.send_json_to({"type": "send", "content": "Hi!", "client_id": "c-1"})
    received = await frames_until(sock, "done")
    await sock.disconnect()
    question, placeholder = (f["message"] for f in received[:2])
    done = received[-1]

    client = AsyncClient()
    await client.aforce_login(alice)
    data = json.loads((await client.get(f"/c/{conversation.public_id}/export.json")).content)
    exported = data["messages"]
    assert [m["id"] for m in exported] == [question["id"], placeholder["id"]]
    assert placeholder["id"] == done["message_id"]
    assert (exported[0]["role"], exported[0]["content"]) == ("user", "Hi!")
    assert exported[1]["content"] == done["content"] == "Hello **there**."
    assert exported[1]["status"] == done["status"] == "complete"
    assert exported[1]["usage"] == done["usage"]
    assert exported[1]["model"] == done["model"] == "hy3-preview"
    assert exported[1]["stop_reason"] == done["stop_reason"] == "end_turn"


def test_a_reply_still_streaming_exports_as_far_as_it_is_stored(alice):
    keyed(alice)
    conversation = services.conversations.create_conversation(alice)
    start = services.turns.start_turn(alice, conversation, "Still there?")
    conversation.refresh_from_db()
    reply = start.assistant_message
    assert reply is not None

    data = exports.as_json(conversation)
    assert [m["id"] for m in data["messages"]] == [
        str(m.public_id) for m in conversation.messages.order_by("id")
    ]
    streaming = data["messages"][1]
    assert (streaming["status"], streaming["content"]) == ("streaming", "")
    assert streaming["error"] is None and streaming["active"] is True

    text = exports.as_markdown(conversation)
    # No system prompt, no quote of one; an empty reply is marked, not left blank.
    assert "System prompt" not in text
    heading = re.findall(r"^## (.*)$", text, re.M)[1]
    assert heading.startswith("Assistant") and heading.endswith(f"— {reply.get_status_display()}")
    assert text.endswith("_(empty)_\n")
