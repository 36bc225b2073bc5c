"""Restarts lose nothing (conversations/lifecycle.py): real Daphne processes, real signals.

SIGTERM drains: replies being written go on for up to CHAT_SHUTDOWN_GRACE seconds, then are
saved `interrupted` with exactly the text the sockets received; new turns are refused with
`server_restarting`; sockets close with 1012; the process exits. A process started on the
in-memory layer marks a dead process's replies interrupted at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from websockets.exceptions import ConnectionClosed

from conversations import generation, layers, lifecycle, services
from conversations.demo.script import Script
from conversations.models import Message, SearchDocument
from tests.conftest import frames_until, give_key, open_socket, receive, session_cookie
from tests.support.chat import chat as chat_in_process
from tests.support.chat import new_conversation
from tests.support.processes import FAST_LEASES, DaphneProcess, ServeProcess, connect
from tests.support.turns import exchange, keyed

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

# Single-process tests run on the in-memory layer whatever the suite runs on.
ALONE = {"REDIS_URL": ""}
SHARED = bool(settings.REDIS_URL) and connection.vendor == "postgresql"
needs_shared = pytest.mark.skipif(
    not SHARED,
    reason="needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL=redis://... "
    "(.ci/run does, in its second pass)",
)


async def frame_of(ws: Any, seconds: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), seconds))


async def follow_to_the_end(ws: Any) -> tuple[str, dict[str, Any], int | None]:
    """The deltas' text, the `done` frame, and the close code that follows it."""
    text, done = "", None
    while done is None:
        frame = await frame_of(ws, 40)
        if frame["type"] == "delta":
            text += frame["text"]
        elif frame["type"] == "done":
            done = frame
    try:
        await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed:
        pass
    return text, done, ws.close_code


async def first_deltas(ws: Any, count: int = 3) -> str:
    text = ""
    for _ in range(count):
        frame = await frame_of(ws)
        while frame["type"] != "delta":
            frame = await frame_of(ws)
        text += frame["text"]
    return text


async def exited(server: DaphneProcess, seconds: float = 20) -> int:
    assert server.process is not None
    return await asyncio.to_thread(server.process.wait, seconds)


async def signal_mid_reply(
    server: DaphneProcess, chat: dict[str, Any], signum: int
) -> tuple[str, str, dict[str, Any], int | None]:
    """Start `server`, send a message, send `signum` once its reply streams, follow the
    socket to its end and wait for the process to exit 0. Returns the text seen before
    the signal, the text after it, the `done` frame and the close code."""
    await asyncio.to_thread(server.start)
    try:
        ws = await connect(server, chat["cookie"], chat["conversation"].public_id)
        assert (await frame_of(ws))["type"] == "state"
        await ws.send(json.dumps({"type": "send", "content": "write a lot"}))
        seen = await first_deltas(ws)
        server.process.send_signal(signum)
        rest, done, code = await follow_to_the_end(ws)
        assert await exited(server) == 0
    finally:
        server.kill()
    return seen, rest, done, code


@pytest.fixture
async def chat(alice: Any, gateway: Any) -> dict[str, Any]:
    await db(give_key)(alice, gateway, "sk-restart")
    conversation = await db(services.conversations.create_conversation)(alice)
    return {"conversation": conversation, "cookie": await db(session_cookie)(alice)}


async def test_sigterm_lets_a_reply_that_ends_within_the_grace_finish_complete(chat, gateway):
    gateway.enqueue(Script(words=300, token_delay=0.01))  # about 3 s
    server = await asyncio.to_thread(DaphneProcess(CHAT_SHUTDOWN_GRACE="20", **ALONE).start)
    try:
        ws = await connect(server, chat["cookie"], chat["conversation"].public_id)
        assert (await frame_of(ws))["type"] == "state"
        await ws.send(json.dumps({"type": "send", "content": "a few words"}))
        seen = await first_deltas(ws)
        server.process.send_signal(signal.SIGTERM)
        rest, done, code = await follow_to_the_end(ws)
        assert await exited(server) == 0
    finally:
        server.kill()

    assert done["status"] == "complete"
    assert code == 1012
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.status == "complete"
    assert reply.content == seen + rest == done["content"]
    assert len(reply.content.split()) == 300


