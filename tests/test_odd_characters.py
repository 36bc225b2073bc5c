"""Text no database stores as it is: NUL characters and lone surrogates, from a person or
from the model, and writes the database refuses. The same outcome on SQLite and
PostgreSQL (which refuses any text holding a NUL): nothing ends a socket, no reply is lost.

Everything goes through the consumer, the services, the real SDK and the fake gateway over
real HTTP; writes are refused by the database itself (a trigger), never by a mock.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from conversations import generation, search, services
from conversations.demo.script import Script
from conversations.models import Conversation, Message, SearchDocument
from conversations.services.replies import Outcome
from tests.conftest import frames_until, give_key, joined_deltas, open_socket, receive
from tests.support.chat import new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

# A value a test trigger makes the database refuse (see the `refuse_writes` fixture).
REFUSED = "refused by the database"


async def chat(user, gateway):
    await db(give_key)(user, gateway, "sk-odd")
    conversation = await new_conversation(user)
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    return conversation, sock


# --- A person's text --------------------------------------------------------------------
async def test_a_message_with_nul_is_stored_and_answered_without_it(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="Seen."), Script(text="Seen again."))
    await sock.send_json_to({"type": "send", "content": "pasted\x00 from a\x00 log\x00"})
    received = await frames_until(sock, "done")
    assert received[0]["type"] == "message"
    assert received[0]["message"]["content"] == "pasted from a log"
    assert received[-1]["status"] == "complete"

    # An edit is cleaned the same way.
    question = (await stored(conversation))[0]
    await sock.send_json_to(
        {"type": "edit", "message_id": str(question.public_id), "content": "edited\x00 one"}
    )
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()

    messages = await stored(conversation)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "pasted from a log", "complete"),
        ("assistant", "Seen.", "complete"),
        ("user", "edited one", "complete"),
        ("assistant", "Seen again.", "complete"),
    ]
    assert gateway.requests[0].body["messages"] == [
        {"role": "user", "content": "pasted from a log"}
    ]


async def test_a_message_of_nothing_but_nul_is_an_empty_message(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "send", "content": "\x00\x00 \x00"})
    error = await receive(sock)
    assert (error["type"], error["code"]) == ("error", "empty_message")
    await sock.disconnect()
    assert await stored(conversation) == []


async def test_a_lone_surrogate_in_a_message_becomes_a_replacement_character(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    # As a page's JSON.stringify sends a broken character: an escape, not UTF-8.
    await sock.send_to(text_data='{"type":"send","content":"broken \\ud800 text"}')
    received = await frames_until(sock, "done")
    assert received[0]["message"]["content"] == "broken \ufffd text"
    assert received[-1]["status"] == "complete"
    await sock.disconnect()
    question, _reply = await stored(conversation)
    assert question.content == "broken \ufffd text"


async def test_a_system_prompt_and_a_title_with_nul_are_saved_without_it(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    client = AsyncClient()
    await client.aforce_login(alice)
    url = f"/c/{conversation.public_id}/"
    settings_page = await client.post(f"{url}settings/", {"system_prompt": "Be\x00 brief."})
    assert settings_page.status_code == 302
    renamed = await client.post(
        f"{url}rename/", {"title": "Tea\x00 time"}, headers={"accept": "application/json"}
    )
    assert (renamed.status_code, renamed.json()) == (200, {"title": "Tea time"})

    gateway.enqueue(Script(text="Brief."))
    await sock.send_json_to({"type": "send", "content": "hello"})
    await frames_until(sock, "done")
    await sock.disconnect()
    assert gateway.requests[0].body["system"] == "Be brief."
    await conversation.arefresh_from_db()
    assert (conversation.system_prompt, conversation.title) == ("Be brief.", "Tea time")
    # The title's search entry is the cleaned title too.
    hits = await db(search.search)(alice.pk, "tea")
    assert [hit.conversation.pk for hit in hits] == [conversation.pk]


# --- The model's text -------------------------------------------------------------------
async def test_a_streamed_reply_with_nul_is_shown_and_stored_without_it(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    # The directive the demo and browser tests use: a NUL after every word.
    await sock.send_json_to({"type": "send", "content": "[[fake words=30 nul]]"})
    received = await frames_until(sock, "done")
    await sock.disconnect()
    expected = " ".join(f"w{i}" for i in range(1, 31))
    assert joined_deltas(received) == expected
    assert received[-1]["status"] == "complete" and received[-1]["content"] == expected
    assert gateway.requests[0].completed and gateway.requests[0].tokens_sent == 30
    _question, reply = await stored(conversation)
    assert (reply.status, reply.content, reply.error_code) == ("complete", expected, "")


async def test_nul_and_lone_surrogates_in_thinking_and_answer_are_cleaned_alike(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(thinking="Let me\x00 think \ud800.", text="\x00Odd\x00 \udfff answer."))
    await sock.send_json_to({"type": "send", "content": "think first"})
    received = await frames_until(sock, "done")
    await sock.disconnect()
    assert joined_deltas(received, "thinking") == "Let me think \ufffd."
    assert joined_deltas(received) == "Odd \ufffd answer."
    done = received[-1]
    assert (done["content"], done["thinking"]) == ("Odd \ufffd answer.", "Let me think \ufffd.")
    _question, reply = await stored(conversation)
    assert (reply.status, reply.content, reply.thinking) == (
        "complete",
        "Odd \ufffd answer.",
        "Let me think \ufffd.",
    )


async def test_a_generated_title_with_nul_is_stored_without_it(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="An answer."))
    gateway.side_scripts.append(Script(text="\x00Tea\x00 time"))
    await sock.send_json_to({"type": "send", "content": "What goes with scones?"})
    titles = []
    while len(titles) < 2:
        frame = await receive(sock, skip=())
        if frame["type"] == "conversation":
            titles.append(frame["conversation"]["title"])
    await sock.disconnect()
    assert titles == ["What goes with scones?", "Tea time"]
    await generation.registry.wait(conversation.public_id)
    await conversation.arefresh_from_db()
    assert conversation.title == "Tea time"


async def test_a_long_reply_with_nul_is_checkpointed_next_to_other_running_replies(
    alice, gateway, settings
):
    # The ticker sleeps: this test takes the checkpoint itself, when every reply is running.
    settings.CHAT_CHECKPOINT_INTERVAL = 3600
    odd, sock = await chat(alice, gateway)
    others = [await new_conversation(alice) for _ in range(2)]
    # 300 words each, then the gateway goes quiet with the stream still open.
    await sock.send_json_to(
        {"type": "send", "content": "[[fake words=400 stall_after=300 nul]] long and odd"}
    )
    for conversation in others:
        await generation.send(alice, conversation, "[[fake words=400 stall_after=300]] plain")
    conversations = [odd, *others]

    expected = " ".join(f"w{i}" for i in range(1, 301))
    deadline = asyncio.get_running_loop().time() + 15
    while any(
        (generation.registry.local_snapshot(c.public_id) or {}).get("text") != expected
        for c in conversations
    ):
        assert asyncio.get_running_loop().time() < deadline, "the replies did not stream"
        await asyncio.sleep(0.01)

    settings.CHAT_CHECKPOINT_INTERVAL = 0  # every reply that grew is due
    await generation.registry.checkpoint_now()
    for conversation in conversations:
        reply = await Message.objects.aget(conversation=conversation, role="assistant")
        snapshot = generation.registry.local_snapshot(conversation.public_id)
        assert (reply.status, reply.content, reply.seq) == (
            "streaming",
            expected,
            snapshot["seq"],
        )

    for conversation in conversations:
        await generation.stop(conversation)
    for conversation in conversations:
        await generation.registry.wait(conversation.public_id)
    received = await frames_until(sock, "done")
    await sock.disconnect()
    assert joined_deltas(received) == expected == received[-1]["content"]
    for conversation in conversations:
        reply = await Message.objects.aget(conversation=conversation, role="assistant")
        assert (reply.status, reply.content) == ("stopped", expected)


# --- Writes the database refuses ----------------------------------------------------------
async def started_turn(user, gateway, conversation: Conversation) -> services.turns.TurnPlan:
    """A stored turn whose reply is streaming, with no generation running it: the test
    saves it itself."""
    await db(give_key)(user, gateway, "sk-odd")
    start = await db(services.turns.start_turn)(user, conversation, "a question")
    assert start.plan is not None
    return start.plan


async def test_a_final_save_refused_for_its_text_is_saved_cleaned_and_the_page_told(alice, gateway):
    conversation = await new_conversation(alice)
    plan = await started_turn(alice, gateway, conversation)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    # Text that never comes from the gateway (upstream cleans it) but might from new code:
    # PostgreSQL refuses the NUL, both databases' drivers the lone surrogate.
    outcome = Outcome(status="complete", content="The\x00 answer.", thinking="Odd \ud800.", seq=2)
    frame = await generation.save_reply(plan, outcome)
    done = await receive(sock)
    error = await receive(sock)
    await sock.disconnect()

    assert frame == done
    assert (done["type"], done["status"], done["content"], done["thinking"]) == (
        "done",
        "complete",
        "The answer.",
        "Odd \ufffd.",
    )
    assert (error["type"], error["code"], error["message_id"]) == (
        "error",
        "save_failed",
        str(plan.message_public_id),
    )
    assert "removed" in error["message"]
    reply = await Message.objects.aget(pk=plan.message_id)
    assert (reply.status, reply.content, reply.thinking) == (
        "complete",
        "The answer.",
        "Odd \ufffd.",
    )
    assert await SearchDocument.objects.filter(message_id=plan.message_id).aexists()


async def test_a_final_save_refused_even_cleaned_keeps_the_answer_without_thinking(
    alice, gateway, refuse_writes
):
    conversation = await new_conversation(alice)
    plan = await started_turn(alice, gateway, conversation)
    await db(refuse_writes)("conversations_message", "thinking", REFUSED)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    outcome = Outcome(status="complete", content="The answer.", thinking=REFUSED, seq=2)
    await generation.save_reply(plan, outcome)
    done = await receive(sock)
    error = await receive(sock)
    await sock.disconnect()

    assert (done["status"], done["content"], done["thinking"]) == ("complete", "The answer.", "")
    assert error["code"] == "save_failed" and "reasoning" in error["message"]
    reply = await Message.objects.aget(pk=plan.message_id)
    assert (reply.status, reply.content, reply.thinking) == ("complete", "The answer.", "")
    # The last try leaves the search entries out: they are what might be refused.
    assert not await SearchDocument.objects.filter(message_id=plan.message_id).aexists()


async def test_a_final_save_refused_for_good_is_reported_and_the_checkpoint_kept(
    alice, gateway, refuse_writes
):
    conversation = await new_conversation(alice)
    plan = await started_turn(alice, gateway, conversation)
    await db(services.replies.checkpoint)(
        [services.replies.Checkpoint(plan.message_id, "The", "", 1)], []
    )
    await db(refuse_writes)("conversations_message", "content", REFUSED)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    assert await generation.save_reply(plan, Outcome(status="complete", content=REFUSED)) is None
    error = await receive(sock)
    await sock.disconnect()
    assert error["code"] == "save_failed" and error["message_id"] == str(plan.message_public_id)
    # Still streaming, with its checkpoint: its lease runs out and it is marked interrupted.
    reply = await Message.objects.aget(pk=plan.message_id)
    assert (reply.status, reply.content) == ("streaming", "The")


async def test_a_frame_whose_write_the_database_refuses_gets_an_error_not_a_closed_socket(
    alice, gateway, refuse_writes
):
    conversation, sock = await chat(alice, gateway)
    # A first question names the conversation after itself: that UPDATE is refused.
    await db(refuse_writes)("conversations_conversation", "title", REFUSED)
    await sock.send_json_to({"type": "send", "content": REFUSED, "client_id": "c-1"})
    error = await receive(sock)
    assert (error["type"], error["code"]) == ("error", "database_error")
    assert "message_id" not in error and error["message"]
    assert await stored(conversation) == []
    assert gateway.requests == []

    # The socket is open and the next frame is served.
    gateway.enqueue(Script(text="Fine."))
    await sock.send_json_to({"type": "send", "content": "another", "client_id": "c-2"})
    assert (await frames_until(sock, "done"))[-1]["content"] == "Fine."
    await sock.disconnect()
    assert [m.content for m in await stored(conversation)] == ["another", "Fine."]
