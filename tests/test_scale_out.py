"""Two real Daphne processes sharing PostgreSQL and Redis: a tab on B sees, resumes and
stops a reply running on A, and when A dies B's tabs see the reply marked interrupted.

Runs when DATABASE_URL (PostgreSQL) and REDIS_URL are set, as `.ci/run`'s second pass does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from conversations import services
from conversations.demo.script import Script, numbered_words
from conversations.models import Message
from tests.conftest import give_key, session_cookie
from tests.support.processes import FAST_LEASES, DaphneProcess, RedisServer, connect

SHARED = bool(settings.REDIS_URL) and connection.vendor == "postgresql"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not SHARED,
        reason="needs PostgreSQL and Redis: set DATABASE_URL=postgres://... and REDIS_URL=redis://... "
        "(.ci/run does, in its second pass)",
    ),
]

db = database_sync_to_async


async def frames_until(ws, frame_type: str, timeout: float = 20) -> list[dict]:
    received = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if frame["type"] == "conversation":
            continue
        received.append(frame)
        if frame["type"] == frame_type:
            return received


@pytest.fixture
def two_processes():
    env = {**FAST_LEASES, "REDIS_URL": os.environ["REDIS_URL"]}
    a, b = DaphneProcess(**env), DaphneProcess(**env)
    a.start()
    b.start()
    yield a, b
    a.kill()
    b.kill()


async def setup_chat(user, gateway):
    await db(give_key)(user, gateway, "sk-shared")
    conversation = await db(services.conversations.create_conversation)(user)
    cookie = await db(session_cookie)(user)
    return conversation, cookie


async def test_a_tab_on_b_receives_every_delta_of_a_reply_running_on_a(
    alice, gateway, two_processes
):
    a, b = two_processes
    conversation, cookie = await setup_chat(alice, gateway)
    gateway.enqueue(Script(words=300, token_delay=0.003))
    on_a = await connect(a, cookie, conversation.public_id)
    on_b = await connect(b, cookie, conversation.public_id)
    assert json.loads(await on_a.recv())["type"] == "state"
    assert json.loads(await on_b.recv())["type"] == "state"
    await on_a.send(json.dumps({"type": "send", "content": "across processes"}))
    received = await frames_until(on_b, "done")
    seqs = [f["seq"] for f in received if f["type"] == "delta"]
    assert seqs == list(range(1, len(seqs) + 1))
    text = "".join(f["text"] for f in received if f["type"] == "delta")
    assert text == received[-1]["content"] == numbered_words(300)
    await on_a.close()
    await on_b.close()


async def test_a_tab_joining_on_b_mid_reply_resumes_exactly(alice, gateway, two_processes):
    a, b = two_processes
    conversation, cookie = await setup_chat(alice, gateway)
    gateway.enqueue(Script(words=400, token_delay=0.005))
    on_a = await connect(a, cookie, conversation.public_id)
    await on_a.recv()
    await on_a.send(json.dumps({"type": "send", "content": "resume me"}))
    await frames_until(on_a, "delta")
    await asyncio.sleep(0.3)
    on_b = await connect(b, cookie, conversation.public_id)
    state = json.loads(await on_b.recv())
    assert state["type"] == "state" and state["generation"]["seq"] > 0
    rest = await frames_until(on_b, "done")
    seqs = [f["seq"] for f in rest if f["type"] == "delta"]
    start = state["generation"]["seq"]
    assert seqs == list(range(start + 1, start + 1 + len(seqs)))
    text = state["generation"]["text"] + "".join(f["text"] for f in rest if f["type"] == "delta")
    assert text == rest[-1]["content"] == numbered_words(400)
    await on_a.close()
    await on_b.close()


async def test_stop_from_b_stops_the_reply_running_on_a(alice, gateway, two_processes):
    a, b = two_processes
    conversation, cookie = await setup_chat(alice, gateway)
    gateway.enqueue(Script(words=5000, token_delay=0.005))
    on_a = await connect(a, cookie, conversation.public_id)
    on_b = await connect(b, cookie, conversation.public_id)
    await on_a.recv()
    await on_b.recv()
    await on_a.send(json.dumps({"type": "send", "content": "long"}))
    await frames_until(on_b, "delta")
    await on_b.send(json.dumps({"type": "stop"}))
    done_b = (await frames_until(on_b, "done"))[-1]
    done_a = (await frames_until(on_a, "done"))[-1]
    assert done_a["status"] == done_b["status"] == "stopped"
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "stopped" and reply.content == done_a["content"]
    assert not gateway.requests[0].completed
    await on_a.close()
    await on_b.close()


IDLE_SECONDS = 12  # past redis-py 8's 5 s socket timeout twice, and Daphne's 10 s


async def test_idle_pages_stay_open_on_both_processes(alice, gateway, two_processes):
    # Real time must pass here: what broke was a 5 s socket timeout inside redis-py.
    a, b = two_processes
    cookie = await db(session_cookie)(alice)
    conversations = [await db(services.conversations.create_conversation)(alice) for _ in range(6)]
    sockets = [
        await connect(a if i % 2 else b, cookie, c.public_id) for i, c in enumerate(conversations)
    ]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "state"
    await asyncio.sleep(IDLE_SECONDS)
    # Still open, and still served: a frame each gets its answer.
    for ws in sockets:
        assert ws.close_code is None
        await ws.send(json.dumps({"type": "stop"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["code"] == "nothing_to_stop"
    for ws in sockets:
        await ws.close()
    for server in (a, b):
        log = server.log_path.read_text()
        assert "TimeoutError" not in log and "Traceback" not in log, log[-2000:]


class Page:
    """What the chat page does with the frames of one reply: it keeps the text so far by
    `seq`, reconnects (and so resyncs) after a close or a gap, and ends at `done`."""

    def __init__(self, server: DaphneProcess, cookie: bytes, conversation_id) -> None:
        self.server, self.cookie, self.conversation_id = server, cookie, conversation_id
        self.close_codes: list[int] = []
        self.ws = None

    async def open(self) -> None:
        while True:
            try:
                self.ws = await connect(self.server, self.cookie, self.conversation_id)
                return
            except (OSError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.5)

    async def follow(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        text, seq = "", 0
        while time.monotonic() < deadline:
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            except websockets.exceptions.ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd else 1006)
                await self.open()
                continue
            if frame["type"] == "state":
                generation = frame["generation"] or {"text": text, "seq": seq}
                text, seq = generation["text"], generation["seq"]
            elif frame["type"] == "delta":
                if frame["seq"] != seq + 1:
                    self.close_codes.append(0)  # a gap: the page reconnects to resync
                    await self.ws.close()
                    await self.open()
                    continue
                text, seq = text + frame["text"], frame["seq"]
            elif frame["type"] == "done":
                return {"text": text, "done": frame}
        raise AssertionError("the page never saw the reply end")


async def test_a_redis_restart_mid_reply_loses_nothing(alice, gateway):
    redis = RedisServer().start()
    env = {**FAST_LEASES, "REDIS_URL": redis.url}
    a, b = DaphneProcess(**env), DaphneProcess(**env)
    try:
        a.start()
        b.start()
        conversation, cookie = await setup_chat(alice, gateway)
        gateway.enqueue(Script(words=600, token_delay=0.01))
        on_a, on_b = (
            Page(a, cookie, conversation.public_id),
            Page(b, cookie, conversation.public_id),
        )
        await on_a.open()
        await on_b.open()
        await on_a.ws.send(json.dumps({"type": "send", "content": "through a restart"}))
        followers = [asyncio.create_task(page.follow()) for page in (on_a, on_b)]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis.start)
        seen = await asyncio.gather(*followers)
    finally:
        a.kill()
        b.kill()
        redis.stop()
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "complete"
    assert reply.content == numbered_words(600)
    for page in seen:
        assert page["done"]["content"] == reply.content
    # The server never gave up on a socket: no internal error (1011) closed one.
    assert 1011 not in on_a.close_codes + on_b.close_codes


async def test_when_a_dies_the_tabs_on_b_see_the_reply_interrupted(alice, gateway, two_processes):
    a, b = two_processes
    conversation, cookie = await setup_chat(alice, gateway)
    gateway.enqueue(Script(words=5000, token_delay=0.01))
    on_a = await connect(a, cookie, conversation.public_id)
    on_b = await connect(b, cookie, conversation.public_id)
    await on_a.recv()
    await on_b.recv()
    await on_a.send(json.dumps({"type": "send", "content": "then die"}))
    await frames_until(on_b, "delta")
    await asyncio.sleep(0.6)
    a.kill()
    done = (await frames_until(on_b, "done", timeout=15))[-1]
    assert done["status"] == "interrupted"
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "interrupted" and reply.content == done["content"] != ""
    await on_b.close()


async def test_a_socket_that_cannot_join_its_group_closes_with_1013(alice, gateway):
    # On the wire, through Daphne's websocket library (which refuses 1013 unless told).
    redis = RedisServer().start()
    server = DaphneProcess(**FAST_LEASES, REDIS_URL=redis.url)
    try:
        await asyncio.to_thread(server.start)
        conversation, cookie = await setup_chat(alice, gateway)
        await asyncio.to_thread(redis.stop)
        # The consumer retries joining for about layers.LAYER_PATIENCE (10 s), then accepts
        # only to close with "try again later".
        ws = await websockets.connect(
            f"{server.ws_url}/ws/conversations/{conversation.public_id}/",
            additional_headers={"Cookie": cookie.decode(), "Origin": server.http_url},
            open_timeout=30,
        )
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 1013
    finally:
        server.kill()
        redis.stop()


async def test_a_tab_on_b_follows_every_switch_and_regenerate_made_on_a(
    alice, gateway, two_processes
):
    a, b = two_processes
    conversation, cookie = await setup_chat(alice, gateway)
    gateway.enqueue(Script(text="version one"), Script(text="version two"))
    on_a = await connect(a, cookie, conversation.public_id)
    on_b = await connect(b, cookie, conversation.public_id)
    await on_a.recv()
    await on_b.recv()
    await on_a.send(json.dumps({"type": "send", "content": "Q"}))
    reply = (await frames_until(on_b, "done"))[1]["message"]
    await on_a.send(json.dumps({"type": "regenerate", "message_id": reply["id"]}))
    received = await frames_until(on_b, "done")
    thread = next(f for f in received if f["type"] == "thread")["messages"]
    assert [(m["version"], m["versions"]) for m in thread] == [(1, 1), (2, 2)]
    assert received[-1]["content"] == "version two"

    await on_a.send(json.dumps({"type": "switch", "message_id": reply["id"]}))
    thread = (await frames_until(on_b, "thread"))[-1]["messages"]
    assert [m["content"] for m in thread] == ["Q", "version one"]
    await on_a.close()
    await on_b.close()
