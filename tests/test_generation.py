"""Replies that survive: stop, regenerate, edit, closed tabs and every upstream fault.

Each fault is produced by the fake gateway over real HTTP, through the real SDK.
"""

from __future__ import annotations

import asyncio
import socket
import time
from uuid import uuid4

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from conversations import generation, services
from conversations.credentials import GatewayCredential
from conversations.demo.script import Script, numbered_words
from conversations.models import ApiCredential, Message, SearchDocument
from tests.conftest import frames_until, give_key, joined_deltas, open_socket, receive
from tests.support.chat import chat, new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def turn(sock, content: str = "hello") -> list[dict]:
    await sock.send_json_to({"type": "send", "content": content})
    return await frames_until(sock, "done")


FAULTS = [
    pytest.param([Script(status=401)], "auth_failed", "", id="401"),
    pytest.param([Script(status=403)], "forbidden", "", id="403"),
    pytest.param([Script(status=404)], "model_not_found", "", id="404-model"),
    pytest.param([Script(status=429, retry_after="30")], "rate_limited", "", id="429"),
    pytest.param([Script(status=500)] * 3, "upstream_error", "", id="500"),
    pytest.param([Script(status=529)] * 3, "overloaded", "", id="529"),
    pytest.param([Script(json_error_200=True)] * 3, "overloaded", "", id="200-with-error-body"),
    pytest.param([Script(words=10, cut_after=3)], "stream_interrupted", "w1 w2 w3", id="cut"),
    pytest.param([Script(words=10, sse_error_after=3)], "overloaded", "w1 w2 w3", id="sse-error"),
    pytest.param(
        [Script(words=10, malformed_after=3)], "malformed_response", "w1 w2 w3", id="malformed"
    ),
    pytest.param([Script(words=10, end_after=3)], "incomplete_response", "w1 w2 w3", id="no-stop"),
]


@pytest.mark.parametrize(("scripts", "code", "partial"), FAULTS)
async def test_an_upstream_fault_keeps_both_messages_and_the_next_turn_works(
    alice, gateway, scripts, code, partial
):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(*scripts)
    received = await turn(sock, "first question")
    done = received[-1]
    assert done["status"] == "error"
    assert done["error"]["code"] == code
    error = await receive(sock)
    assert (
        error["type"] == "error"
        and error["code"] == code
        and error["message_id"] == done["message_id"]
    )
    assert len(error["message"]) > 20  # a sentence, not a bare code
    assert joined_deltas(received) == partial

    question, reply = await stored(conversation)
    assert (question.role, question.content, question.status) == (
        "user",
        "first question",
        "complete",
    )
    assert (reply.status, reply.error_code, reply.content) == ("error", code, partial)

    gateway.enqueue(Script(text="All good now."))
    again = await turn(sock, "second question")
    assert again[-1]["status"] == "complete" and again[-1]["content"] == "All good now."
    # The failed reply is not sent upstream as if the model had said it.
    assert gateway.requests[-1].body["messages"] == [
        {"role": "user", "content": "first question\n\nsecond question"}
    ]
    await sock.disconnect()


async def test_rate_limit_message_says_when_to_retry(alice, gateway):
    _, sock = await chat(alice, gateway)
    gateway.enqueue(Script(status=429, retry_after="30"))
    await turn(sock)
    error = await receive(sock)
    assert "30 seconds" in error["message"]
    assert len(gateway.requests) == 1  # a long wait is not retried behind the person's back
    await sock.disconnect()


async def test_a_failure_before_the_first_token_is_retried_without_duplicating(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(status=500), Script(words=10, cut_after=0), Script(text="one answer"))
    received = await turn(sock)
    assert received[-1]["status"] == "complete"
    assert joined_deltas(received) == "one answer"
    assert len(gateway.requests) == 3
    _, reply = await stored(conversation)
    assert reply.content == "one answer"
    await sock.disconnect()


async def test_a_failure_after_the_first_token_is_never_retried(alice, gateway):
    _, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=10, cut_after=2), Script(text="must not be used"))
    received = await turn(sock)
    assert received[-1]["status"] == "error"
    assert len(gateway.requests) == 1
    await sock.disconnect()


async def test_connection_refused_is_a_clear_error(alice, gateway, settings):
    settings.CHAT_UPSTREAM_RETRIES = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    await db(services.credentials.set_api_key)(
        alice, key="sk-x", base_url=f"http://127.0.0.1:{closed_port}"
    )
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    received = await turn(sock)
    assert received[-1]["error"]["code"] == "connection_failed"
    await sock.disconnect()


