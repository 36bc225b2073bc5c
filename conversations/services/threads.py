"""Which thread a conversation shows: switching to a version, and showing a new reply.

The conversation's `shown_leaf` is the truth (a send continues it); each message's
`shown_child` remembers the child shown last under it, so a switch back to a version
shows the thread that was below it. Every socket of the conversation, in any process,
follows through the `thread` frame, sent after commit.
"""

from __future__ import annotations

import itertools
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils.translation import gettext as _

from conversations import frames, pages, tree
from conversations.models import Conversation, Message
from conversations.services import ServiceError, attachments, conversations, events


def message_uuid(value: Any) -> UUID:
    """A message id of a client frame or a URL, or a ServiceError."""
    try:
        return UUID(str(value))
    except ValueError:
        raise ServiceError("invalid_message_id", _("That message id is not valid.")) from None


def show(conversation: Conversation, shape: tree.Tree, message_id: int) -> list[int]:
    """Show the thread through `message_id` and, below it, the one last shown there.

    Every ancestor remembers the child on that thread (written only where it changes:
    usually one row), and the conversation its leaf. Returns the thread, root first.
    """
    leaf = shape.descend(message_id)
    path = shape.path(leaf)
    for parent, child in itertools.pairwise(path):
        if shape.shown_child(parent) != child:
            Message.objects.filter(pk=parent).update(shown_child=child)
            shape.nodes[parent].shown_child_id = child
    conversation.shown_leaf_id = leaf
    conversations.update_row(conversation.pk, shown_leaf=leaf)
    return path


def broadcast_change(
    conversation: Conversation, shape: tree.Tree, before: list[int], after: list[int]
) -> list[tree.Shown]:
    """Tell every page the shown thread changed (after commit); returns its newest page
    (`pages.PAGE_SIZE` messages at most), read whole.

    The `superseded` frame (what left the shown thread) is for clients that predate
    `thread`: after a regenerate or an edit they drop those messages and append the new
    ones from `message` frames (a switch, which they cannot make, passes no `before`).
    """
    gone = set(after)
    left = shape.public_ids(m for m in before if m not in gone)
    if left:
        events.broadcast_on_commit(conversation.public_id, frames.superseded(left))
    # The thread's newest page, as the chat page opens with: a frame of a long thread
    # whole would be megabytes, for every socket, on every switch. `older` says more is
    # above (a client fetches it as the page does: docs/protocol.md).
    sent = after[-pages.PAGE_SIZE :]
    shown = shape.shown(sent)
    files = {
        message_id: [frames.attachment(a, conversation.public_id) for a in attached]
        for message_id, attached in attachments.of_messages(sent).items()
    }
    frame = frames.thread(shown, files, older=len(after) > len(sent))
    events.broadcast_on_commit(conversation.public_id, frame)
    return shown


def switch(conversation: Conversation, message_public_id: Any) -> list[tree.Shown]:
    """Show a version of a message, and below it the thread last shown under it.

    A reply streaming elsewhere in the tree goes on; only what the pages show changes.
    """
    target = message_uuid(message_public_id)
    with transaction.atomic():
        # Locked: a turn starting meanwhile continues either the old thread or this one.
        conversation = conversations.current(conversation)
        shape = tree.load(conversation.pk)
        node = shape.by_public_id(target)
        if node is None:
            raise ServiceError("message_not_found", _("That message is not in this conversation."))
        after = show(conversation, shape, node.id)
        return broadcast_change(conversation, shape, [], after)