async def test_sigterm_saves_a_reply_longer_than_the_grace_interrupted_with_the_text_sent(
    chat, gateway
):
    gateway.enqueue(Script(words=5000, token_delay=0.01))  # about 50 s
    server = DaphneProcess(CHAT_SHUTDOWN_GRACE="1.5", **ALONE)
    seen, rest, done, code = await signal_mid_reply(server, chat, signal.SIGTERM)

    assert done["status"] == "interrupted"
    assert code == 1012
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.status == "interrupted"
    # Exactly what the socket received: every delta sent, nothing more.
    assert reply.content == seen + rest == done["content"]
    assert 0 < len(reply.content.split()) < 5000


async def test_a_second_signal_ends_the_grace_at_once_and_still_saves_the_reply(chat, gateway):
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    server = await asyncio.to_thread(DaphneProcess(CHAT_SHUTDOWN_GRACE="60", **ALONE).start)
    try:
        ws = await connect(server, chat["cookie"], chat["conversation"].public_id)
        assert (await frame_of(ws))["type"] == "state"
        await ws.send(json.dumps({"type": "send", "content": "write a lot"}))
        seen = await first_deltas(ws)
        server.process.send_signal(signal.SIGTERM)
        seen += await first_deltas(ws)  # still streaming: the grace is 60 s
        server.process.send_signal(signal.SIGINT)
        rest, done, code = await follow_to_the_end(ws)
        # Far sooner than the grace (the wait would raise after 20 s).
        assert await exited(server) == 0
    finally:
        server.kill()

    assert done["status"] == "interrupted" and code == 1012
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.content == seen + rest == done["content"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_manage_py_serve_passes_the_signal_on_and_daphne_drains(chat, gateway, signum):
    gateway.enqueue(Script(words=5000, token_delay=0.01))  # about 50 s
    server = ServeProcess(CHAT_SHUTDOWN_GRACE="1.5", **ALONE)
    # To the command only, as systemd or a Ctrl-C reaches it: Daphne has a session of its
    # own and hears of it from the command.
    seen, rest, done, code = await signal_mid_reply(server, chat, signum)

    assert len(server.started_children) == 1  # Daphne; no demo gateway (a key is set)
    assert done["status"] == "interrupted"
    assert code == 1012
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.status == "interrupted"
    assert reply.content == seen + rest == done["content"]
    assert 0 < len(reply.content.split()) < 5000
    # Daphne ended before the command did: nothing listens any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


async def test_a_send_during_the_drain_is_refused_with_server_restarting(chat, gateway):
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    server = await asyncio.to_thread(DaphneProcess(CHAT_SHUTDOWN_GRACE="2", **ALONE).start)
    try:
        writer = await connect(server, chat["cookie"], chat["conversation"].public_id)
        other = await connect(server, chat["cookie"], chat["conversation"].public_id)
        for ws in (writer, other):
            assert (await frame_of(ws))["type"] == "state"
        await writer.send(json.dumps({"type": "send", "content": "write a lot"}))
        await first_deltas(other)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)  # the signal is handled in the server's event loop
        # Both sockets follow the reply written here, so both stay open through the grace.
        await other.send(json.dumps({"type": "send", "content": "later", "client_id": "c-9"}))
        refusal = None
        while refusal is None:
            frame = await frame_of(other)
            if frame["type"] == "error":
                refusal = frame
        _, done, code = await follow_to_the_end(other)
        assert await exited(server) == 0
    finally:
        server.kill()

    assert refusal["code"] == "server_restarting"
    assert refusal["client_id"] == "c-9"
    assert "reconnects" in refusal["message"]
    assert done["status"] == "interrupted" and code == 1012
    contents = [m.content async for m in Message.objects.filter(role="user")]
    assert contents == ["write a lot"]


