"""The rule for stored text: no NUL, no lone surrogate, and nothing else changed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.text import clean

# Any code point, NULs and lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()))


def test_nul_characters_are_removed() -> None:
    assert clean("a\x00b\x00") == "ab"
    assert clean("\x00") == ""
    assert clean("字\x00符") == "字符"


def test_a_lone_surrogate_becomes_one_replacement_character() -> None:
    assert clean("a\ud800b") == "a\ufffdb"
    assert clean("\udfff") == "\ufffd"
    assert clean("\ud800\u4e00") == "\ufffd\u4e00"  # a high surrogate, then no low one
    assert clean("\udc80\ud800") == "\ufffd\ufffd"  # the wrong order is no pair


def test_a_surrogate_pair_is_joined_into_its_character() -> None:
    assert clean("\ud83d\ude00!") == "😀!"


def test_text_that_needs_nothing_is_returned_as_it_is() -> None:
    for text in ("", "plain ASCII", "中文 and emoji 😀", "é" * 1000):
        assert clean(text) is text


@settings(max_examples=500, deadline=None, database=None)
@given(any_text)
def test_any_text_comes_out_storable_and_otherwise_unchanged(text: str) -> None:
    cleaned = clean(text)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")  # no lone surrogate left: this would raise
    # Only NULs removed and surrogates replaced: text without either is kept exactly.
    if not any("\ud800" <= c <= "\udfff" for c in text):
        assert cleaned == text.replace("\x00", "")
    assert clean(cleaned) == cleaned
