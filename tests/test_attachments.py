"""What an attached file is, by its bytes, and what of it goes upstream
(conversations/attachments.py): no database, no storage."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import ExifTags, Image

from conversations import attachments
from conversations.attachments import AttachmentError, Sendable, inspect
from tests.support import files

LIMITS = {"max_bytes": 10 * 1024 * 1024, "text_chars": 200_000}


def test_a_photo_is_turned_upright_downscaled_and_stripped_of_its_metadata():
    result = inspect("IMG_0001.JPG", files.photo(3000, 2000), **LIMITS)
    assert (result.kind, result.media_type) == ("image", "image/jpeg")
    assert max(result.width, result.height) == 1568
    with Image.open(io.BytesIO(result.data)) as image:
        assert image.size == (1568, 1045)
        exif = image.getexif()
        assert not exif  # no camera, no position
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
        assert "exif" not in image.info


def test_the_original_photo_did_carry_the_position_removed():
    with Image.open(io.BytesIO(files.photo())) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp"), ("JPEG", "image/jpeg")],
)
def test_each_image_format_is_kept_as_itself(fmt, media_type):
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(out, fmt)
    result = inspect(f"picture.{fmt.lower()}", out.getvalue(), **LIMITS)
    assert (result.kind, result.media_type, result.width, result.height) == (
        "image",
        media_type,
        40,
        30,
    )


def test_an_image_is_found_by_its_bytes_whatever_its_name():
    result = inspect("screenshot.txt", files.png(), **LIMITS)
    assert result.media_type == "image/png"


def test_an_image_too_heavy_for_the_protocol_is_made_lighter(monkeypatch):
    monkeypatch.setattr(attachments, "MAX_IMAGE_BYTES", 20_000)
    noisy = Image.effect_noise((1500, 1500), 100).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, "PNG")
    result = inspect("noise.png", out.getvalue(), **LIMITS)
    assert len(result.data) <= 20_000
    assert result.media_type == "image/jpeg"  # no transparency: a JPEG carries it lighter


def test_html_named_as_an_image_is_refused():
    with pytest.raises(AttachmentError) as refused:
        inspect("cat.png", b"<html><script>alert(1)</script></html>", **LIMITS)
    assert refused.value.code == "type_mismatch"
    assert "cat.png" in refused.value.message


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    data = files.bomb()
    assert len(data) < 50_000
    with pytest.raises(AttachmentError) as refused:
        inspect("small.png", data, **LIMITS)
    assert refused.value.code == "image_too_large"


def test_an_empty_file_and_an_oversize_file_are_refused():
    with pytest.raises(AttachmentError) as empty:
        inspect("notes.txt", b"", **LIMITS)
    assert empty.value.code == "empty_file"
    with pytest.raises(AttachmentError) as large:
        inspect("notes.txt", b"x" * 101, max_bytes=100, text_chars=1000)
    assert large.value.code == "file_too_large"
    assert "100 B" in large.value.message


def test_a_pdf_must_parse_and_its_text_is_kept():
    result = inspect("report.pdf", files.pdf("Revenue grew by 12 percent."), **LIMITS)
    assert (result.kind, result.media_type) == ("pdf", "application/pdf")
    assert "Revenue grew by 12 percent." in result.text
    with pytest.raises(AttachmentError) as broken:
        inspect("report.pdf", b"%PDF-1.7\nthis is not a PDF at all", **LIMITS)
    assert broken.value.code == "invalid_pdf"
    with pytest.raises(AttachmentError) as named:
        inspect("report.pdf", b"plain words", **LIMITS)
    assert named.value.code == "type_mismatch"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("notes.txt", "text/plain"),
        ("README.md", "text/markdown"),
        ("data.csv", "text/csv"),
        ("config.json", "application/json"),
        ("main.py", "text/plain"),
    ],
)
def test_text_files_are_utf8_text(name, media_type):
    result = inspect(name, "第一行\nsecond line\n".encode(), **LIMITS)
    assert (result.kind, result.media_type) == ("text", media_type)
    assert result.text == "第一行\nsecond line\n"


def test_bytes_that_are_not_text_are_refused():
    with pytest.raises(AttachmentError) as latin:
        inspect("notes.txt", "café".encode("latin-1"), **LIMITS)
    assert latin.value.code == "not_text"
    with pytest.raises(AttachmentError) as binary:
        inspect("data.txt", b"abc\x00def", **LIMITS)
    assert binary.value.code == "not_text"
    with pytest.raises(AttachmentError) as office:
        inspect("letter.docx", b"PK\x03\x04 a zip", **LIMITS)
    assert office.value.code == "unsupported_type"


def test_names_lose_folders_and_control_characters():
    assert attachments.clean_name("../../etc/passwd") == "passwd"
    assert attachments.clean_name("C:\\Users\\me\\photo.png") == "photo.png"
    assert attachments.clean_name("a\x00b\nc.txt") == "abc.txt"
    assert attachments.clean_name("") == "file"
    assert len(attachments.clean_name("x" * 500 + ".txt")) == 200


def test_blocks_follow_what_the_model_takes():
    stored = {"img": b"\x89PNG...", "doc": b"%PDF-1.7 ..."}
    items = [
        Sendable("image", "image/png", "a.png", "img"),
        Sendable("pdf", "application/pdf", "r.pdf", "doc", text="the report's text"),
        Sendable("text", "text/csv", "d.csv", "csv", text="a,b\n1,2\n"),
    ]
    full = attachments.blocks(items, stored.__getitem__, images=True, pdfs=True)
    assert full[0] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(stored["img"]).decode(),
        },
    }
    assert full[1]["type"] == "document"
    assert full[1]["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(full[1]["source"]["data"]) == stored["doc"]
    assert full[2] == {"type": "text", "text": "File: d.csv\n\na,b\n1,2\n"}

    text_only = attachments.blocks(items, stored.__getitem__, images=False, pdfs=False)
    assert [b["type"] for b in text_only] == ["text", "text", "text"]
    assert text_only[1]["text"] == "File: r.pdf\n\nthe report's text"


def test_sizes_read_as_people_read_them():
    assert attachments.size(10 * 1024 * 1024) == "10 MB"
    assert attachments.size(1536) == "1.5 KB"
    assert attachments.size(12) == "12 B"
