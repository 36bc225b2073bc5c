"""A hostile client on the conversation websocket: floods, thousands of turns at once and
malformed frames get clear errors or a clean close, never a crash or a partial write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from conversations import generation
from conversations.demo.script import Script
from conversations.demo.server import FakeGateway
from tests.conftest import give_key, open_socket, receive
from tests.support.chat import new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _no_turn_rate_limit(settings: Any) -> None:
    # The per-user turn limit is tested elsewhere; here only the socket's own defences act.
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


async def outputs_until_close(
    socket: WebsocketCommunicator, timeout: float = 20
) -> tuple[list[dict[str, Any]], int]:
    """Every frame the server sent until it closed the socket, and the close code."""
    frames: list[dict[str, Any]] = []
    while True:
        output = await socket.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return frames, output["code"]
        frames.append(json.loads(output["text"]))


def errors(frames: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in frames if f["type"] == "error"]


def stream_requests(gateway: Any) -> list[Any]:
    return [r for r in gateway.requests if r.body.get("stream")]


async def chat_socket(user: Any, gateway: FakeGateway, key: str) -> tuple[Any, Any]:
    """A keyed user's new conversation and a socket on it, past its `state` frame."""
    await db(give_key)(user, gateway, key)
    conversation = await new_conversation(user)
    socket = await open_socket(user, conversation.public_id)
    await receive(socket)
    return conversation, socket


async def settled(conversation: Any) -> list[Any]:
    await generation.registry.wait(conversation.public_id)
    return await stored(conversation)


async def test_a_flood_is_refused_once_then_the_socket_is_closed_with_4429(alice, gateway):
    # Long enough that the reply still runs while the whole flood is read, even on a busy
    # machine: every `send` let through is refused as generation_running.
    gateway.enqueue(Script(words=60, token_delay=0.1))
    conversation, socket = await chat_socket(alice, gateway, "sk-flood")

    for i in range(2000):
        await socket.send_to(text_data=json.dumps({"type": "send", "content": f"spam {i}"}))
    frames, code = await outputs_until_close(socket)

    assert code == 4429
    # Frames still queued behind the close are dropped, not answered or acted on.
    assert await socket.receive_nothing(timeout=0.5)
    refused = errors(frames)
    # One warning, not one per frame; the frames let through before it were refused by
    # the turn rules (a reply is running), cleanly.
    assert refused.count("too_many_frames") == 1
    assert set(refused) == {"too_many_frames", "generation_running"}
    # The burst of 20 less the first turn, plus what refilled meanwhile (10 a second): far
    # fewer than were sent.
    assert 19 <= refused.count("generation_running") < 200
    warning = next(f for f in frames if f.get("code") == "too_many_frames")
    assert "10" in warning["message"]

    # Exactly one turn was stored and answered, in full.
    messages = await settled(conversation)
    assert [(m.role, m.status, m.content) for m in messages] == [
        ("user", "complete", "spam 0"),
        ("assistant", "complete", " ".join(f"w{i}" for i in range(1, 61))),
    ]
    assert len(stream_requests(gateway)) == 1


@override_settings(CHAT_WS_FRAMES_PER_SECOND=100_000, CHAT_WS_FRAME_BURST=100_000)
async def test_hundreds_of_sends_at_once_start_one_reply_and_write_nothing_else(alice, gateway):
    # Far longer than reading 300 frames takes on a slow database: the test ends it with
    # `stop`, after the last `send`.
    gateway.enqueue(Script(words=100, token_delay=0.5))
    conversation, socket = await chat_socket(alice, gateway, "sk-many")

    count = 300
    for i in range(count):
        await socket.send_to(text_data=json.dumps({"type": "send", "content": f"again {i}"}))
    await socket.send_to(text_data=json.dumps({"type": "stop"}))
    received: list[dict[str, Any]] = []
    while not any(f["type"] == "done" for f in received):
        received.append(await receive(socket, timeout=20))
    await socket.disconnect()

    assert errors(received).count("generation_running") == count - 1
    messages = await settled(conversation)
    assert [(m.role, m.content) for m in messages][:1] == [("user", "again 0")]
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "stopped"
    assert len(stream_requests(gateway)) == 1


async def test_a_client_that_slows_down_after_the_warning_is_served_again(alice, gateway):
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    for _ in range(25):  # 20 go through (and are refused: nothing to stop), then the warning
        await socket.send_to(text_data=json.dumps({"type": "stop"}))
    seen = [await receive(socket) for _ in range(21)]
    assert errors(seen).count("nothing_to_stop") == 20
    assert errors(seen)[-1] == "too_many_frames"
    await socket.send_to(text_data=json.dumps({"type": "stop"}))  # still over: dropped
    # A quarter of a second later two frames' worth has come back.
    await asyncio.sleep(0.25)
    await socket.send_to(text_data=json.dumps({"type": "stop"}))
    assert (await receive(socket))["code"] == "nothing_to_stop"
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("[" * 200_000, "invalid_json", id="deep-array"),
        pytest.param('{"a":' * 40_000 + "1" + "}" * 40_000, "invalid_json", id="deep-object"),
        pytest.param(
            '{"type":"send","content":' + "[" * 50_000 + "]" * 50_000 + "}",
            "invalid_json",
            id="deep-content",
        ),
        pytest.param(
            '{"type":"edit","message_id":"\\udfff","content":"x"}',
            "invalid_message_id",
            id="surrogate-id",
        ),
        pytest.param('{"type":"send","content":"' + "9" * 5000 + '"}', None, id="digits-as-text"),
        pytest.param(
            '{"type":"send","content":' + "9" * 5000 + "}", "invalid_json", id="huge-number"
        ),
        pytest.param('{"type":"send","content":NaN}', "invalid_content", id="nan"),
        pytest.param('{"type":{"nested":"type"}}', "unknown_type", id="object-type"),
        pytest.param('"send"', "invalid_frame", id="string"),
        pytest.param("\x00", "invalid_json", id="nul"),
    ],
)
async def test_malformed_frames_get_an_error_and_change_nothing(alice, gateway, text, code):
    conversation, socket = await chat_socket(alice, gateway, "sk-bad")
    await socket.send_to(text_data=text)
    answer = await receive(socket)
    if code is None:
        # Only a control: the same shape with a plain string is an ordinary turn.
        assert answer["type"] == "message"
        await socket.disconnect()
        return
    assert answer["type"] == "error" and answer["code"] == code and answer["message"]
    assert await stored(conversation) == []
    # The socket is still open and usable.
    await socket.send_to(text_data=json.dumps({"type": "send", "content": "still fine?"}))
    assert (await receive(socket))["type"] == "message"
    await socket.disconnect()
