"""Sending attachments: over the websocket, through the real SDK, to the bundled gateway,
which records what it received (issue 18: what goes upstream), with the files on the file
system and on a real S3 API server."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from conversations import services
from conversations.demo.script import Script
from conversations.models import ApiCredential, Attachment, Message
from tests.conftest import frames_until, receive, signed_in
from tests.support import files
from tests.support.chat import chat, new_conversation

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _every_storage(store: str) -> None:
    """Each test on the file system and on the S3 server (tests/conftest.py): the
    generation reads the files it sends from there."""


async def attach(user: Any, conversation: Any, name: str, data: bytes) -> str:
    attachment = await db(services.attachments.upload)(
        user, conversation, SimpleUploadedFile(name, data)
    )
    return str(attachment.public_id)


async def test_images_pdfs_and_text_go_upstream_as_blocks_with_the_text_last(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    ids = [
        await attach(alice, conversation, "beach.jpg", files.photo(4000, 3000)),
        await attach(alice, conversation, "report.pdf", files.pdf("Revenue grew 12 percent.")),
        await attach(alice, conversation, "data.csv", b"city,people\nShenzhen,17\n"),
    ]
    await sock.send_json_to({"type": "send", "content": "What is in these?", "attachments": ids})
    question = await receive(sock)
    assert question["type"] == "message"
    shown = question["message"]["attachments"]
    assert [a["id"] for a in shown] == ids
    assert [a["media_type"] for a in shown] == ["image/jpeg", "application/pdf", "text/csv"]
    assert all(a["url"].endswith(f"/attachments/{a['id']}/") for a in shown)
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"

    (request,) = gateway.requests
    image, document, text, typed = request.body["messages"][-1]["content"]
    assert image["type"] == "image" and image["source"]["media_type"] == "image/jpeg"
    with Image.open(io.BytesIO(base64.b64decode(image["source"]["data"]))) as sent:
        assert max(sent.size) == 1568
        assert not sent.getexif()
    assert document["type"] == "document"
    assert document["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(document["source"]["data"]).startswith(b"%PDF-")
    assert text == {"type": "text", "text": "File: data.csv\n\ncity,people\nShenzhen,17\n"}
    assert typed == {"type": "text", "text": "What is in these?"}
    linked = Attachment.objects.filter(message__isnull=False, message__role="user")
    assert await linked.acount() == 3


async def test_attachments_are_replayed_with_the_history(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    ids = [await attach(alice, conversation, "chart.png", files.png())]
    await sock.send_json_to({"type": "send", "content": "", "attachments": ids})
    await frames_until(sock, "done")
    await sock.send_json_to({"type": "send", "content": "And now?"})
    await frames_until(sock, "done")
    first, _, second = gateway.requests[-1].body["messages"]
    assert [block["type"] for block in first["content"]] == ["image"]  # no empty text block
    assert second == {"role": "user", "content": "And now?"}


async def test_a_model_without_pdfs_gets_their_text(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    await ApiCredential.objects.filter(user=alice).aupdate(pdf=False)
    ids = [await attach(alice, conversation, "report.pdf", files.pdf("Revenue grew 12 percent."))]
    await sock.send_json_to({"type": "send", "content": "Summarise", "attachments": ids})
    await frames_until(sock, "done")
    pdf_text, typed = gateway.requests[-1].body["messages"][-1]["content"]
    assert pdf_text["type"] == "text"
    assert pdf_text["text"].startswith("File: report.pdf\n\n")
    assert "Revenue grew 12 percent." in pdf_text["text"]
    assert typed["text"] == "Summarise"


async def test_a_new_version_of_a_question_keeps_its_files(alice, gateway):
    # Edit (issue 16) of a question sent with a file: the new version carries the file, in
    # its `message` frame and upstream (also when its reply is regenerated), and the old
    # version keeps it too.
    conversation, sock = await chat(alice, gateway)
    ids = [await attach(alice, conversation, "data.csv", b"a,b\n1,2\n")]
    await sock.send_json_to({"type": "send", "content": "Sum it", "attachments": ids})
    question = (await receive(sock))["message"]
    await frames_until(sock, "done")

    await sock.send_json_to({"type": "edit", "message_id": question["id"], "content": "Add up"})
    received = await frames_until(sock, "done")
    edited = next(f for f in received if f["type"] == "message")["message"]
    assert (edited["content"], edited["version"]) == ("Add up", 2)
    assert [a["name"] for a in edited["attachments"]] == ["data.csv"]
    sent = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "File: data.csv\n\na,b\n1,2\n"},
                {"type": "text", "text": "Add up"},
            ],
        }
    ]
    assert gateway.requests[-1].body["messages"] == sent
    # A regenerated reply to it is sent the file again.
    await sock.send_json_to({"type": "regenerate", "message_id": received[-1]["message_id"]})
    await frames_until(sock, "done")
    assert gateway.requests[-1].body["messages"] == sent
    assert len(gateway.requests) == 3
    old = Attachment.objects.filter(message__public_id=question["id"])
    assert [a.name async for a in old] == ["data.csv"]
    # Both versions name one stored file: it counts once against the person's storage.
    assert await db(services.attachments.storage_used)(alice) == len(b"a,b\n1,2\n")


async def test_a_file_lost_from_storage_is_named_and_the_thread_is_still_answered(alice, gateway):
    # A restored database without its files (or a bucket emptied by hand) must not fail
    # every later turn of the thread: the image is named, a PDF falls back to its text.
    conversation, sock = await chat(alice, gateway)
    ids = [
        await attach(alice, conversation, "chart.png", files.png()),
        await attach(alice, conversation, "report.pdf", files.pdf("Revenue grew 12 percent.")),
    ]
    await sock.send_json_to({"type": "send", "content": "Look", "attachments": ids})
    await frames_until(sock, "done")
    async for attachment in Attachment.objects.all():
        await db(attachment.file.storage.delete)(attachment.file.name)

    await sock.send_json_to({"type": "send", "content": "And now?"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    image, document, typed = gateway.requests[-1].body["messages"][0]["content"]
    assert image == {"type": "text", "text": "[File chart.png: no longer stored]"}
    assert document["type"] == "text" and "Revenue grew 12 percent." in document["text"]
    assert typed == {"type": "text", "text": "Look"}


@pytest.mark.parametrize(
    ("attachments", "code"),
    [
        ("not a list", "invalid_attachments"),
        (["not-a-uuid"], "invalid_attachments"),
        (["7d4c5c5e-4b1f-4a57-9a3b-0b1d2c3e4f50"] * 2, "invalid_attachments"),
        (["7d4c5c5e-4b1f-4a57-9a3b-0b1d2c3e4f50"], "attachment_not_found"),
    ],
)
async def test_bad_attachment_lists_are_refused_and_nothing_is_stored(
    alice, gateway, attachments, code
):
    conversation, sock = await chat(alice, gateway)
    await sock.send_json_to(
        {"type": "send", "content": "look", "attachments": attachments, "client_id": "c1"}
    )
    refusal = await receive(sock)
    assert (refusal["type"], refusal["code"], refusal["client_id"]) == ("error", code, "c1")
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert gateway.requests == []


async def test_another_persons_or_conversations_or_an_already_sent_file_is_refused(
    alice, bob, gateway
):
    conversation, sock = await chat(alice, gateway)
    other = await new_conversation(alice)
    await db(services.credentials.set_api_key)(bob, key="sk-bob", base_url=gateway.base_url)
    bobs = await new_conversation(bob)
    foreign = [
        await attach(bob, bobs, "bob.txt", b"bob's notes"),
        await attach(alice, other, "elsewhere.txt", b"another chat"),
    ]
    for attachment_id in foreign:
        await sock.send_json_to({"type": "send", "content": "x", "attachments": [attachment_id]})
        assert (await receive(sock))["code"] == "attachment_not_found"
    sent = await attach(alice, conversation, "once.txt", b"once")
    await sock.send_json_to({"type": "send", "content": "first", "attachments": [sent]})
    await frames_until(sock, "done")
    await sock.send_json_to({"type": "send", "content": "again", "attachments": [sent]})
    assert (await receive(sock))["code"] == "attachment_not_found"
    stored = [m.content async for m in Message.objects.filter(role="user")]
    assert stored == ["first"]
    assert len(gateway.requests) == 1


async def test_too_many_files_in_one_message_are_refused(alice, gateway, settings):
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    _, sock = await chat(alice, gateway)
    ids = [
        "7d4c5c5e-4b1f-4a57-9a3b-0b1d2c3e4f5%d" % index  # noqa: UP031
        for index in range(3)
    ]
    await sock.send_json_to({"type": "send", "content": "x", "attachments": ids})
    assert (await receive(sock))["code"] == "too_many_attachments"


async def test_the_export_lists_the_attachments(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    ids = [await attach(alice, conversation, "notes.md", b"# Notes\n")]
    await sock.send_json_to({"type": "send", "content": "read", "attachments": ids})
    await frames_until(sock, "done")
    client = await db(signed_in)(alice)
    exported = json.loads(
        (await db(client.get)(f"/c/{conversation.public_id}/export.json")).content
    )
    question = exported["messages"][0]
    assert question["attachments"] == [
        {"id": ids[0], "name": "notes.md", "media_type": "text/markdown", "size": 8}
    ]
    markdown = (await db(client.get)(f"/c/{conversation.public_id}/export.md")).content.decode()
    assert "notes.md (text/markdown, 8 B)" in markdown


async def test_a_gateway_that_refuses_an_attachment_is_explained(alice, gateway):
    conversation, sock = await chat(alice, gateway)
    gateway.enqueue(
        Script(
            status=400,
            error_message="messages.0.content.0.image.source.base64: image exceeds 5 MB maximum",
        )
    )
    ids = [await attach(alice, conversation, "chart.png", files.png())]
    await sock.send_json_to({"type": "send", "content": "look", "attachments": ids})
    done = (await frames_until(sock, "done"))[-1]
    assert done["status"] == "error"
    assert done["error"]["code"] == "attachment_refused"
    assert "image exceeds 5 MB maximum" in done["error"]["message"]
