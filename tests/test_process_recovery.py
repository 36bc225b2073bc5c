"""A Daphne process killed mid-reply (kill -9) beside others on a shared layer: the
checkpointed text survives and the reply is marked interrupted by the next process when
its lease runs out, never left streaming. (Alone on the in-memory layer, the next process
marks it at once: tests/test_lifecycle.py.)

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
from conversations.demo.script import Script
from conversations.models import Message, SearchDocument
from tests.conftest import give_key, session_cookie
from tests.support.processes import FAST_LEASES, DaphneProcess, connect

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


async def test_kill_9_mid_reply_keeps_the_checkpoint_and_the_next_process_marks_it_interrupted(
    alice, gateway
):
    await db(give_key)(alice, gateway, "sk-kill")
    conversation = await db(services.conversations.create_conversation)(alice)
    cookie = await db(session_cookie)(alice)
    gateway.enqueue(Script(words=5000, token_delay=0.01))

    shared = {**FAST_LEASES, "REDIS_URL": os.environ["REDIS_URL"]}
    first = await asyncio.to_thread(DaphneProcess(**shared).start)
    try:
        ws = await connect(first, cookie, conversation.public_id)
        assert json.loads(await ws.recv())["type"] == "state"
        await ws.send(json.dumps({"type": "send", "content": "write a lot"}))
        received = ""
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["type"] == "delta":
                received += frame["text"]
        first.kill()  # SIGKILL: no finally, no shutdown hook
        await ws.close()
    finally:
        first.kill()

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "streaming"
    assert reply.content and received.startswith(reply.content)
    # The checkpoint is at most ~1 s old: 100 tokens at 100 tokens/s.
    assert len(reply.content.split()) >= len(received.split()) - 100
    checkpoint = reply.content

    await asyncio.sleep(1.2)  # the dead process's lease runs out
    with DaphneProcess(**shared) as second:
        ws = await connect(second, cookie, conversation.public_id)
        state = json.loads(await ws.recv())
        assert state == {"type": "state", "generation": None}
        done = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert done["type"] == "done" and done["status"] == "interrupted"
        assert done["content"] == checkpoint
        await ws.close()

    await reply.arefresh_from_db()
    assert reply.status == "interrupted"
    assert reply.content == checkpoint
    assert await Message.objects.filter(status="streaming").acount() == 0
    # What the dead process would have indexed at the end is indexed by the reaper: the
    # question, the partial reply and the conversation's automatic title.
    documents = SearchDocument.objects.filter(conversation=conversation)
    assert await documents.acount() == 3
    assert await documents.filter(message=None).aexists()
