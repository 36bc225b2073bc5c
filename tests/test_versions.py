"""Versions over the websocket: `regenerate` with a message_id, `edit`, `switch`, the
`thread` frame every socket of the conversation gets, and bad input. Real consumer, real
SDK, the fake gateway over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from conversations import generation, services
from conversations.demo.script import Script
from conversations.models import Message
from tests.conftest import frames_until, open_socket, receive
from tests.support.chat import chat, new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def turn(sock: Any, content: str) -> list[dict[str, Any]]:
    await sock.send_json_to({"type": "send", "content": content})
    return await frames_until(sock, "done")


async def snapshot(conversation: Any) -> tuple[Any, ...]:
    await conversation.arefresh_from_db()
    return conversation.shown_leaf_id, [
        (m.pk, m.parent_id, m.shown_child_id, m.content) for m in await stored(conversation)
    ]


async def test_frames_carry_parent_version_and_versions(alice, gateway):
    _conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="A1"), Script(text="A1 bis"))
    question, reply = (f["message"] for f in (await turn(sock, "Q1"))[:2])
    assert (question["parent_id"], question["version"], question["versions"]) == (None, 1, 1)
    assert (reply["parent_id"], reply["version"], reply["versions"]) == (question["id"], 1, 1)

    await sock.send_json_to({"type": "regenerate", "message_id": reply["id"]})
    received = await frames_until(sock, "done")
    thread = next(f for f in received if f["type"] == "thread")["messages"]
    new = next(f for f in received if f["type"] == "message")["message"]
    assert [m["id"] for m in thread] == [question["id"], new["id"]]
    assert thread[1] == new
    assert (new["parent_id"], new["version"], new["versions"], new["status"]) == (
        question["id"],
        2,
        2,
        "streaming",
    )
    await sock.disconnect()


async def test_regenerate_twice_switch_back_to_version_one_and_follow_up(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    other_tab = await open_socket(alice, conversation.public_id)
    assert (await receive(other_tab))["type"] == "state"
    gateway.enqueue(Script(text="first"), Script(text="second"), Script(text="third"))
    reply = (await turn(sock, "Q"))[1]["message"]
    await frames_until(other_tab, "done")
    for _ in range(2):
        await sock.send_json_to({"type": "regenerate", "message_id": reply["id"]})
        await frames_until(sock, "done")
        await frames_until(other_tab, "done")

    await sock.send_json_to({"type": "switch", "message_id": reply["id"]})
    for socket in (sock, other_tab):
        frame = await receive(socket)
        assert frame["type"] == "thread"
        assert [(m["content"], m["version"], m["versions"]) for m in frame["messages"]] == [
            ("Q", 1, 1),
            ("first", 1, 3),
        ]

    gateway.enqueue(Script(text="follow-up answer"))
    await turn(sock, "and then?")
    # Upstream: exactly the shown thread, with version 1's text.
    assert gateway.requests[-1].body["messages"] == [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "and then?"},
    ]
    await sock.disconnect()
    await other_tab.disconnect()


async def test_a_switch_while_a_reply_streams_elsewhere_does_not_stop_it(alice, gateway):
    _conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="first"))
    reply = (await turn(sock, "Q"))[1]["message"]
    gateway.enqueue(Script(words=300, token_delay=0.005))
    await sock.send_json_to({"type": "regenerate", "message_id": reply["id"]})
    streaming = (await frames_until(sock, "delta"))[-1]["message_id"]

    await sock.send_json_to({"type": "switch", "message_id": reply["id"]})
    frame = await frames_until(sock, "thread")
    assert [m["content"] for m in frame[-1]["messages"]] == ["Q", "first"]
    # A send while it streams is refused, as ever, and stores nothing.
    await sock.send_json_to({"type": "send", "content": "meanwhile"})
    refused = await frames_until(sock, "error")
    assert refused[-1]["code"] == "generation_running"
    done = (await frames_until(sock, "done"))[-1]
    assert (done["message_id"], done["status"]) == (streaming, "complete")
    assert len(done["content"].split()) == 300
    assert not await Message.objects.filter(content="meanwhile").aexists()
    await sock.disconnect()


async def test_edit_then_switch_back_to_the_old_branch(alice, gateway):
    _conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="A1"), Script(text="A2"), Script(text="A1'"))
    q1 = (await turn(sock, "Q1"))[0]["message"]
    await turn(sock, "Q2")
    await sock.send_json_to({"type": "edit", "message_id": q1["id"], "content": "Q1'"})
    received = await frames_until(sock, "done")
    thread = next(f for f in received if f["type"] == "thread")["messages"]
    assert [(m["content"], m["version"], m["versions"]) for m in thread] == [
        ("Q1'", 2, 2),
        ("", 1, 1),
    ]
    await sock.send_json_to({"type": "switch", "message_id": q1["id"]})
    thread = (await frames_until(sock, "thread"))[-1]["messages"]
    assert [m["content"] for m in thread] == ["Q1", "A1", "Q2", "A2"]
    await sock.disconnect()


async def test_bad_version_requests_get_a_clear_error_and_change_nothing(alice, bob, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(Script(text="A"), Script(text="bob's"))
    question, reply = (f["message"] for f in (await turn(sock, "Q"))[:2])
    elsewhere = await new_conversation(alice)
    other = await db(services.turns.start_turn)(alice, elsewhere, "other conversation")
    await generation.registry.wait(elsewhere.public_id)
    _bob_conversation, bob_sock = await chat(bob, gateway, key="sk-bob")
    bobs = (await turn(bob_sock, "bob's question"))[1]["message"]
    await bob_sock.disconnect()
    before = await snapshot(conversation)

    foreign = [str(other.assistant_message.public_id), bobs["id"]]
    cases = [
        *[({"type": "switch", "message_id": m}, "message_not_found") for m in foreign],
        *[({"type": "regenerate", "message_id": m}, "message_not_found") for m in foreign],
        (
            {"type": "edit", "message_id": str(other.user_message.public_id), "content": "x"},
            "message_not_found",
        ),
        ({"type": "regenerate", "message_id": question["id"]}, "not_regenerable"),
        ({"type": "edit", "message_id": reply["id"], "content": "x"}, "not_editable"),
        ({"type": "switch", "message_id": "not-a-uuid"}, "invalid_message_id"),
        ({"type": "switch"}, "invalid_message_id"),
        ({"type": "regenerate", "message_id": 7}, "invalid_message_id"),
    ]
    for frame, code in cases:
        await sock.send_json_to(frame)
        error = await receive(sock)
        assert (error["type"], error["code"]) == ("error", code), frame
        assert len(error["message"]) > 10, frame
    assert await snapshot(conversation) == before
    assert len(gateway.requests) == 2  # alice's turn and bob's: nothing since
    await sock.disconnect()


async def test_the_thread_frame_of_a_long_thread_is_its_newest_page(alice):
    # A frame with 1,000 messages would be megabytes for every socket on every switch: it
    # carries the newest page, and says more is above (the page fetches it when scrolled to).
    from conversations import pages
    from tests.support.long import long_thread, thread_ids

    conversation = await db(long_thread)(alice, 1000)
    every = await db(thread_ids)(conversation)
    socket = await open_socket(alice, conversation.public_id)
    assert (await receive(socket))["type"] == "state"

    await socket.send_json_to({"type": "switch", "message_id": every[500]})
    thread = (await frames_until(socket, "thread"))[-1]
    await socket.disconnect()

    assert [m["id"] for m in thread["messages"]] == every[-pages.PAGE_SIZE :]
    assert thread["older"] is True
    assert thread["messages"][0]["parent_id"] == every[-pages.PAGE_SIZE - 1]


async def test_the_thread_frame_of_a_short_thread_is_all_of_it(alice, gateway):
    _, socket = await chat(alice, gateway)
    gateway.enqueue(Script(text="One"))
    await socket.send_json_to({"type": "send", "content": "Hello"})
    done = (await frames_until(socket, "done"))[-1]

    await socket.send_json_to({"type": "switch", "message_id": done["message_id"]})
    thread = (await frames_until(socket, "thread"))[-1]
    await socket.disconnect()

    assert [m["content"] for m in thread["messages"]] == ["Hello", "One"]
    assert thread["older"] is False
