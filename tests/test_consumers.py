"""The conversation websocket end to end: consumer, services, generation, SDK, fake gateway."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from conversations import consumers, layers, limits, services
from conversations.demo.script import Script
from tests.conftest import (
    ORIGIN,
    frames_until,
    give_key,
    joined_deltas,
    open_socket,
    receive,
    session_cookie,
)
from tests.support.chat import new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def test_two_turns_stream_and_are_stored_with_full_history(alice, gateway):
    await db(give_key)(alice, gateway, "sk-alice-0001", model="hy3-preview")
    conversation = await new_conversation(
        alice, system_prompt="Answer briefly.", temperature=0.3, top_p=0.9, max_tokens=256
    )
    gateway.enqueue(
        Script(text="Paris is the capital of France."), Script(text="About 2.1 million people.")
    )
    socket = await open_socket(alice, conversation.public_id)
    assert await receive(socket) == {"type": "state", "generation": None}

    await socket.send_json_to({"type": "send", "content": "Capital of France?", "client_id": "c1"})
    first = await frames_until(socket, "done")
    await socket.send_json_to({"type": "send", "content": "Population?"})
    second = await frames_until(socket, "done")
    await socket.disconnect()

    # The user message and the placeholder come first, then deltas with seq 1, 2, 3, ...
    assert [f["type"] for f in first[:2]] == ["message", "message"]
    assert first[0]["message"]["role"] == "user" and first[0]["message"]["client_id"] == "c1"
    assert first[1]["message"]["status"] == "streaming"
    seqs = [f["seq"] for f in first if f["type"] == "delta"]
    assert seqs == list(range(1, len(seqs) + 1))

    messages = await stored(conversation)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert joined_deltas(first) == messages[1].content == "Paris is the capital of France."
    assert joined_deltas(second) == messages[3].content == "About 2.1 million people."
    assert first[-1]["content"] == messages[1].content
    assert first[-1]["usage"]["output_tokens"] == messages[1].output_tokens > 0
    assert messages[1].input_tokens and messages[1].stop_reason == "end_turn"
    assert messages[1].model == "hy3-preview"

    # The second request carried the first exchange, in order, and the conversation's settings.
    body = gateway.requests[1].body
    assert body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": "Population?"},
    ]
    assert body["system"] == "Answer briefly."
    assert body["model"] == "hy3-preview"
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 256)
    assert body["stream"] is True


async def test_gateway_gets_the_users_own_bearer_key_and_no_environment_credential(
    alice, gateway, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-environment")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-from-environment")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/never")
    await db(give_key)(alice, gateway, "sk-alice-secret-42")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "hello"})
    await frames_until(socket, "done")
    await socket.disconnect()

    (request,) = gateway.requests
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == "Bearer sk-alice-secret-42"
    assert request.headers["accept"] == "text/event-stream"
    assert "x-api-key" not in request.headers
    assert "environment" not in json.dumps(request.headers)


async def test_x_api_key_scheme_sends_the_anthropic_header(alice, gateway):
    await db(give_key)(alice, gateway, "sk-ant-77", scheme="x-api-key")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "hi"})
    await frames_until(socket, "done")
    await socket.disconnect()
    headers = gateway.requests[0].headers
    assert headers["x-api-key"] == "sk-ant-77"
    assert "authorization" not in headers


async def test_anonymous_socket_is_closed_with_4401(alice):
    conversation = await new_conversation(alice)
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.conftest import ORIGIN

    socket = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.public_id}/", headers=[ORIGIN]
    )
    connected, _ = await socket.connect()
    assert connected
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_missing_or_foreign_conversation_is_closed_with_4404(alice, bob):
    theirs = await new_conversation(bob)
    for public_id in (theirs.public_id, "00000000-0000-4000-8000-000000000000"):
        socket = await open_socket(alice, public_id)
        assert await socket.receive_output() == {"type": "websocket.close", "code": 4404}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "send", "content": ""}, "empty_message"),
        ({"type": "send", "content": "   \n\t "}, "empty_message"),
        ({"type": "send", "content": "x" * 32_001}, "message_too_long"),
        ({"type": "send", "content": 42}, "invalid_content"),
        ({"type": "send"}, "missing_content"),
        ({"type": "send", "content": "hi", "client_id": "no spaces allowed"}, "invalid_client_id"),
        ({"type": "teleport"}, "unknown_type"),
        (["send", "hi"], "invalid_frame"),
        ({"content": "hi"}, "unknown_type"),
    ],
)
async def test_bad_frames_get_an_error_and_change_nothing(alice, gateway, frame, code):
    await db(give_key)(alice, gateway, "sk-a")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to(frame)
    error = await receive(socket)
    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert await stored(conversation) == []
    # The connection stays usable.
    await socket.send_json_to({"type": "send", "content": "still here?"})
    assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
    await socket.disconnect()


async def test_a_refused_send_echoes_its_client_id(alice, gateway, settings, monkeypatch):
    # The page gives the refused text back to the composer: it must know which send it was.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    monkeypatch.setattr(limits, "clock", lambda: 29_000_000 * 60.0 + 30)
    await db(give_key)(alice, gateway, "sk-a")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "first", "client_id": "c-1"})
    await frames_until(socket, "done")

    await socket.send_json_to({"type": "send", "content": "second", "client_id": "c-2"})
    refused = await receive(socket)
    assert refused["type"] == "error" and refused["code"] == "rate_limited_local"
    assert refused["client_id"] == "c-2" and "message_id" not in refused
    # Refused by the protocol, before any service ran: echoed too.
    await socket.send_json_to({"type": "send", "content": 42, "client_id": "c-3"})
    refused = await receive(socket)
    assert (refused["code"], refused["client_id"]) == ("invalid_content", "c-3")
    # A refusal of a frame without one (or with an invalid one) names none.
    await socket.send_json_to({"type": "regenerate"})
    assert "client_id" not in await receive(socket)
    await socket.send_json_to({"type": "send", "content": "x", "client_id": "not valid"})
    refused = await receive(socket)
    assert refused["code"] == "invalid_client_id" and "client_id" not in refused
    await socket.disconnect()
    assert [m.content for m in await stored(conversation) if m.role == "user"] == ["first"]


async def test_non_json_and_binary_frames_get_an_error(alice, gateway):
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_to(text_data="{not json")
    assert (await receive(socket))["code"] == "invalid_json"
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await receive(socket))["code"] == "binary_not_supported"
    await socket.disconnect()


@override_settings(CHAT_MAX_FRAME_BYTES=1024)
async def test_a_frame_over_the_size_limit_is_refused(alice, gateway):
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "y" * 2000})
    assert (await receive(socket))["code"] == "frame_too_large"
    await socket.disconnect()
    assert await stored(conversation) == []


async def test_without_any_credential_the_turn_is_refused_and_nothing_is_stored(alice, gateway):
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "hello?"})
    error = await receive(socket)
    assert error["code"] == "no_api_key"
    assert "administrator" in error["message"]
    await socket.disconnect()
    assert await stored(conversation) == []
    assert gateway.requests == []


async def test_a_resend_with_the_same_client_id_is_stored_once(alice, gateway):
    await db(give_key)(alice, gateway, "sk-a")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "once", "client_id": "abc-1"})
    await frames_until(socket, "done")
    await socket.send_json_to({"type": "send", "content": "once", "client_id": "abc-1"})
    echo = await receive(socket)
    assert echo["type"] == "message" and echo["message"]["client_id"] == "abc-1"
    await socket.disconnect()
    assert [m.role for m in await stored(conversation)] == ["user", "assistant"]
    assert len(gateway.requests) == 1


async def test_a_page_following_a_reply_whose_done_was_lost_gets_it_from_the_database(
    alice, gateway, monkeypatch
):
    # A reply written by a process this one cannot see (a stored placeholder, no generation
    # here) ends without its `done` reaching this socket, as in a Redis outage.
    monkeypatch.setattr(consumers, "FOLLOW_SILENCE_SECONDS", 0.2)
    monkeypatch.setattr(consumers, "SNAPSHOT_WAIT_SECONDS", 0.1)
    await db(give_key)(alice, gateway, "sk-alice-lost")
    conversation = await new_conversation(alice)
    start = await db(services.turns.start_turn)(alice, conversation, "Is anyone there?")
    socket = await open_socket(alice, conversation.public_id)
    state = await receive(socket)
    assert state["generation"]["message_id"] == str(start.assistant_message.public_id)
    outcome = services.replies.Outcome(
        status="complete", content="Yes, here.", stop_reason="end_turn"
    )
    await db(services.replies.finish_reply)(start.plan, outcome)  # stored, never broadcast

    done = await receive(socket, timeout=5)
    assert done["type"] == "done" and done["status"] == "complete"
    assert done["content"] == "Yes, here." and "<p>Yes, here.</p>" in done["html"]
    await socket.disconnect()


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Nothing listens on port 1: the layer is down for as long as the test runs.
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
)
async def test_a_socket_opened_while_the_layer_is_down_closes_with_try_again_later(
    alice, monkeypatch
):
    monkeypatch.setattr(layers, "LAYER_PATIENCE", 0.3)
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    conversation = await new_conversation(alice)
    from chatsite.asgi import application

    cookie = await db(session_cookie)(alice)
    socket = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.public_id}/",
        headers=[ORIGIN, (b"cookie", cookie)],
    )
    connected, code = await socket.connect(timeout=5)
    # Accepted, then closed with a code the page answers by reconnecting later (not 1011).
    if connected:
        closed = await socket.receive_output(timeout=5)
        code = closed["code"]
    assert code == consumers.CLOSE_TRY_AGAIN
    await socket.disconnect()
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
