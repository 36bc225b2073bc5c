"""The hand-written reads of the turn path return what the ORM would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.utils import timezone

from conversations import rows, services
from conversations.models import Conversation, Message, SearchDocument
from tests.conftest import give_key

pytestmark = pytest.mark.django_db


def test_one_row_comes_back_as_the_orm_reads_it(alice):
    conversation = services.conversations.create_conversation(alice, title="Tides")
    services.conversations.update_settings(
        conversation, system_prompt="Be brief.", temperature=0.3, top_p=1.0
    )
    db = rows.database()
    where = f"WHERE {rows.column(db, Conversation, 'id')} = %s"
    read = rows.one(db, Conversation, where, [conversation.pk], for_update=True)
    orm = Conversation.objects.get(pk=conversation.pk)
    assert read is not None
    # Every column typed as the ORM types it: UUID, datetimes, booleans, floats.
    for field in Conversation._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(orm, field.attname), field.name
        assert type(getattr(read, field.attname)) is type(getattr(orm, field.attname))
    assert model_to_dict(read) == model_to_dict(orm)
    assert not read._state.adding and read._state.db == connection.alias
    assert rows.one(db, Conversation, where, [conversation.pk + 1000]) is None


def test_the_history_read_is_the_thread_of_the_new_reply_in_order(alice, gateway):
    give_key(alice, gateway, "sk-rows")
    conversation = services.conversations.create_conversation(alice)
    first = services.turns.start_turn(alice, conversation, "one")
    services.replies.finish_reply(
        first.plan, services.replies.Outcome(status="complete", content="uno")
    )
    second = services.turns.start_turn(alice, conversation, "two")
    assert second.plan.history == services.turns.load_history(second.user_message.pk)
    assert second.plan.history == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "uno"},
        {"role": "user", "content": "two"},
    ]
    services.replies.finish_reply(
        second.plan, services.replies.Outcome(status="complete", content="dos")
    )
    again = services.turns.edit_and_resend(alice, conversation, second.user_message.public_id, "2")
    assert again.plan.history == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "uno"},
        {"role": "user", "content": "2"},
    ]


def test_an_update_stores_what_the_orm_would_and_says_how_many_rows_changed(alice):
    conversation = services.conversations.create_conversation(alice, title="Old")
    when = timezone.now() - timedelta(days=3)
    db = rows.database()
    where = f"WHERE {rows.column(db, Conversation, 'id')} = %s"
    values = {"title": "New", "updated_at": when, "temperature": 0.5}
    assert rows.update(db, Conversation, values, where, [conversation.pk]) == 1
    assert rows.update(db, Conversation, values, where, [conversation.pk + 1000]) == 0
    conversation.refresh_from_db()
    assert (conversation.title, conversation.updated_at, conversation.temperature) == (
        "New",
        when,
        0.5,
    )


def test_an_insert_sets_keys_in_order_and_can_skip_rows_an_index_refuses(alice):
    conversation = services.conversations.create_conversation(alice)
    db = rows.database()
    first, second = (
        Message(conversation=conversation, role="user", content=text) for text in ("a", "b")
    )
    rows.insert(db, [first, second])
    assert first.pk is not None and second.pk == first.pk + 1
    stored = Message.objects.get(pk=first.pk)
    # Defaults and auto_now_add went in as the ORM writes them.
    assert (stored.public_id, stored.created_at) == (first.public_id, first.created_at)
    assert stored.created_at is not None and not first._state.adding
    again = SearchDocument(owner=alice, conversation=conversation, message=first, body="a")
    assert rows.insert(db, [again], ignore_conflicts=True) == 1
    refused = SearchDocument(owner=alice, conversation=conversation, message=first, body="b")
    assert rows.insert(db, [refused], ignore_conflicts=True) == 0
    assert SearchDocument.objects.filter(message=first).count() == 1
