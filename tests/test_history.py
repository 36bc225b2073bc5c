"""Long conversations against the bundled gateway taught a context limit: every turn is
answered, every request fits, keeps the system prompt and the newest message; a summary
stands for what was left out; a refusal is cured by itself; caching marks the prefix.

Real parts only: the fake gateway over HTTP, the real SDK, the database, the consumer.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from conversations import context
from conversations.demo.script import Script
from conversations.demo.server import count_tokens
from conversations.models import ApiCredential, Conversation, Message
from tests.conftest import frames_until, give_key, open_socket, receive, signed_in
from tests.support.chat import new_conversation

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

SYSTEM = "You are a patient tutor. Answer in short sentences."
WINDOW = 2_000
MAX_TOKENS = 200


@pytest.fixture(autouse=True)
def _small_summaries(settings: Any) -> None:
    settings.CHAT_CONTEXT_SUMMARY_TOKENS = 100


def question(n: int) -> str:
    # ~80 words: a few turns fill a 2,000-token window.
    return f"Question {n}: " + " ".join(f"topic{n}x{i}" for i in range(80))


async def long_chat(user: Any, gateway: Any, **key: Any) -> Any:
    await db(give_key)(user, gateway, "sk-long", **key)
    conversation = await new_conversation(user, system_prompt=SYSTEM, max_tokens=MAX_TOKENS)
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    return sock


async def turn(sock: Any, content: str) -> dict[str, Any]:
    await sock.send_json_to({"type": "send", "content": content})
    return (await frames_until(sock, "done"))[-1]


def summary_requests(gateway: Any) -> list[Any]:
    return [
        r
        for r in gateway.side_requests
        if "Summarise the conversation" in str(r.body["messages"][0]["content"])
    ]


async def test_a_conversation_longer_than_the_limit_keeps_getting_answers_that_fit(alice, gateway):
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=WINDOW)
    dones = []
    for n in range(1, 16):
        gateway.enqueue(Script(words=60))
        done = await turn(sock, question(n))
        assert done["status"] == "complete", done.get("error")
        dones.append(done)
    await sock.disconnect()

    # Within its credential's context_window, the gateway never refused a prompt.
    assert gateway.refused_too_long == 0
    for n, request in enumerate(gateway.requests, start=1):
        body = request.body
        assert count_tokens(body) + MAX_TOKENS <= WINDOW
        assert body["system"].startswith(SYSTEM)
        assert body["messages"][-1] == {"role": "user", "content": question(n)}
        assert body["messages"][0]["role"] == "user"
    # The thread outgrew the window: later requests left the oldest exchanges out.
    last = gateway.requests[-1].body
    assert last["messages"][0]["content"] != question(1)
    assert len(last["messages"]) < 2 * 15 - 1
    # What was left out is summarised, once per overflow, not on every turn.
    summaries = summary_requests(gateway)
    assert 1 <= len(summaries) < 8
    assert context.SUMMARY_HEADING in last["system"]
    # The page is told where the model's memory begins.
    final = dones[-1]["context"]
    assert final["omitted"] > 0 and final["summarised"] is True
    first = await Message.objects.aget(public_id=final["first_id"])
    assert first.role == "user" and first.content == last["messages"][0]["content"]
    assert final["window"] == WINDOW and 0 < final["prompt_tokens"] <= WINDOW


async def test_a_summary_is_reused_until_the_next_overflow(alice, gateway):
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=WINDOW)
    summarised_at = None
    n = 0
    while summarised_at is None:
        n += 1
        assert n < 20, "the window never overflowed"
        gateway.side_scripts.clear()
        gateway.enqueue(Script(words=60))
        before = len(summary_requests(gateway))
        # The summary the model writes (a side request; titles take the default answer).
        gateway.side_scripts.append(Script(text=f"SUMMARY-AT-{n}"))
        await turn(sock, question(n))
        if len(summary_requests(gateway)) > before:
            summarised_at = n
    gateway.enqueue(Script(words=5))
    done = await turn(sock, "A short follow-up.")
    await sock.disconnect()
    assert len(summary_requests(gateway)) == 1
    assert f"SUMMARY-AT-{summarised_at}" in gateway.requests[-1].body["system"]
    reply = await Message.objects.aget(public_id=done["message_id"])
    assert reply.context["summary"] == f"SUMMARY-AT-{summarised_at}"
    assert done["context"]["first_id"] == reply.context["first"]


async def test_without_summaries_the_left_out_part_is_only_marked(alice, gateway, settings):
    settings.CHAT_CONTEXT_SUMMARY = False
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=WINDOW)
    for n in range(1, 16):
        gateway.enqueue(Script(words=60))
        done = await turn(sock, question(n))
        assert done["status"] == "complete"
    await sock.disconnect()
    assert summary_requests(gateway) == []
    assert done["context"]["omitted"] > 0 and done["context"]["summarised"] is False
    assert gateway.requests[-1].body["system"] == SYSTEM


async def test_a_refusal_over_a_stated_limit_is_retried_fitted_and_remembered(alice, gateway):
    # The administrator set a window larger than the model's: the gateway refuses once.
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=100_000)
    for n in range(1, 18):
        gateway.enqueue(Script(words=60))
        done = await turn(sock, question(n))
        assert done["status"] == "complete", done.get("error")
    await sock.disconnect()
    # One refusal, answered by a shorter second try; later turns fit at the first try.
    assert gateway.refused_too_long == 1
    credential = await ApiCredential.objects.aget(user=alice)
    assert credential.context_limits == {"hy3-preview": WINDOW}
    assert count_tokens(gateway.requests[-1].body) + MAX_TOKENS <= WINDOW


async def test_a_refusal_without_figures_is_retried_shorter(alice, gateway):
    sock = await long_chat(alice, gateway, context_window=100_000)
    for n in range(1, 6):
        gateway.enqueue(Script(words=60))
        assert (await turn(sock, question(n)))["status"] == "complete"
    gateway.enqueue(
        Script(status=400, error_message="Input is too long for requested model."),
        Script(text="Answered after all."),
    )
    done = await turn(sock, question(6))
    await sock.disconnect()
    assert done["status"] == "complete" and done["content"] == "Answered after all."
    first_try, second_try = gateway.requests[-2:]
    assert count_tokens(second_try.body) < count_tokens(first_try.body)
    assert second_try.body["messages"][-1]["content"] == question(6)


async def test_a_message_too_long_on_its_own_gets_a_clear_sentence(alice, gateway):
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=WINDOW)
    done = await turn(sock, " ".join(f"word{i}" for i in range(3_000)))
    error = await receive(sock)
    await sock.disconnect()
    assert done["status"] == "error" and done["error"]["code"] == "message_too_long_for_model"
    assert "too long for the model" in error["message"]
    assert gateway.requests == []  # never sent: it could not fit
    question_row, reply = [m async for m in Message.objects.order_by("id")]
    assert (
        question_row.content.startswith("word0")
        and reply.error_code == "message_too_long_for_model"
    )


async def test_with_caching_the_prefix_is_marked_and_the_cache_usage_stored(alice, gateway):
    sock = await long_chat(alice, gateway, prompt_caching=True)
    first = await turn(sock, "What is a prime number?")
    second = await turn(sock, "And a composite one?")
    await sock.disconnect()
    body = gateway.requests[-1].body
    assert body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    replayed = body["messages"][-2]
    assert replayed["role"] == "assistant"
    assert replayed["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1] == {"role": "user", "content": "And a composite one?"}
    written = await Message.objects.aget(public_id=first["message_id"])
    read = await Message.objects.aget(public_id=second["message_id"])
    assert written.cache_creation_input_tokens and not written.cache_read_input_tokens
    # The second turn's prefix starts with the first's system prompt, but its breakpoint is
    # later: it writes a new entry and reads none; a third turn with the same prefix reads.
    assert read.cache_creation_input_tokens
    assert second["usage"]["cache_creation_input_tokens"] == read.cache_creation_input_tokens


async def test_the_export_keeps_the_cache_usage_and_what_each_reply_was_sent(alice, gateway):
    sock = await long_chat(alice, gateway, prompt_caching=True)
    await turn(sock, "What is a prime number?")
    await sock.disconnect()
    conversation = await Conversation.objects.aget(owner=alice)
    client = await db(signed_in)(alice)
    response = await db(client.get)(f"/c/{conversation.public_id}/export.json")
    reply = response.json()["messages"][-1]
    stored = await Message.objects.aget(public_id=reply["id"])
    assert reply["usage"]["cache_creation_input_tokens"] == stored.cache_creation_input_tokens > 0
    assert reply["usage"]["cache_read_input_tokens"] == 0
    assert reply["context"] == stored.context and reply["context"]["omitted"] == 0


async def test_a_regenerated_reply_reads_the_prefix_from_the_cache(alice, gateway):
    sock = await long_chat(alice, gateway, prompt_caching=True)
    await turn(sock, "What is a prime number?")
    await turn(sock, "And a composite one?")
    await sock.send_json_to({"type": "regenerate"})
    done = (await frames_until(sock, "done"))[-1]
    await sock.disconnect()
    again = await Message.objects.aget(public_id=done["message_id"])
    assert again.cache_read_input_tokens and not again.cache_creation_input_tokens
    assert done["usage"]["cache_read_input_tokens"] == again.cache_read_input_tokens


async def test_without_caching_nothing_is_marked(alice, gateway):
    sock = await long_chat(alice, gateway)
    await turn(sock, "What is a prime number?")
    await turn(sock, "And a composite one?")
    await sock.disconnect()
    body = gateway.requests[-1].body
    assert body["system"] == SYSTEM
    assert all(isinstance(m["content"], str) for m in body["messages"])
    reply = await Message.objects.filter(role="assistant").order_by("-id").afirst()
    assert reply.cache_read_input_tokens is None and reply.cache_creation_input_tokens is None


async def test_a_summary_that_fails_leaves_the_turn_answered_and_marked_left_out(alice, gateway):
    gateway.context_limit = WINDOW
    sock = await long_chat(alice, gateway, context_window=WINDOW)
    done = None
    for n in range(1, 16):
        gateway.side_scripts.clear()
        # Every side request fails: the title and the summary alike.
        gateway.side_scripts.extend([Script(status=500)] * 10)
        gateway.enqueue(Script(words=60))
        done = await turn(sock, question(n))
        assert done["status"] == "complete", done.get("error")
        if done["context"]["omitted"]:
            break
    await sock.disconnect()
    assert summary_requests(gateway), "the window never overflowed"
    assert done["context"]["omitted"] > 0 and done["context"]["summarised"] is False
    assert gateway.requests[-1].body["system"] == SYSTEM
