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
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from conversations import services
from conversations.fakegateway import Script, numbered_words
from conversations.models import Message
from tests.conftest import give_key, session_cookie
from tests.live import DaphneProcess
from tests.test_process_recovery import FAST_LEASES, connect

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
    conversation = await db(services.create_conversation)(user)
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
