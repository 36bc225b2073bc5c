"""Parsing and validation of client frames (websocket protocol v1, docs/protocol.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from conversations.text import clean

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Send:
    # Checked and cleaned (NUL, lone surrogates) by services.turns.validate_content, the one place
    # that knows the rules for a message's text.
    content: Any
    client_id: str = ""
    # Ids of files uploaded for this message (`POST /c/<uuid>/attachments/`), in order.
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Regenerate:
    # None: the last reply shown (clients older than versions send none).
    message_id: str | None = None


@dataclass(frozen=True)
class Edit:
    message_id: str
    content: Any  # as in Send


@dataclass(frozen=True)
class Switch:
    message_id: str


ClientFrame = Send | Stop | Regenerate | Edit | Switch


def decode(text: str | None, bytes_data: bytes | None, *, max_bytes: int) -> Any:
    """The JSON value of one websocket frame, or a ProtocolError saying what is wrong."""
    if bytes_data is not None or text is None:
        raise ProtocolError("binary_not_supported", _("Frames must be JSON text, not binary."))
    # Cheap bound first (a character is at least one byte), then the exact one. A lone
    # surrogate cannot arrive on a real socket (its text is valid UTF-8) but counts anyway.
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(
            "frame_too_large",
            _("This frame is larger than %(limit)d bytes.") % {"limit": max_bytes},
        )
    try:
        # Nesting deeper than the interpreter's recursion limit raises RecursionError.
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("invalid_json", _("The frame is not valid JSON.")) from None


def _is_text(value: Any) -> bool:
    """A string every database stores as it is (`conversations.text`): JSON escapes decode
    to NULs ("\\u0000") and lone surrogates ("\\ud800") too. An id holding one is no id;
    message content is cleaned instead, by `services.turns.validate_content`."""
    if not isinstance(value, str):
        return True  # not a string at all: refused where its type is checked
    return clean(value) == value


def client_id_of(value: Any) -> str | None:
    """The `client_id` a decoded frame carries, if it is a valid one: a refusal of that
    frame echoes it (however the frame is refused), and nothing invalid is echoed."""
    if isinstance(value, dict):
        client_id = value.get("client_id")
        if isinstance(client_id, str) and CLIENT_ID.match(client_id):
            return client_id
    return None


UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def parse(value: Any) -> ClientFrame:
    if not isinstance(value, dict):
        raise ProtocolError("invalid_frame", _("A frame must be a JSON object with a “type”."))
    kind = value.get("type")
    if kind == "send":
        client_id = value.get("client_id") or ""
        if not isinstance(client_id, str) or (client_id and not CLIENT_ID.match(client_id)):
            raise ProtocolError(
                "invalid_client_id",
                _("“client_id” must be up to 64 letters, digits, or the characters . _ : -"),
            )
        if "content" not in value:
            raise ProtocolError("missing_content", _("A “send” frame needs “content”."))
        attachments = value.get("attachments") or []
        if (
            not isinstance(attachments, list)
            or not all(isinstance(item, str) and UUID_TEXT.match(item) for item in attachments)
            or len(set(attachments)) != len(attachments)
        ):
            raise ProtocolError(
                "invalid_attachments",
                _("“attachments” must be a list of distinct attachment ids."),
            )
        return Send(content=value["content"], client_id=client_id, attachments=tuple(attachments))
    if kind == "stop":
        return Stop()
    if kind == "regenerate":
        if value.get("message_id") is None:
            return Regenerate()
        return Regenerate(message_id=_message_id(value, kind))
    if kind == "edit":
        message_id = _message_id(value, kind)
        if "content" not in value:
            raise ProtocolError("missing_content", _("An “edit” frame needs “content”."))
        return Edit(message_id=message_id, content=value["content"])
    if kind == "switch":
        return Switch(message_id=_message_id(value, kind))
    raise ProtocolError(
        "unknown_type",
        _("Unknown frame type. Use one of: send, stop, regenerate, edit, switch."),
    )


def _message_id(value: dict[str, Any], kind: str) -> str:
    """The frame's `message_id`: a non-empty string (whether it names a message of this
    conversation is the service's to say)."""
    message_id = value.get("message_id")
    if not isinstance(message_id, str) or not message_id or not _is_text(message_id):
        raise ProtocolError(
            "invalid_message_id",
            _("A “%(type)s” frame needs a “message_id”.") % {"type": kind},
        )
    return message_id