async def test_no_first_byte_in_time_is_a_timeout(alice, gateway, settings):
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.5
    settings.CHAT_UPSTREAM_RETRIES = 0
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(headers_delay=3))
    received = await turn(sock)
    assert received[-1]["error"]["code"] == "timeout"
    (_, reply) = await stored(conversation)
    assert reply.status == "error"
    await sock.disconnect()


async def test_a_stall_mid_stream_ends_the_reply_and_keeps_the_text(alice, gateway, settings):
    settings.CHAT_UPSTREAM_READ_TIMEOUT = 0.5
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=10, stall_after=4))
    received = await turn(sock)
    assert received[-1]["error"]["code"] == "stream_stalled"
    (_, reply) = await stored(conversation)
    assert reply.content == "w1 w2 w3 w4" == joined_deltas(received)
    await sock.disconnect()


async def test_stop_closes_the_upstream_stream_at_once_and_keeps_the_partial_reply(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=2000, token_delay=0.005))
    await sock.send_json_to({"type": "send", "content": "long please"})
    received = []
    while sum(1 for f in received if f["type"] == "delta") < 5:
        received.append(await receive(sock))
    stop_sent = time.monotonic()
    await sock.send_json_to({"type": "stop"})
    received += await frames_until(sock, "done")
    done = received[-1]
    assert done["status"] == "stopped"

    # The gateway saw the client hang up within ~100 ms.
    for _ in range(50):
        if gateway.requests[0].disconnected_at is not None:
            break
        await asyncio.sleep(0.01)
    assert gateway.requests[0].disconnected_at is not None
    assert gateway.requests[0].disconnected_at - stop_sent < 0.1
    assert not gateway.requests[0].completed

    (_, reply) = await stored(conversation)
    assert reply.status == "stopped"
    assert reply.content == done["content"] == joined_deltas(received)
    assert 0 < len(reply.content.split()) < 2000
    # The next turn works.
    gateway.enqueue(Script(text="ok"))
    assert (await turn(sock))[-1]["status"] == "complete"
    await sock.disconnect()


async def test_deleting_a_conversation_mid_reply_stops_the_upstream_stream(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=2000, token_delay=0.005))
    await sock.send_json_to({"type": "send", "content": "long please"})
    deltas = 0
    while deltas < 5:
        deltas += (await receive(sock))["type"] == "delta"
    await database_sync_to_async(services.conversations.delete_conversation)(conversation)

    # No more tokens are paid for: the gateway sees the hang-up.
    for _ in range(100):
        if gateway.requests[0].disconnected_at is not None:
            break
        await asyncio.sleep(0.01)
    assert gateway.requests[0].disconnected_at is not None
    assert not gateway.requests[0].completed
    await generation.registry.wait(conversation.public_id)
    assert generation.registry.local_snapshot(conversation.public_id) is None
    assert not await Message.objects.filter(conversation_id=conversation.pk).aexists()


async def test_stop_with_nothing_running_is_refused(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "stop"})
    assert (await receive(sock))["code"] == "nothing_to_stop"
    await sock.disconnect()
    assert await stored(conversation) == []


async def test_a_stop_while_the_reply_joins_its_control_group_still_saves_it(
    alice, gateway, monkeypatch
):
    # Joining the control group is a round trip to the channel layer (Redis), slow at times:
    # a Stop or a shutdown arriving meanwhile must end the reply as any other would.
    async def slow_join(conversation_public_id):
        await asyncio.sleep(3600)

    monkeypatch.setattr(generation.registry, "join_control", slow_join)
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "send", "content": "hello"})
    assert [(await receive(sock))["type"] for _ in range(2)] == ["message", "message"]
    await sock.send_json_to({"type": "stop"})
    done = (await frames_until(sock, "done"))[-1]
    await sock.disconnect()

    assert done["status"] == "stopped"
    (_, reply) = await stored(conversation)
    assert (reply.status, reply.lease_expires_at) == ("stopped", None)
    assert gateway.requests == []


async def test_a_second_send_while_a_reply_runs_is_refused(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=300, token_delay=0.005))
    await sock.send_json_to({"type": "send", "content": "one"})
    await frames_until(sock, "delta")
    await sock.send_json_to({"type": "send", "content": "two"})
    frame = await receive(sock)
    while frame["type"] == "delta":
        frame = await receive(sock)
    assert frame["type"] == "error" and frame["code"] == "generation_running"
    await frames_until(sock, "done")
    await sock.disconnect()
    assert [m.content for m in await stored(conversation) if m.role == "user"] == ["one"]


