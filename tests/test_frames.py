"""Frames are built where they are sent: a `done` frame's Markdown is rendered in the event
loop, never in the one database thread that every socket of the process shares."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from conversations import frames, rendering, services
from conversations.demo.script import Script
from conversations.models import Message
from conversations.rendering import render_markdown
from tests.conftest import frames_until, give_key, open_socket, receive
from tests.support.chat import new_conversation

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture
def rendering_threads(monkeypatch) -> list[threading.Thread]:
    """The thread of every Markdown rendering a frame asks for."""
    threads: list[threading.Thread] = []

    def recording(text: str) -> str:
        threads.append(threading.current_thread())
        return render_markdown(text)

    # The final save renders (`generation.rendered`); a frame of a reply saved without its
    # HTML renders itself.
    monkeypatch.setattr(frames, "render_markdown", recording)
    monkeypatch.setattr(rendering, "render_markdown", recording)
    return threads


async def test_a_finished_reply_is_rendered_in_the_event_loop(alice, gateway, rendering_threads):
    await db(give_key)(alice, gateway, "sk-frames")
    conversation = await new_conversation(alice)
    gateway.enqueue(Script(text="**Bold** and `code`."))
    socket = await open_socket(alice, conversation.public_id)
    await receive(socket)
    await socket.send_json_to({"type": "send", "content": "Render this"})
    done = (await frames_until(socket, "done"))[-1]
    await socket.disconnect()

    assert done["status"] == "complete" and "<strong>Bold</strong>" in done["html"]
    # Once, before the final save, which stores it: the frame sends the stored HTML.
    assert rendering_threads == [threading.current_thread()]
    stored = await Message.objects.aget(public_id=done["message_id"])
    assert stored.html == done["html"] and stored.html_version == rendering.VERSION


async def test_a_reply_of_a_stopped_process_is_rendered_in_the_event_loop(
    alice, gateway, rendering_threads
):
    # A placeholder whose process stopped renewing its lease: the socket that opens marks it
    # interrupted (in the database thread) and every page gets its `done`.
    await db(give_key)(alice, gateway, "sk-frames")
    conversation = await new_conversation(alice)
    start = await services.events.call(
        services.turns.start_turn, alice, conversation, "Anyone there?"
    )
    await Message.objects.filter(pk=start.assistant_message.pk).aupdate(
        content="*Half* a reply", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    socket = await open_socket(alice, conversation.public_id)
    assert await receive(socket) == {"type": "state", "generation": None}
    done = await receive(socket)
    await socket.disconnect()

    assert done["type"] == "done" and done["status"] == "interrupted"
    assert "<em>Half</em>" in done["html"]
    assert rendering_threads == [threading.current_thread()]
    assert gateway.requests == []
