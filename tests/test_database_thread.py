"""The socket's code reaches the database only through `database_sync_to_async`.

`ConversationConsumer.dispatch` skips Channels' round trip to the database thread before
every handler (which closes stale connections) because of this: each of its calls closes
them around itself in that thread. A query outside it (Django's async ORM, plain
`sync_to_async`) could run on a connection past CONN_MAX_AGE or broken by a database
restart.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from django.db.backends.utils import CursorWrapper

from tests.conftest import frames_until, give_key, open_socket, receive
from tests.support.chat import new_conversation

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture
def queries_outside(monkeypatch) -> list[str]:
    """The SQL of every query run outside a `database_sync_to_async` call."""
    inside = threading.local()
    outside: list[str] = []
    handler = DatabaseSyncToAsync.thread_handler

    def tracked_handler(self: Any, loop: Any, *args: Any, **kwargs: Any) -> Any:
        inside.depth = getattr(inside, "depth", 0) + 1
        try:
            return handler(self, loop, *args, **kwargs)
        finally:
            inside.depth -= 1

    def tracked(run: Any) -> Any:
        def execute(self: Any, sql: str, *args: Any) -> Any:
            if not getattr(inside, "depth", 0):
                outside.append(sql)
            return run(self, sql, *args)

        return execute

    monkeypatch.setattr(DatabaseSyncToAsync, "thread_handler", tracked_handler)
    monkeypatch.setattr(CursorWrapper, "_execute", tracked(CursorWrapper._execute))
    monkeypatch.setattr(CursorWrapper, "_executemany", tracked(CursorWrapper._executemany))
    return outside


async def test_a_socket_reaches_the_database_only_through_database_sync_to_async(
    alice, gateway, queries_outside
):
    await db(give_key)(alice, gateway, "sk-database-thread")
    conversation = await new_conversation(alice)
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    # Nothing runs here: the stop asks the database whether another process writes a reply.
    await socket.send_json_to({"type": "stop"})
    assert (await receive(socket))["code"] == "nothing_to_stop"
    await socket.send_json_to({"type": "send", "content": "hello"})
    assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
    await socket.send_json_to({"type": "regenerate"})
    assert (await frames_until(socket, "done"))[-1]["status"] == "complete"
    await socket.disconnect()

    assert queries_outside == []
