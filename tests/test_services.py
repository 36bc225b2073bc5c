"""services: the writes behind a turn, checked at the statements the database receives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import services
from conversations.models import Message, SearchDocument
from conversations.search import segment
from tests.conftest import give_key


def writes(queries: CaptureQueriesContext, table: str) -> list[str]:
    """The write statements on `table` (an executemany is logged once, as "N times: SQL")."""
    statements = [q["sql"].split(" times: ", 1)[-1] for q in queries.captured_queries]
    return [
        sql for sql in statements if sql.startswith(("INSERT", "UPDATE", "DELETE")) and table in sql
    ]


@pytest.fixture
def turn(alice: Any, gateway: Any) -> services.turns.TurnStart:
    give_key(alice, gateway, "sk-services")
    conversation = services.conversations.create_conversation(alice)
    return services.turns.start_turn(alice, conversation, "first question", client_id="c-1")


def test_a_turn_stores_question_and_placeholder_with_one_insert_each(alice, gateway):
    give_key(alice, gateway, "sk-services")
    conversation = services.conversations.create_conversation(alice)
    with CaptureQueriesContext(connection) as queries:
        start = services.turns.start_turn(alice, conversation, "a question", client_id="c-1")
    # Two: the reply's parent is the question's new id.
    assert len(writes(queries, "conversations_message")) == 2
    assert start.user_message.pk < start.assistant_message.pk
    assert start.assistant_message.parent_id == start.user_message.pk
    assert start.assistant_message.status == Message.Status.STREAMING
    # The upstream history was read in the same transaction, ending with the question.
    assert start.plan is not None
    assert start.plan.history == [{"role": "user", "content": "a question"}]


def test_a_resent_client_id_returns_the_stored_question_and_stores_nothing(alice, turn):
    again = services.turns.start_turn(
        alice, turn.user_message.conversation, "first question", "c-1"
    )
    assert again.plan is None and again.assistant_message is None
    assert again.user_message.pk == turn.user_message.pk
    assert Message.objects.filter(conversation=turn.user_message.conversation).count() == 2


def test_a_checkpoint_saves_partial_replies_and_renews_their_leases(turn):
    reply = turn.assistant_message
    Message.objects.filter(pk=reply.pk).update(lease_expires_at=timezone.now())
    services.replies.checkpoint(
        [services.replies.Checkpoint(reply.pk, "partial text", "some thought", 7)], []
    )
    reply.refresh_from_db()
    assert (reply.content, reply.thinking, reply.seq) == ("partial text", "some thought", 7)
    assert reply.lease_expires_at > timezone.now() + timedelta(seconds=1)


def test_a_checkpoint_never_overwrites_a_reply_that_finished_meanwhile(turn):
    reply = turn.assistant_message
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content="final")
    services.replies.checkpoint(
        [services.replies.Checkpoint(reply.pk, "older partial", "", 3)], [reply.pk]
    )
    reply.refresh_from_db()
    assert (reply.status, reply.content) == (Message.Status.COMPLETE, "final")


def test_a_checkpoint_of_many_replies_is_one_statement(alice, gateway):
    give_key(alice, gateway, "sk-services")
    replies = []
    for n in range(5):
        conversation = services.conversations.create_conversation(alice)
        replies.append(services.turns.start_turn(alice, conversation, f"q{n}").assistant_message)
    batch = [services.replies.Checkpoint(r.pk, f"text {r.pk}", "", 1) for r in replies]
    with CaptureQueriesContext(connection) as queries:
        services.replies.checkpoint(batch, [r.pk for r in replies])
    # executemany is recorded once per call, with every row's parameters.
    assert len(writes(queries, "conversations_message")) == 1
    assert {m.content for m in Message.objects.filter(pk__in=[r.pk for r in replies])} == {
        f"text {r.pk}" for r in replies
    }


def test_a_first_title_is_indexed_with_the_reply_and_a_rename_meanwhile_wins(alice, gateway):
    give_key(alice, gateway, "sk-services")
    conversation = services.conversations.create_conversation(alice)
    start = services.turns.start_turn(alice, conversation, "how do tides work")
    assert start.plan is not None and start.plan.first_title == "how do tides work"
    # Renamed while the reply streams: the chosen title is indexed at once.
    services.conversations.rename_conversation(conversation, "Oceans")
    services.replies.finish_reply(
        start.plan,
        services.replies.Outcome(status=Message.Status.COMPLETE, content="The moon."),
    )
    titles = SearchDocument.objects.filter(conversation=conversation, message=None)
    assert [d.body for d in titles] == [segment("Oceans")]
    assert SearchDocument.objects.filter(conversation=conversation).count() == 3


# --- Text no database stores as it is (see conversations.text) ----------------------------
def running_replies(user: Any, gateway: Any, count: int) -> list[Message]:
    give_key(user, gateway, "sk-services")
    return [
        services.turns.start_turn(
            user, services.conversations.create_conversation(user), f"q{n}"
        ).assistant_message
        for n in range(count)
    ]


def test_a_checkpoint_row_the_database_refuses_does_not_cost_the_others_theirs(alice, gateway):
    first, odd, last = running_replies(alice, gateway, 3)
    Message.objects.update(lease_expires_at=timezone.now())
    batch = [
        services.replies.Checkpoint(first.pk, "first partial", "", 4),
        # PostgreSQL refuses the NUL, both databases' drivers the lone surrogate: the batch
        # fails, then each row is saved on its own, cleaned.
        services.replies.Checkpoint(odd.pk, "odd\x00 partial \ud800", "a\x00 thought", 5),
        services.replies.Checkpoint(last.pk, "last partial", "", 6),
    ]
    services.replies.checkpoint(batch, [first.pk, odd.pk, last.pk])
    saved = [Message.objects.get(pk=reply.pk) for reply in (first, odd, last)]
    assert [(m.content, m.thinking, m.seq) for m in saved] == [
        ("first partial", "", 4),
        ("odd partial \ufffd", "a thought", 5),
        ("last partial", "", 6),
    ]
    assert all(m.lease_expires_at > timezone.now() + timedelta(seconds=1) for m in saved)


def test_a_checkpoint_row_refused_even_cleaned_keeps_its_text_and_its_lease(
    alice, gateway, refuse_writes
):
    refused, kept = running_replies(alice, gateway, 2)
    Message.objects.update(lease_expires_at=timezone.now())
    refuse_writes("conversations_message", "content", "refused by the database")
    services.replies.checkpoint(
        [
            services.replies.Checkpoint(refused.pk, "refused by the database", "", 3),
            services.replies.Checkpoint(kept.pk, "kept partial", "", 3),
        ],
        [],
    )
    refused.refresh_from_db()
    kept.refresh_from_db()
    assert (refused.content, refused.seq) == ("", 0)
    assert (kept.content, kept.seq) == ("kept partial", 3)
    # The refused reply is alive: its lease is renewed all the same.
    for reply in (refused, kept):
        assert reply.lease_expires_at > timezone.now() + timedelta(seconds=1)


def test_titles_settings_and_labels_are_stored_without_nul_or_lone_surrogates(alice, gateway):
    conversation = services.conversations.create_conversation(alice, title="New\x00 chat")
    assert conversation.title == "New chat"
    services.conversations.rename_conversation(conversation, "Tea\x00 \udcff time")
    services.conversations.update_settings(
        conversation, system_prompt="Be\x00 brief.", model="m\x00"
    )
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt, conversation.model) == (
        "Tea \ufffd time",
        "Be brief.",
        "m",
    )
    assert SearchDocument.objects.get(conversation=conversation, message=None).body == segment(
        "Tea \ufffd time"
    )
    with pytest.raises(services.ServiceError) as refused:
        services.conversations.rename_conversation(conversation, "\x00 \x00")
    assert refused.value.code == "invalid_title"

    fresh = services.conversations.create_conversation(alice)
    assert (
        services.conversations.set_generated_title(fresh.pk, "\x00Scones\x00 and tea") is not None
    )
    fresh.refresh_from_db()
    assert fresh.title == "Scones and tea"

    # A command line's bytes that are not UTF-8 arrive as lone surrogates.
    credential = give_key(alice, gateway, "sk-label", label="work\x00 key \udcff", model="hy\x00")
    credential.refresh_from_db()
    assert (credential.label, credential.default_model) == ("work key \ufffd", "hy")
