"""Client frames: whatever arrives is either a valid frame or a ProtocolError, never a crash;
and the per-socket frame budget."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations import protocol, services
from conversations.consumers import FrameBudget

LIMIT = 256 * 1024

# Every JSON value, plus the shapes a frame is made of, so that parse sees near-misses.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=()))
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frame_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["send", "stop", "regenerate", "edit", "switch", "teleport", ""])
        | scalars
    },
    optional={"content": json_values, "client_id": json_values, "message_id": json_values},
)

# No example database: nothing is written into the work tree.
profile = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Any code point, lone surrogates included (a socket cannot deliver them; parse must cope).
any_text = st.text(st.characters(exclude_categories=()))


def decode_and_parse(text: str | None, data: bytes | None = None) -> protocol.ClientFrame | None:
    """The consumer's path; returns None for a refusal, raises for anything else."""
    try:
        return protocol.parse(protocol.decode(text, data, max_bytes=LIMIT))
    except protocol.ProtocolError as exc:
        assert exc.code and exc.message
        return None


@profile
@given(any_text)
def test_any_text_is_a_frame_or_a_protocol_error(text: str) -> None:
    decode_and_parse(text)


@profile
@given(json_values | frame_like)
def test_any_json_value_is_a_frame_or_a_protocol_error(value: Any) -> None:
    frame = decode_and_parse(json.dumps(value))
    if frame is not None:
        assert isinstance(
            frame,
            protocol.Send | protocol.Stop | protocol.Regenerate | protocol.Edit | protocol.Switch,
        )
        assert value["type"] in ("send", "stop", "regenerate", "edit", "switch")


@profile
@given(frame_like, st.sampled_from(["\ud800", "\udfff", "a\udc80b", "a\x00b", "\x00\ud800"]))
def test_text_that_no_database_stores_never_gets_through(value: dict[str, Any], bad: str) -> None:
    # JSON escapes such as "\ud800" decode to lone surrogates, and "\u0000" to a NUL, which
    # not every database stores. A message id with one is refused; content is cleaned by
    # the one check every turn makes (`services.turns.validate_content`).
    frame = decode_and_parse(json.dumps({**value, "message_id": bad}))
    if frame is not None:
        assert getattr(frame, "message_id", "") != bad
    frame = decode_and_parse(json.dumps({**value, "content": bad}))
    if isinstance(frame, protocol.Send | protocol.Edit):
        try:
            content = services.turns.validate_content(frame.content)
        except services.ServiceError:
            return
        assert "\x00" not in content
        content.encode("utf-8")  # no lone surrogate left: this would raise


@profile
@given(st.binary())
def test_binary_frames_are_refused(data: bytes) -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.decode(None, data, max_bytes=LIMIT)
    assert refused.value.code == "binary_not_supported"


@pytest.mark.parametrize("depth", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("opener", ["[", '{"a":', '{"type":"send","content":'])
def test_deeply_nested_json_is_invalid_json(depth: int, opener: str) -> None:
    text = opener * depth
    closer = {"[": "]", '{"a":': "}", '{"type":"send","content":': "}"}[opener]
    text = text + "0" + closer * depth
    if len(text.encode()) > LIMIT:
        with pytest.raises(protocol.ProtocolError) as refused:
            protocol.decode(text, None, max_bytes=LIMIT)
        assert refused.value.code == "frame_too_large"
        return
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse(protocol.decode(text, None, max_bytes=LIMIT))
    assert refused.value.code in ("invalid_json", "invalid_frame", "unknown_type")
    if depth >= 10_000:
        assert refused.value.code == "invalid_json"


def test_a_lone_surrogate_in_content_becomes_a_replacement_character() -> None:
    frame = protocol.parse(
        protocol.decode('{"type":"send","content":"hi \\ud800"}', None, max_bytes=LIMIT)
    )
    assert isinstance(frame, protocol.Send)
    assert services.turns.validate_content(frame.content) == "hi \ufffd"
    # A proper pair is an ordinary character.
    frame = protocol.parse(
        protocol.decode('{"type":"send","content":"\\ud83d\\ude00"}', None, max_bytes=LIMIT)
    )
    assert frame == protocol.Send(content="😀")


def test_the_size_limit_counts_bytes_not_characters() -> None:
    text = json.dumps({"type": "send", "content": "字" * 100}, ensure_ascii=False)
    assert len(text) < 300 < len(text.encode())
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.decode(text, None, max_bytes=300)
    assert refused.value.code == "frame_too_large"


# --- The frame budget ------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    budget = FrameBudget(rate=10, burst=20, clock=clock)
    assert all(budget.take() for _ in range(20))
    assert not budget.take() and budget.refused == 1
    assert not budget.take() and budget.refused == 2
    clock.now += 0.1  # one frame's worth
    assert budget.take() and budget.refused == 0
    assert not budget.take()
    clock.now += 10  # refills up to the burst, not beyond
    assert sum(budget.take() for _ in range(30)) == 20


def test_a_rate_of_zero_turns_the_budget_off() -> None:
    budget = FrameBudget(rate=0, burst=1, clock=Clock())
    assert all(budget.take() for _ in range(1000))
