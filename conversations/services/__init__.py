"""Every state change of conversations, messages and credentials, one module per subject.

- `events`: frames to the pages, sent after commit (`call`, `broadcast_on_commit`), and
  the names of a conversation's groups;
- `conversations`: create, rename, delete, settings, generated titles;
- `turns`: a person's message and the reply placeholder (send, regenerate, edit), the plan
  a generation runs from, the history sent upstream;
- `threads`: which thread of the tree of versions a conversation shows (switch);
- `replies`: checkpoints, the final save, the reaper, what a connecting socket is told;
- `credentials`: the credential a turn uses (limits, allowed models), the key check, and
  the administrator's writes, each kept in the audit (`audit`: what changed, by whom);
- `search_index`: the search entries the others write beside their rows;
- `attachments`: uploaded files, linked to the message they are sent with, removed with
  their conversation or when never sent;
- `accounts`: accounts made and kept by single sign-on (their groups from a claim);
- `rendered`: replies' stored HTML rendered again after a renderer change.

Consumers (through `generation`), views, the admin (its saves and deletes too) and the
management commands call these functions (single sign-on too); no other code writes
conversations, messages, attachments, credentials or accounts' groups. Functions are
synchronous (they run in a database thread); each one that others must hear about
broadcasts its websocket frame *after* its transaction commits.
"""

from __future__ import annotations

from django.db import DatabaseError


class ServiceError(Exception):
    """A refused request: `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# What a write can raise when the database refuses it or cannot take it: Django's wrapped
# driver errors, and the UnicodeEncodeError both drivers raise (unwrapped) for text that is
# not UTF-8. Text is cleaned where it comes in (`conversations.text`); these are caught
# where a refused write must not end a socket or lose a reply.
STORAGE_ERRORS: tuple[type[Exception], ...] = (DatabaseError, UnicodeEncodeError)

# The subjects, reachable as `services.turns` etc. once the package is imported. Last:
# each of them imports ServiceError from here.
from conversations.services import (  # noqa: E402
    accounts,
    attachments,
    audit,
    conversations,
    credentials,
    events,
    rendered,
    replies,
    search_index,
    threads,
    turns,
)

__all__ = [
    "STORAGE_ERRORS",
    "ServiceError",
    "accounts",
    "attachments",
    "audit",
    "conversations",
    "credentials",
    "events",
    "rendered",
    "replies",
    "search_index",
    "threads",
    "turns",
]
