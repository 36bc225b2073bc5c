"""What a file a person attaches is, by its bytes, and what of it goes upstream.

No database and no storage here: `inspect` turns uploaded bytes into what is stored (or an
`AttachmentError` saying why not), and `blocks` turns stored attachments into Anthropic
Messages content blocks. Writes live in `services.attachments`.

Types are decided by content, never by the name alone: images must open in Pillow as PNG,
JPEG, GIF or WebP; PDFs must parse in pypdf; anything else must be UTF-8 text. A name that
claims a type its bytes are not (HTML named `.png`) is refused.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from django.utils.translation import gettext as _
from PIL import Image, ImageOps
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from conversations.text import clean

logger = logging.getLogger(__name__)

# The long side of an image sent upstream: larger images are downscaled by the gateway's
# model anyway (Anthropic's vision guide: 1568 px), and cost tokens for nothing.
MAX_IMAGE_SIDE = 1568
# The protocol's limit is 5 MB per image, base64-encoded: 3.75 MB of bytes.
MAX_IMAGE_BYTES = 3_750_000
# Pillow refuses images with more pixels than this (a decompression bomb: a small file
# that would take gigabytes once decoded): 50 megapixels is a 50 MP camera's photo. Pillow
# warns from this many and raises from twice as many; both are refused here.
MAX_IMAGE_PIXELS = 50_000_000

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}
TEXT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
}
# Names whose bytes are never text: a mistaken upload, said so rather than "not UTF-8".
BINARY_SUFFIXES = {
    ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".zip", ".gz", ".tar", ".7z",
    ".rar", ".exe", ".dll", ".so", ".bin", ".mp3", ".mp4", ".mov", ".wav", ".heic", ".tiff",
    ".tif", ".bmp", ".svg",
}  # fmt: skip


class AttachmentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Inspected:
    kind: str  # "image", "pdf" or "text"
    media_type: str
    name: str
    data: bytes  # what is stored: an image re-encoded, a PDF or a text file as uploaded
    text: str = ""  # a text file's text, or the text extracted from a PDF
    width: int | None = None
    height: int | None = None


def clean_name(name: str) -> str:
    """The file's own name (no folders), cleaned, at most 200 characters, never empty."""
    base = PurePath(clean(name or "").replace("\\", "/")).name.strip()
    base = "".join(ch for ch in base if ch.isprintable())
    if len(base) > 200:
        suffix = PurePath(base).suffix[:20]
        base = base[: 200 - len(suffix)] + suffix
    return base or "file"


def inspect(name: str, data: bytes, *, max_bytes: int, text_chars: int) -> Inspected:
    """What `data` is, and what of it to store; or an AttachmentError saying why not."""
    name = clean_name(name)
    if not data:
        raise AttachmentError("empty_file", _("“%(name)s” is empty.") % {"name": name})
    if len(data) > max_bytes:
        raise too_large(name, max_bytes)
    suffix = PurePath(name).suffix.lower()
    if data.startswith(b"%PDF-"):
        return _pdf(name, data, text_chars)
    if suffix == ".pdf":
        raise _mismatch(name, _("a PDF"))
    image = _image(name, data)
    if image is not None:
        return image
    if suffix in IMAGE_SUFFIXES:
        raise _mismatch(name, _("an image"))
    if suffix in BINARY_SUFFIXES:
        raise AttachmentError(
            "unsupported_type",
            _("“%(name)s” cannot be attached: images, PDFs and text files can.") % {"name": name},
        )
    return _text(name, data, suffix, text_chars)


def too_large(name: str, limit: int) -> AttachmentError:
    return AttachmentError(
        "file_too_large",
        _("“%(name)s” is larger than %(limit)s.") % {"name": name, "limit": size(limit)},
    )


def _mismatch(name: str, claimed: str) -> AttachmentError:
    return AttachmentError(
        "type_mismatch",
        _("“%(name)s” is named as %(claimed)s, but its content is not one.")
        % {"name": name, "claimed": claimed},
    )