async def test_one_streaming_reply_per_conversation_is_enforced_by_the_database(alice, gateway):
    await db(give_key)(alice, gateway, "sk")
    conversation = await new_conversation(alice)
    # Straight to the service, bypassing the in-memory registry: the database refuses.
    await db(services.turns.start_turn)(alice, conversation, "one")
    with pytest.raises(services.ServiceError) as refused:
        await db(services.turns.start_turn)(alice, conversation, "two")
    assert refused.value.code == "generation_running"
    assert [m.content for m in await stored(conversation)] == ["one", ""]


async def test_regenerate_adds_a_version_beside_the_last_reply_and_shows_it(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="first answer"), Script(text="second answer"))
    await turn(sock, "question")
    await sock.send_json_to({"type": "regenerate"})
    received = await frames_until(sock, "done")
    # For clients older than `thread`: the old reply left the shown thread.
    assert received[0] == {"type": "superseded", "message_ids": [received[0]["message_ids"][0]]}
    assert received[1]["type"] == "thread"
    assert received[-1]["content"] == "second answer"
    # The regenerated request does not contain the replaced answer.
    assert gateway.requests[1].body["messages"] == [{"role": "user", "content": "question"}]

    question, first, second = await stored(conversation)
    assert [(m.role, m.content) for m in (question, first, second)] == [
        ("user", "question"),
        ("assistant", "first answer"),
        ("assistant", "second answer"),
    ]
    assert first.parent_id == second.parent_id == question.pk
    await conversation.arefresh_from_db()
    assert conversation.shown_leaf_id == second.pk
    await sock.disconnect()


async def test_regenerate_on_an_empty_conversation_is_refused(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "regenerate"})
    assert (await receive(sock))["code"] == "nothing_to_regenerate"
    await sock.disconnect()
    assert await stored(conversation) == []


async def test_edit_adds_a_version_of_a_question_and_continues_from_there(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="A1"), Script(text="A2"), Script(text="A1 edited"))
    await turn(sock, "Q1")
    await turn(sock, "Q2")
    first_question = (await stored(conversation))[0]
    await sock.send_json_to(
        {"type": "edit", "message_id": str(first_question.public_id), "content": "Q1 edited"}
    )
    received = await frames_until(sock, "done")
    assert received[0]["type"] == "superseded" and len(received[0]["message_ids"]) == 4
    assert [m["content"] for m in received[1]["messages"]] == ["Q1 edited", ""]
    assert received[-1]["content"] == "A1 edited"
    assert gateway.requests[-1].body["messages"] == [{"role": "user", "content": "Q1 edited"}]
    messages = await stored(conversation)
    # Nothing is lost: the old question keeps what followed it.
    assert [(m.content, m.parent_id) for m in messages] == [
        ("Q1", None),
        ("A1", messages[0].pk),
        ("Q2", messages[1].pk),
        ("A2", messages[2].pk),
        ("Q1 edited", None),
        ("A1 edited", messages[4].pk),
    ]
    await sock.disconnect()


async def test_edit_of_an_assistant_message_or_another_conversations_message_is_refused(
    alice, gateway
):
    conversation, sock = await chat(alice, gateway)
    await turn(sock, "Q")
    other = await new_conversation(alice)
    other_start = await db(services.turns.start_turn)(alice, other, "elsewhere")
    await generation.registry.wait(other.public_id)
    _question, reply = await stored(conversation)
    before = [(m.pk, m.content, m.parent_id) for m in await stored(conversation)]
    cases = [
        (str(reply.public_id), "not_editable"),
        (str(other_start.user_message.public_id), "message_not_found"),
        ("not-a-uuid", "invalid_message_id"),
    ]
    for message_id, code in cases:
        await sock.send_json_to({"type": "edit", "message_id": message_id, "content": "x"})
        assert (await receive(sock))["code"] == code
    assert [(m.pk, m.content, m.parent_id) for m in await stored(conversation)] == before
    await sock.disconnect()


async def test_closing_the_tab_mid_reply_lets_the_reply_finish_and_be_saved(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=200, token_delay=0.002))
    await sock.send_json_to({"type": "send", "content": "go"})
    await frames_until(sock, "delta")
    await sock.disconnect()
    await generation.registry.wait(conversation.public_id)
    (_, reply) = await stored(conversation)
    assert reply.status == "complete"
    assert reply.content.split() == [f"w{i}" for i in range(1, 201)]


