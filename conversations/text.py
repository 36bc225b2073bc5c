"""The one rule for text that enters the database: what SQLite and PostgreSQL can both store.

Two kinds of code point cannot be stored everywhere:

- U+0000 (NUL). SQLite keeps it, PostgreSQL refuses any text holding one (psycopg raises
  `DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes`). It arrives with
  text pasted from terminals, logs and binary-ish files, and from models that echo such
  text. It is never meaningful in chat text, so it is removed.
- Lone UTF-16 surrogates (U+D800..U+DFFF on their own). `json.loads` turns a JSON escape
  such as "\\ud800" into one (a websocket frame, a gateway's event), and UTF-8 cannot
  encode it: both databases' drivers raise `UnicodeEncodeError`. It is replaced with
  U+FFFD, the replacement character, as a UTF-8 decoder does with a broken byte; a pair of
  surrogates that form a real character becomes that character.

`clean` is applied where text comes in, so that what a page saw, what a snapshot holds
and what is stored are the same text, on SQLite as on PostgreSQL:

- a person's text when it is validated (`services.turns.validate_content`, the services that
  store titles, settings and credential labels, the app's forms);
- the gateway's text in `upstream`, delta by delta (answer and thinking), and titles;
- new places that store text (attachments' names and text, summaries) do the same.

It runs once per streamed delta, so text that needs nothing is returned as it is, for
the price of a scan: a NUL is searched for, and only text that is not ASCII is encoded
to look for a surrogate.
"""

from __future__ import annotations

NUL = "\x00"
REPLACEMENT = "\ufffd"


def clean(text: str) -> str:
    """`text` without NUL characters, its lone surrogates replaced with U+FFFD."""
    if NUL in text:
        text = text.replace(NUL, "")
    if text.isascii():  # O(1) in CPython: a flag of the string
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogates passed through, then decoded: a valid pair becomes its
        # character, each lone surrogate one U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