async def test_sigterm_with_nothing_running_closes_sockets_with_1012_and_exits(chat):
    server = await asyncio.to_thread(DaphneProcess(**ALONE).start)
    try:
        ws = await connect(server, chat["cookie"], chat["conversation"].public_id)
        assert (await frame_of(ws))["type"] == "state"
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1012
        assert await exited(server) == 0
    finally:
        server.kill()


async def test_after_kill_9_the_next_process_shows_the_reply_interrupted_at_once(chat, gateway):
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    # Leases far longer than the test: only the recovery at start can end the reply.
    slow_leases = {"CHAT_LEASE_SECONDS": "600", "CHAT_CHECKPOINT_INTERVAL": "0.2", **ALONE}
    first = await asyncio.to_thread(DaphneProcess(**slow_leases).start)
    try:
        ws = await connect(first, chat["cookie"], chat["conversation"].public_id)
        assert (await frame_of(ws))["type"] == "state"
        await ws.send(json.dumps({"type": "send", "content": "write a lot"}))
        await first_deltas(ws, 30)
        first.kill()  # SIGKILL: no drain, no finally
    finally:
        first.kill()
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.status == "streaming"
    checkpoint = reply.content

    with DaphneProcess(**slow_leases) as second:
        ws = await connect(second, chat["cookie"], chat["conversation"].public_id)
        assert await frame_of(ws) == {"type": "state", "generation": None}
        await ws.close()

    await reply.arefresh_from_db()
    assert reply.status == "interrupted"
    assert reply.content == checkpoint
    # Indexed as the dead process would have at the end: the question, the partial reply
    # and the conversation's automatic title.
    documents = SearchDocument.objects.filter(conversation=chat["conversation"])
    assert await documents.acount() == 3
    assert await documents.filter(message=None).aexists()


@needs_shared
@pytest.mark.parametrize(
    ("words", "grace", "status"),
    [(300, "20", "complete"), (5000, "1.5", "interrupted")],
    ids=["reply-ends-within-the-grace", "reply-longer-than-the-grace"],
)
async def test_a_rolling_restart_moves_the_page_to_the_other_process_with_the_exact_reply(
    chat, gateway, words, grace, status
):
    shared = {**FAST_LEASES, "REDIS_URL": os.environ["REDIS_URL"]}
    a = await asyncio.to_thread(DaphneProcess(CHAT_SHUTDOWN_GRACE=grace, **shared).start)
    b = await asyncio.to_thread(DaphneProcess(**shared).start)
    conversation_id = chat["conversation"].public_id
    try:
        gateway.enqueue(Script(words=words, token_delay=0.01))
        page = await connect(a, chat["cookie"], conversation_id)
        assert (await frame_of(page))["type"] == "state"
        await page.send(json.dumps({"type": "send", "content": "across a deploy"}))
        seen = await first_deltas(page)
        a.process.send_signal(signal.SIGTERM)
        rest, done, code = await follow_to_the_end(page)
        assert code == 1012
        # The page reconnects; the proxy sends it to B.
        page = await connect(b, chat["cookie"], conversation_id)
        assert await frame_of(page) == {"type": "state", "generation": None}
        assert await exited(a) == 0
        # A comes back and serves the same conversation.
        a = await asyncio.to_thread(DaphneProcess(**shared).start)
        again = await connect(a, chat["cookie"], conversation_id)
        assert await frame_of(again) == {"type": "state", "generation": None}
        await again.close()
        await page.close()
    finally:
        a.kill()
        b.kill()

    assert done["status"] == status
    reply = await Message.objects.aget(conversation=chat["conversation"], role="assistant")
    assert reply.status == status
    assert reply.content == seen + rest == done["content"]


