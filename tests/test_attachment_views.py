"""Uploading and serving attachments (conversations/attachment_views.py and
services.attachments), on the file system and on a real S3 API server (moto, in a process
of its own)."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from conversations import services
from conversations.models import Attachment
from tests.conftest import signed_in
from tests.support import files

pytestmark = pytest.mark.django_db


def stored_names() -> list[str]:
    try:
        _, names = storages["attachments"].listdir("attachments")
    except FileNotFoundError:  # no file was ever stored in this folder
        return []
    return sorted(names)


@pytest.fixture
def conversation(alice: Any) -> Any:
    services.credentials.set_api_key(alice, key="sk-files", base_url="http://127.0.0.1:9")
    return services.conversations.create_conversation(alice)


def upload(client: Any, conversation: Any, name: str, data: bytes) -> Any:
    return client.post(
        f"/c/{conversation.public_id}/attachments/",
        {"file": SimpleUploadedFile(name, data)},
    )


def test_an_image_is_stored_reencoded_and_served_to_its_owner(store, alice, conversation):
    client = signed_in(alice)
    response = upload(client, conversation, "holiday.jpg", files.photo())
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "media_type", "size", "url"}
    assert (body["name"], body["media_type"]) == ("holiday.jpg", "image/jpeg")
    attachment = Attachment.objects.get(public_id=body["id"])
    assert attachment.message is None and attachment.width == 1568
    # Unguessable, and nothing of the person or the name in the stored path.
    assert re.fullmatch(r"attachments/[0-9a-f]{32}", attachment.file.name)
    assert len(stored_names()) == 1

    served = client.get(body["url"])
    assert served.status_code == 200
    assert served["Content-Type"] == "image/jpeg"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert "attachment" not in served.get("Content-Disposition", "")
    data = b"".join(served.streaming_content)
    assert len(data) == body["size"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1568, 1045) and not image.getexif()


def test_other_files_are_served_as_downloads(store, alice, conversation):
    client = signed_in(alice)
    for name, data, media_type in (
        ("report.pdf", files.pdf(), "application/pdf"),
        ("page.txt", b"<html><script>alert(1)</script></html>", "text/plain; charset=utf-8"),
    ):
        body = upload(client, conversation, name, data).json()
        served = client.get(body["url"])
        assert served["Content-Type"] == media_type
        assert served["Content-Disposition"].startswith("attachment;")
        assert served["X-Content-Type-Options"] == "nosniff"
        assert b"".join(served.streaming_content) == data


def _picture(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (30, 90, 200)).save(out, fmt)
    return out.getvalue()


TEXT = "第一行\nsecond line, 12\n".encode()


@pytest.mark.parametrize(
    ("name", "data", "media_type"),
    [
        ("screen.png", files.png(), "image/png"),
        ("photo.jpg", files.photo(800, 600), "image/jpeg"),
        ("loop.gif", _picture("GIF"), "image/gif"),
        ("sticker.webp", _picture("WEBP"), "image/webp"),
        ("report.pdf", files.pdf(), "application/pdf"),
        ("notes.txt", TEXT, "text/plain"),
        ("README.md", TEXT, "text/markdown"),
        ("table.csv", TEXT, "text/csv"),
        ("config.json", b'{"a": [1, 2]}\n', "application/json"),
        ("main.py", b"print('hi')\n", "text/plain"),
    ],
)
def test_each_type_is_stored_and_served_back_as_itself(
    store, alice, conversation, name, data, media_type
):
    client = signed_in(alice)
    body = upload(client, conversation, name, data).json()
    assert (body["name"], body["media_type"]) == (name, media_type)
    assert stored_names() == [Attachment.objects.get(public_id=body["id"]).file.name.split("/")[-1]]
    served = client.get(body["url"])
    assert served.status_code == 200
    assert served["Content-Type"].split(";")[0] == media_type
    assert served["X-Content-Type-Options"] == "nosniff"
    content = b"".join(served.streaming_content)
    assert len(content) == body["size"]
    if media_type.startswith("image/"):
        assert (
            "Content-Disposition" not in served or "attachment" not in served["Content-Disposition"]
        )
        with Image.open(io.BytesIO(content)) as image:  # re-encoded, still its own format
            assert Image.MIME[image.format] == media_type
    else:
        assert served["Content-Disposition"].startswith("attachment;")
        assert content == data  # documents and text are stored as sent


def test_another_person_gets_404_for_the_file_and_for_uploading(store, alice, bob, conversation):
    body = upload(signed_in(alice), conversation, "notes.txt", b"mine").json()
    stranger = signed_in(bob)
    assert stranger.get(body["url"]).status_code == 404
    refused = upload(stranger, conversation, "notes.txt", b"theirs")
    assert refused.status_code == 404
    assert Attachment.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("cat.png", b"<html><body>not an image</body></html>", "type_mismatch"),
        ("empty.txt", b"", "empty_file"),
        ("bomb.png", files.bomb(), "image_too_large"),
        ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00", "unsupported_type"),
        ("blob.dat", b"\xff\xfe\x00binary", "not_text"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(store, alice, conversation, name, data, code):
    response = upload(signed_in(alice), conversation, name, data)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert Attachment.objects.count() == 0
    assert stored_names() == []


def test_limits_refuse_with_a_sentence(store, settings, alice, conversation):
    client = signed_in(alice)
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    too_big = upload(client, conversation, "big.txt", b"x" * 1001).json()["error"]
    assert too_big["code"] == "file_too_large" and "1000 B" in too_big["message"]

    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    for index in range(2):
        assert upload(client, conversation, f"{index}.txt", b"text").status_code == 201
    assert upload(client, conversation, "3.txt", b"text").json()["error"]["code"] == (
        "too_many_attachments"
    )

    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 10
    settings.CHAT_ATTACHMENT_STORAGE_PER_USER = 10
    full = upload(client, conversation, "more.txt", b"abc").json()["error"]
    assert full["code"] == "storage_full"
    assert Attachment.objects.count() == 2


def test_images_are_refused_for_a_key_whose_models_cannot_see(store, alice, conversation):
    credential = alice.api_credentials.get()
    credential.vision = False
    credential.save()
    response = upload(signed_in(alice), conversation, "chart.png", files.png())
    assert response.json()["error"]["code"] == "images_not_supported"
    assert upload(signed_in(alice), conversation, "a.pdf", files.pdf()).status_code == 201


def test_a_missing_file_field_is_a_clear_error(alice, conversation):
    response = signed_in(alice).post(f"/c/{conversation.public_id}/attachments/", {})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_file"


def test_deleting_the_conversation_deletes_its_files(store, alice, conversation):
    client = signed_in(alice)
    for name in ("a.txt", "b.png"):
        data = files.png() if name.endswith("png") else b"text"
        assert upload(client, conversation, name, data).status_code == 201
    assert len(stored_names()) == 2
    with django_capture_on_commit():
        services.conversations.delete_conversation(conversation)
    assert Attachment.objects.count() == 0
    assert stored_names() == []


def test_files_never_sent_are_purged_after_a_day(store, alice, conversation):
    client = signed_in(alice)
    old = upload(client, conversation, "old.txt", b"old").json()
    upload(client, conversation, "new.txt", b"new")
    Attachment.objects.filter(public_id=old["id"]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    with django_capture_on_commit():
        assert services.attachments.purge_unsent() == 1
    assert list(Attachment.objects.values_list("name", flat=True)) == ["new.txt"]
    assert len(stored_names()) == 1


def django_capture_on_commit() -> Any:
    """Run the on-commit callbacks (file removal) of the block, in this test's transaction."""
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def test_an_upload_declared_too_large_is_refused_before_it_is_read(alice, conversation, settings):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 1000
    response = signed_in(alice).post(
        f"/c/{conversation.public_id}/attachments/",
        {"file": SimpleUploadedFile("big.txt", b"x" * 200_000)},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_too_large"
    assert Attachment.objects.count() == 0
