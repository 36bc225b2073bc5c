"""Migration 0006: previous versions (`superseded_at`) become siblings in the tree.

Run on a real database migrated back to 0004, filled as the app before versions left it
(regenerate: the old reply superseded, edit: a question and what followed it superseded),
then migrated forward.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from conversations.tree import Node, Tree

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0004_verbose_names")]
AFTER = [("conversations", "0007_remove_message_superseded_at")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to `targets`; the historical apps there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps(django_user_model: Any) -> Any:
    apps = migrate(BEFORE)
    yield apps
    # The next test finds the schema it expects: every migration, not only the versions'.
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_superseded_messages_become_siblings_and_none_is_lost(old_apps: Any) -> None:
    User = old_apps.get_model("auth", "User")
    Conversation = old_apps.get_model("conversations", "Conversation")
    Message = old_apps.get_model("conversations", "Message")
    owner = User.objects.create(username="old")
    conversation = Conversation.objects.create(owner=owner)
    clock = timezone.now() - timedelta(hours=1)

    def add(role: str, content: str, **fields: Any) -> Any:
        nonlocal clock
        clock += timedelta(seconds=1)
        message = Message.objects.create(
            conversation=conversation, role=role, content=content, **fields
        )
        Message.objects.filter(pk=message.pk).update(created_at=clock)
        return message.pk

    def supersede(*ids: int) -> None:
        nonlocal clock
        clock += timedelta(seconds=1)
        Message.objects.filter(pk__in=ids).update(superseded_at=clock)

    q1, a1 = add("user", "Q1"), add("assistant", "A1")
    supersede(a1)  # regenerate
    a1b = add("assistant", "A1b")
    q2, a2 = add("user", "Q2"), add("assistant", "A2")
    supersede(q2, a2)  # edit of Q2
    q2b, a2b = add("user", "Q2b"), add("assistant", "A2b")
    supersede(q1, a1b, q2b, a2b)  # edit of Q1
    q1b, a1c = add("user", "Q1b"), add("assistant", "A1c")
    # A second conversation, never regenerated, and one streaming reply.
    plain = Conversation.objects.create(owner=owner)
    p1 = Message.objects.create(conversation=plain, role="user", content="hi").pk
    p2 = Message.objects.create(
        conversation=plain, role="assistant", content="hel", status="streaming"
    ).pk

    new_apps = migrate(AFTER)
    Message = new_apps.get_model("conversations", "Message")
    Conversation = new_apps.get_model("conversations", "Conversation")
    parents = dict(Message.objects.values_list("pk", "parent_id"))
    assert parents == {
        q1: None,
        a1: q1,
        a1b: q1,  # beside A1
        q2: a1b,
        a2: q2,
        q2b: a1b,  # beside Q2
        a2b: q2b,
        q1b: None,  # beside Q1
        a1c: q1b,
        p1: None,
        p2: p1,
    }
    assert Conversation.objects.get(pk=conversation.pk).shown_leaf_id == a1c
    assert Conversation.objects.get(pk=plain.pk).shown_leaf_id == p2
    shape = Tree(
        Node(*row)
        for row in Message.objects.values_list(
            "id", "parent_id", "shown_child_id", "role", "public_id"
        )
    )
    assert shape.path(a1c) == [q1b, a1c]
    # Switching back to Q1 shows what the edit of Q1 took away: A1b, Q2b, A2b.
    assert shape.path(shape.descend(q1)) == [q1, a1b, q2b, a2b]
    assert "superseded_at" not in {f.name for f in Message._meta.get_fields()}

    # One streaming reply per conversation, still enforced by the database.
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(
            conversation_id=plain.pk, role="assistant", status="streaming", parent_id=p1
        )


def test_migration_0013_stores_the_html_of_every_final_reply() -> None:
    """Replies stored before issue 22 get their HTML once, at migration time: after it no
    page renders them. A reply still streaming has none (its final save renders it)."""
    from conversations import rendering

    apps = migrate([("conversations", "0012_conversation_pin_archive")])
    try:
        User = apps.get_model("auth", "User")
        Conversation = apps.get_model("conversations", "Conversation")
        Message = apps.get_model("conversations", "Message")
        conversation = Conversation.objects.create(owner=User.objects.create(username="old"))
        question = Message.objects.create(
            conversation=conversation, role="user", content="**not** Markdown"
        )
        reply = Message.objects.create(
            conversation=conversation, parent=question, role="assistant", content="**Bold**"
        )
        streaming = Message.objects.create(
            conversation=conversation,
            parent=reply,
            role="assistant",
            content="*so far*",
            status="streaming",
        )
        apps = migrate([("conversations", "0013_message_html")])
        Message = apps.get_model("conversations", "Message")
        stored = {m.pk: m for m in Message.objects.all()}
        assert stored[reply.pk].html == "<p><strong>Bold</strong></p>\n"
        assert stored[reply.pk].html_version == rendering.VERSION
        assert (stored[question.pk].html, stored[question.pk].html_version) == ("", 0)
        assert (stored[streaming.pk].html, stored[streaming.pk].html_version) == ("", 0)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
