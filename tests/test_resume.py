"""Reconnecting and watching from several tabs: exact text, no gap, no duplicate."""

from __future__ import annotations

import asyncio

import pytest

from conversations import generation
from conversations.demo.script import Script, numbered_words
from tests.conftest import frames_until, open_socket, receive
from tests.support.chat import chat, stored

pytestmark = pytest.mark.django_db(transaction=True)


def reassemble(state: dict, frames: list[dict]) -> tuple[str, list[int]]:
    """What a client shows: the state's text plus the deltas after it, and their seqs."""
    generation_state = state["generation"]
    text = generation_state["text"] if generation_state else ""
    seqs = [f["seq"] for f in frames if f["type"] == "delta"]
    return text + "".join(f["text"] for f in frames if f["type"] == "delta"), seqs


async def test_a_reconnecting_socket_gets_the_exact_text_so_far_then_continues(alice, gateway):
    conversation, first = await chat(alice, gateway)
    gateway.enqueue(Script(words=400, token_delay=0.003))
    await first.send_json_to({"type": "send", "content": "stream"})
    seen = await frames_until(first, "delta")
    for _ in range(10):
        seen.append(await receive(first))
    await first.disconnect()
    await asyncio.sleep(0.1)

    second = await open_socket(alice, conversation.public_id)
    state = await receive(second)
    assert state["type"] == "state" and state["generation"] is not None
    assert state["generation"]["seq"] > 0 and state["generation"]["text"]
    rest = await frames_until(second, "done")
    text, seqs = reassemble(state, rest)
    start = state["generation"]["seq"]
    assert seqs == list(range(start + 1, start + 1 + len(seqs)))
    (_, reply) = await stored(conversation)
    assert text == rest[-1]["content"] == reply.content == numbered_words(400)
    await second.disconnect()


async def test_sockets_joining_at_any_moment_all_see_the_same_exact_text(alice, gateway):
    conversation, first = await chat(alice, gateway)
    gateway.enqueue(Script(words=300, token_delay=0.002))
    await first.send_json_to({"type": "send", "content": "go"})
    late_sockets = []
    for _ in range(6):
        await asyncio.sleep(0.07)
        late_sockets.append(await open_socket(alice, conversation.public_id))
    first_frames = await frames_until(first, "done")
    expected = first_frames[-1]["content"]
    assert expected == numbered_words(300)
    for sock in late_sockets:
        state = await receive(sock)
        rest = await frames_until(sock, "done")
        text, seqs = reassemble(state, rest)
        assert text == expected
        assert len(seqs) == len(set(seqs))
        await sock.disconnect()
    await first.disconnect()


async def test_two_tabs_see_identical_text_and_either_can_stop(alice, gateway):
    conversation, tab_a = await chat(alice, gateway)
    tab_b = await open_socket(alice, conversation.public_id)
    await receive(tab_b)
    gateway.enqueue(Script(words=3000, token_delay=0.003))
    await tab_a.send_json_to({"type": "send", "content": "long"})
    await frames_until(tab_b, "delta")
    await tab_b.send_json_to({"type": "stop"})
    frames_a = await frames_until(tab_a, "done")
    frames_b = await frames_until(tab_b, "done")
    text_a = "".join(f["text"] for f in frames_a if f["type"] == "delta")
    text_b_rest = "".join(f["text"] for f in frames_b if f["type"] == "delta")
    assert frames_a[-1]["status"] == frames_b[-1]["status"] == "stopped"
    assert frames_a[-1]["content"] == frames_b[-1]["content"] == text_a
    assert text_a.endswith(text_b_rest)
    (_, reply) = await stored(conversation)
    assert reply.content == text_a
    await tab_a.disconnect()
    await tab_b.disconnect()


async def test_state_reports_no_generation_once_the_reply_is_finished(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to({"type": "send", "content": "short"})
    await frames_until(sock, "done")
    await generation.registry.wait(conversation.public_id)
    await sock.disconnect()
    again = await open_socket(alice, conversation.public_id)
    assert await receive(again) == {"type": "state", "generation": None}
    await again.disconnect()
