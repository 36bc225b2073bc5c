"""How many tokens a request will take, estimated before it is sent.

No tokenizer of the gateway's models is available offline (CloudBase's hunyuan models and
Claude have their own, and `count_tokens` is not offered by every gateway, CloudBase among
them), so the count is a deliberately generous estimate: the fitting of the history
(`conversations.context`) is then exact only where the gateway has already counted (the
previous turn's `input_tokens`), and errs towards sending a little less, never more.

The rule, per text:
- a CJK character (Han, kana, Hangul, full-width forms) is 1.5 tokens: these tokenizers
  spend one to two tokens on each, where a Latin word of the same meaning takes one;
- a run of other letters and digits is one token per 4 characters, at least 1;
- every other visible character (punctuation, symbols) is a token;
- each message costs 4 tokens of framing; an image 1,600 (Anthropic's figure for a
  1.15-megapixel image, the largest it keeps), a PDF its extracted text plus 1,000, a
  text file its text.
"""

from __future__ import annotations

import re
from typing import Any

CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
WORD = re.compile(r"[^\W_]+")
SYMBOL = re.compile(r"[^\w\s]|_")

MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 1600
DOCUMENT_OVERHEAD = 1000


def of_text(text: str) -> int:
    """Estimated tokens of a text (see the module's rule)."""
    if not text:
        return 0
    cjk = len(CJK.findall(text))
    rest = CJK.sub(" ", text) if cjk else text
    words = sum((len(word) + 3) // 4 for word in WORD.findall(rest))
    return (cjk * 3 + 1) // 2 + words + len(SYMBOL.findall(rest))


def of_message(message: dict[str, Any]) -> int:
    """Estimated tokens of one entry of the Messages API `messages` list, with its files
    (as the history carries them, `attachments.Sendable`) or its content blocks."""
    total = MESSAGE_OVERHEAD
    content = message.get("content")
    if isinstance(content, str):
        total += of_text(content)
    elif isinstance(content, list):
        total += sum(_of_block(block) for block in content if isinstance(block, dict))
    for attached in message.get("attachments") or ():
        total += _of_file(getattr(attached, "kind", ""), getattr(attached, "text", ""))
    return total


def _of_block(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return of_text(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source") or {}
        return DOCUMENT_OVERHEAD + of_text(str(source.get("data", "")) if source else "")
    return 0


def _of_file(kind: str, text: str) -> int:
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "pdf":
        return DOCUMENT_OVERHEAD + of_text(text)
    return MESSAGE_OVERHEAD + of_text(text)