async def test_a_deactivated_credential_means_no_key_and_no_upstream_call(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await ApiCredential.objects.filter(user=alice).aupdate(is_active=False)
    await sock.send_json_to({"type": "send", "content": "hi"})
    assert (await receive(sock))["code"] == "no_api_key"
    assert gateway.requests == []
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    await sock.disconnect()


# --- Checkpoint pacing ---------------------------------------------------------------------
def plan_for_pacing() -> services.turns.TurnPlan:
    credential = GatewayCredential(
        base_url="http://gateway", scheme="bearer", key="k", default_model="m"
    )
    return services.turns.TurnPlan(
        conversation_id=1,
        conversation_public_id=uuid4(),
        owner_id=1,
        message_id=2,
        message_public_id=uuid4(),
        credential=credential,
        history=[],
        model="m",
        system="",
        temperature=None,
        top_p=None,
        max_tokens=10,
    )


def test_a_reply_is_checkpointed_at_most_once_an_interval_and_only_when_it_grew():
    reply = generation.Generation(plan_for_pacing())
    start = time.monotonic()
    reply.seq, reply.text_parts = 3, ["abc"]
    # Younger than an interval: the placeholder row is recent enough.
    assert reply.checkpoint(start + 0.5, interval=1.0) is None
    saved = reply.checkpoint(start + 1.0, interval=1.0)
    assert saved is not None and (saved.content, saved.seq) == ("abc", 3)
    # Nothing new since: no write, however long it has been.
    assert reply.checkpoint(start + 5.0, interval=1.0) is None
    reply.seq, reply.text_parts = 4, ["abc", "d"]
    assert reply.checkpoint(start + 5.0, interval=1.0) is not None


def test_a_silent_reply_renews_its_lease_every_third_of_it():
    reply = generation.Generation(plan_for_pacing())
    start = time.monotonic()
    assert not reply.lease_due(start + 1.0, lease_seconds=9.0)
    assert reply.lease_due(start + 3.5, lease_seconds=9.0)
    assert not reply.lease_due(start + 4.0, lease_seconds=9.0)
    assert reply.lease_due(start + 6.6, lease_seconds=9.0)


async def test_a_reply_reaped_while_its_overloaded_writer_lives_is_saved_whole(alice, gateway):
    # Under overload a process can renew a lease late; another process then marks the reply
    # interrupted with its last checkpoint. The writer, still alive, saves the whole reply.
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(words=300, token_delay=0.003))
    await sock.send_json_to({"type": "send", "content": "long please"})
    while (await receive(sock))["type"] != "delta":
        pass
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    await Message.objects.filter(pk=reply.pk).aupdate(lease_expires_at=timezone.now())
    reaped = await db(services.replies.reap_stale_replies)(conversation_id=conversation.pk)
    assert [message.status for message in reaped] == ["interrupted"]

    received = await frames_until(sock, "done")
    while received[-1]["status"] != "complete":  # the reaper's done, then the writer's
        received += await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    await reply.arefresh_from_db()
    assert reply.status == "complete" and reply.content == numbered_words(300)
    assert received[-1]["content"] == reply.content
    document = await SearchDocument.objects.aget(message_id=reply.pk)
    assert "w300" in document.body.split()
    await sock.disconnect()


async def test_a_socket_that_joins_once_the_reply_is_saved_is_told_nothing_is_being_written(
    alice, gateway
):
    # The final save is stored and its `done` sent before the reply's task ends: a socket
    # joining in between must not be told the reply is still being written (it would
    # never see the end).
    gateway.enqueue(Script(words=3000, token_delay=0.01))
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "send", "content": "long"})
    await frames_until(sock, "delta")
    running = generation.registry._running[conversation.public_id]
    assert generation.registry.local_snapshot(conversation.public_id) is not None
    running._saved()
    assert generation.registry.local_snapshot(conversation.public_id) is None
    late = await open_socket(alice, conversation.public_id)
    state = await receive(late)
    assert state["type"] == "state"
    # Not the live generation's snapshot: the stored reply's (still streaming in the
    # database here, as the flag was set by hand) or none.
    assert (
        state["generation"] is None
        or state["generation"]["seq"]
        == (await Message.objects.aget(conversation=conversation, role="assistant")).seq
    )
    await sock.send_json_to({"type": "stop"})
    await frames_until(sock, "done")