# --- The same parts in this process --------------------------------------------------------
async def test_new_turns_are_refused_while_the_process_drains(alice, gateway):
    conversation, sock = await chat_in_process(alice, gateway)
    generation.registry.draining = True
    await sock.send_json_to({"type": "send", "content": "hello", "client_id": "c-1"})
    # The socket follows no reply written here: it is refused, then closed for the restart.
    refusal = await receive(sock)
    assert refusal["code"] == "server_restarting" and refusal["client_id"] == "c-1"
    assert (await sock.receive_output(timeout=5))["code"] == 1012
    for action in (
        generation.regenerate(alice, conversation),
        generation.edit(alice, conversation, "x", "y"),
    ):
        with pytest.raises(services.ServiceError) as refused:
            await action
        assert refused.value.code == "server_restarting"
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_a_socket_that_opens_during_the_drain_gets_its_state_then_1012(alice, gateway):
    await db(give_key)(alice, gateway, "sk-drain")
    conversation = await db(services.conversations.create_conversation)(alice)
    generation.registry.draining = True
    sock = await open_socket(alice, conversation.public_id)
    assert await receive(sock) == {"type": "state", "generation": None}
    assert (await sock.receive_output(timeout=5))["code"] == 1012


async def test_the_drain_closes_idle_sockets_first_and_those_following_a_reply_at_its_end(
    alice, gateway
):
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    writing, follower = await chat_in_process(alice, gateway)
    idle = await open_socket(alice, (await new_conversation(alice)).public_id)
    assert (await receive(idle))["type"] == "state"
    await follower.send_json_to({"type": "send", "content": "long"})
    await frames_until(follower, "delta")

    stopped = asyncio.Event()
    drain = lifecycle.Drain(stopped.set, grace=0.3)
    drain.on_signal(signal.SIGTERM)
    assert (await idle.receive_output(timeout=5))["code"] == 1012
    received = await frames_until(follower, "done")
    assert (await follower.receive_output(timeout=5))["code"] == 1012
    await asyncio.wait_for(stopped.wait(), 10)

    reply = await Message.objects.aget(conversation=writing, role="assistant")
    assert received[-1]["status"] == reply.status == "interrupted"
    assert reply.content == received[-1]["content"]


async def test_a_second_signal_ends_the_grace(alice, gateway):
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    _, sock = await chat_in_process(alice, gateway)
    await sock.send_json_to({"type": "send", "content": "long"})
    await frames_until(sock, "delta")
    stopped = asyncio.Event()
    drain = lifecycle.Drain(stopped.set, grace=600)
    drain.on_signal(signal.SIGTERM)
    drain.on_signal(signal.SIGTERM)
    assert (await frames_until(sock, "done"))[-1]["status"] == "interrupted"
    await asyncio.wait_for(stopped.wait(), 10)


async def test_the_drain_stops_the_server_when_nothing_runs():
    stopped = asyncio.Event()
    drain = lifecycle.Drain(stopped.set, grace=600)
    drain.on_signal(signal.SIGINT)
    await asyncio.wait_for(stopped.wait(), 5)
    assert generation.registry.draining


def test_at_start_only_streaming_replies_are_marked_interrupted(alice):
    keyed(alice)
    conversation = services.conversations.create_conversation(alice)
    finished = exchange(alice, conversation, "first", "an answer")
    start = services.turns.start_turn(alice, conversation, "second")
    marked = services.replies.interrupt_orphans()
    assert [m.pk for m in marked] == [start.assistant_message.pk]
    reply = Message.objects.get(pk=start.assistant_message.pk)
    assert reply.status == "interrupted" and reply.lease_expires_at is None
    finished.refresh_from_db()
    assert finished.status == "complete"
    assert services.replies.interrupt_orphans() == []


def test_only_the_in_memory_layers_count_as_alone(settings):
    for local in ("conversations.layers.LocalChannelLayer", "channels.layers.InMemoryChannelLayer"):
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": local}}
        assert not layers.is_shared()
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {}}
    }
    assert layers.is_shared()
