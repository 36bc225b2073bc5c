"""The token estimate: CJK and Latin text counted apart, never below the fake model's
own count (so a history fitted by the estimate fits the gateway)."""

from __future__ import annotations

import pytest

from conversations import tokens
from conversations.attachments import Sendable
from conversations.demo.server import count_tokens

SAMPLES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog; then it sleeps (for 8 hours).",
    "你好，世界。今天天气很好，我们去公园散步吧！",
    "混合 text 与中文 mixed, with numbers 12345 and symbols #@%.",
    "こんにちは、世界。한국어 문장도 있습니다.",
    "def f(x):\n    return x ** 2  # squares\n",
    "",
]


def test_cjk_counts_more_per_character_than_latin():
    assert tokens.of_text("你好世界你好世界") > tokens.of_text("abcdefgh")
    assert tokens.of_text("你好") == 3  # 1.5 per character, rounded up


def test_a_latin_word_is_a_token_per_four_characters():
    assert tokens.of_text("word") == 1
    assert tokens.of_text("internationalisation") == 5
    assert tokens.of_text("a, b.") == 4  # two words, two symbols


@pytest.mark.parametrize("text", SAMPLES)
def test_the_estimate_is_never_below_the_fake_models_count(text):
    body = {"messages": [{"role": "user", "content": text}]}
    assert tokens.of_message(body["messages"][0]) >= count_tokens(body)


def test_files_are_counted_by_kind():
    image = Sendable("image", "image/png", "a.png", "x")
    pdf = Sendable("pdf", "application/pdf", "a.pdf", "x", text="one two six")
    message = {"role": "user", "content": "see", "attachments": [image, pdf]}
    assert tokens.of_message(message) == (
        tokens.MESSAGE_OVERHEAD + 1 + tokens.IMAGE_TOKENS + tokens.DOCUMENT_OVERHEAD + 3
    )


def test_content_blocks_are_counted():
    message = {
        "role": "user",
        "content": [{"type": "image", "source": {}}, {"type": "text", "text": "what is it"}],
    }
    assert tokens.of_message(message) == tokens.MESSAGE_OVERHEAD + tokens.IMAGE_TOKENS + 3