def _image(name: str, data: bytes) -> Inspected | None:
    """The image re-encoded (see `reencode`), None if `data` is no image Pillow opens."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x its pixel limit and raises above: both refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                probe.verify()
            if kind not in IMAGE_TYPES:
                return None
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                encoded, media_type, width, height = reencode(image, kind)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AttachmentError(
            "image_too_large",
            _("“%(name)s” has too many pixels to be opened safely.") % {"name": name},
        ) from None
    except (OSError, SyntaxError, ValueError):
        # Not an image (Pillow raises UnidentifiedImageError, an OSError), or a broken one.
        return None
    return Inspected("image", media_type, name, encoded, width=width, height=height)


def reencode(image: Image.Image, kind: str) -> tuple[bytes, str, int, int]:
    """The image as the model gets it: turned upright, metadata (EXIF, GPS, comments,
    colour profiles aside) dropped, the long side at most MAX_IMAGE_SIDE, the bytes within
    MAX_IMAGE_BYTES. Returns the bytes, their media type, width and height."""
    image = ImageOps.exif_transpose(image)
    if kind == "GIF":
        image.seek(0)  # the first frame: models read stills
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    while True:
        encoded, media_type = _encode(image, kind)
        if len(encoded) <= MAX_IMAGE_BYTES:
            return encoded, media_type, image.width, image.height
        # Still too heavy (a noisy PNG): a JPEG if there is no transparency, else smaller.
        if kind == "PNG" and not _has_alpha(image):
            kind = "JPEG"
            continue
        image = image.resize(
            (max(1, int(image.width * 0.8)), max(1, int(image.height * 0.8))),
            Image.Resampling.LANCZOS,
        )


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _encode(image: Image.Image, kind: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    # Saved without `exif=`, `icc_profile=` or `pnginfo=`: nothing of the original's
    # metadata is written.
    if kind == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    elif kind == "WEBP":
        image.save(out, "WEBP", quality=85)
    elif kind == "GIF":
        image.save(out, "GIF")
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA")
        image.save(out, "PNG", optimize=True)
    return out.getvalue(), IMAGE_TYPES[kind]


def _pdf(name: str, data: bytes, text_chars: int) -> Inspected:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise AttachmentError(
                "invalid_pdf",
                _("“%(name)s” is encrypted; attach a copy without a password.") % {"name": name},
            )
        parts: list[str] = []
        length = 0
        for page in reader.pages:
            if length >= text_chars:
                break
            text = page.extract_text() or ""
            parts.append(text)
            length += len(text)
    except AttachmentError:
        raise
    except (PdfReadError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise AttachmentError(
            "invalid_pdf", _("“%(name)s” is not a PDF that can be read.") % {"name": name}
        ) from None
    text = clean("\n\n".join(parts))[:text_chars]
    return Inspected("pdf", "application/pdf", name, data, text=text)


def _text(name: str, data: bytes, suffix: str, text_chars: int) -> Inspected:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentError(
            "not_text",
            _("“%(name)s” is neither an image, a PDF nor UTF-8 text.") % {"name": name},
        ) from None
    if "\x00" in text:
        raise AttachmentError(
            "not_text", _("“%(name)s” is a binary file, not text.") % {"name": name}
        )
    if len(text) > text_chars:
        raise AttachmentError(
            "text_too_long",
            _("“%(name)s” has more than %(limit)s characters.")
            % {"name": name, "limit": f"{text_chars:,}"},
        )
    return Inspected("text", TEXT_TYPES.get(suffix, "text/plain"), name, data, text=text)


def size(count: int) -> str:
    """A byte count as people read it (10 MB, 512 KB)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{count} B"


# --- What goes upstream ---------------------------------------------------------------
@dataclass(frozen=True)
class Sendable:
    """A stored attachment, as the history of a turn carries it to the generation."""

    kind: str
    media_type: str
    name: str
    path: str  # in the attachments storage
    text: str = ""


def blocks(
    attachments: list[Sendable], read: Any, *, images: bool, pdfs: bool
) -> list[dict[str, Any]]:
    """Content blocks for a user message's attachments, in the order attached. `read(path)`
    returns a stored file's bytes. A model that takes no PDFs gets their text; images for
    a model that takes none were refused at upload, and are named in a text block here
    (the credential changed since)."""
    out: list[dict[str, Any]] = []
    for item in attachments:
        if (item.kind == "image" and images) or (item.kind == "pdf" and pdfs):
            out.append(_file_block(item, read))
        elif item.kind == "image":
            out.append(
                {"type": "text", "text": f"[Image {item.name}: this model cannot see images]"}
            )
        else:
            out.append(_text_block(item))
    return out


def _file_block(item: Sendable, read: Any) -> dict[str, Any]:
    """An image or a PDF as the model takes it, its bytes read from storage."""
    try:
        data = read(item.path)
    except FileNotFoundError:
        # Lost from storage (a restored backup without MEDIA_ROOT, a bucket emptied by
        # hand): named instead, so the thread can still be answered rather than failing
        # every later turn. Other storage errors still fail the turn: they may pass.
        logger.warning("The stored file of %s (%s) is missing", item.name, item.path)
        if item.kind == "pdf" and item.text:
            return _text_block(item)  # its text was kept with its row
        return {"type": "text", "text": f"[File {item.name}: no longer stored]"}
    if item.kind == "image":
        return _base64_block("image", item.media_type, data)
    return _base64_block("document", "application/pdf", data)


def _text_block(item: Sendable) -> dict[str, Any]:
    return {"type": "text", "text": f"File: {item.name}\n\n{item.text}"}


def _base64_block(kind: str, media_type: str, data: bytes) -> dict[str, Any]:
    encoded = base64.standard_b64encode(data).decode("ascii")
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": encoded}}


def expand(
    history: list[dict[str, Any]], read: Any, *, images: bool, pdfs: bool
) -> list[dict[str, Any]]:
    """The history as the Messages API takes it: a message that carries `attachments` gets
    their blocks, then its typed text last. Reads stored files: run it off the event loop."""
    out: list[dict[str, Any]] = []
    for message in history:
        attached = message.get("attachments")
        if not attached:
            out.append(message)
            continue
        content = blocks(attached, read, images=images, pdfs=pdfs)
        if message["content"].strip():
            content.append({"type": "text", "text": message["content"]})
        out.append({"role": message["role"], "content": content})
    return out
