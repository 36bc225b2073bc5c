"""Today's previous versions (`superseded_at`) become siblings in the tree, none lost.

Before the tree, a conversation was a list in id order: regenerate marked the last reply
superseded and added a new one; edit marked a question and everything after it superseded
and added a new question and reply. Replaying the list in id order rebuilds the tree: when
a message was stored, the thread it continued was every earlier message not yet
superseded at that moment (`superseded_at` is set in the transaction that stores the new
version, before its INSERT). Its parent is that thread's last message. The conversation
then shows the thread of its newest message that was never superseded.

A separate migration from the schema changes (0005, 0007): PostgreSQL refuses to alter a
table with pending deferred foreign-key checks in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def build_trees(apps: Any, schema_editor: Any) -> None:
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    for conversation_id in Conversation.objects.values_list("pk", flat=True).iterator():
        rows = list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("id")
            .values_list("id", "created_at", "superseded_at")
        )
        thread: list[tuple[int, Any]] = []  # (id, superseded_at) of the thread at that time
        parents: dict[int, int | None] = {}
        for message_id, created_at, superseded_at in rows:
            thread = [(m, s) for m, s in thread if s is None or s > created_at]
            parents[message_id] = thread[-1][0] if thread else None
            thread.append((message_id, superseded_at))
        by_parent: dict[int | None, list[int]] = {}
        for message_id, parent_id in parents.items():
            if parent_id is not None:
                by_parent.setdefault(parent_id, []).append(message_id)
        for parent_id, children in by_parent.items():
            Message.objects.filter(pk__in=children).update(parent_id=parent_id)
        active = [message_id for message_id, _created, superseded in rows if superseded is None]
        if active:
            leaf = active[-1]
            # Every ancestor of the leaf points to the child on its thread (a newer version
            # beside it, superseded, would otherwise be taken as the one shown last).
            child, parent = leaf, parents[leaf]
            while parent is not None:
                Message.objects.filter(pk=parent).update(shown_child_id=child)
                child, parent = parent, parents[parent]
            Conversation.objects.filter(pk=conversation_id).update(shown_leaf_id=leaf)
        elif rows:
            Conversation.objects.filter(pk=conversation_id).update(shown_leaf_id=rows[-1][0])


def mark_superseded(apps: Any, schema_editor: Any) -> None:
    """Backwards: everything off the shown thread becomes a previous version again (at
    its last update). Nothing is deleted; but a list cannot say that an older version is
    shown beside a newer one, so a tree does not survive a round trip exactly."""
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    for conversation_id, leaf_id in Conversation.objects.values_list("pk", "shown_leaf_id"):
        parents = dict(
            Message.objects.filter(conversation_id=conversation_id).values_list("id", "parent_id")
        )
        shown = set()
        while leaf_id is not None:
            shown.add(leaf_id)
            leaf_id = parents.get(leaf_id)
        for message_id, updated_at in (
            Message.objects.filter(conversation_id=conversation_id)
            .exclude(pk__in=shown)
            .values_list("id", "updated_at")
        ):
            Message.objects.filter(pk=message_id).update(superseded_at=updated_at)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_message_tree"),
    ]

    operations = [migrations.RunPython(build_trees, mark_superseded)]
