"""services.threads and the versions of services.turns: the tree, the shown thread, bad input.

Turns are stored through the services without a gateway (tests/support/turns.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from conversations import services, tree
from conversations.models import Conversation, Message
from conversations.services import ServiceError
from conversations.services.replies import Outcome
from conversations.services.turns import TurnStart
from tests.support.turns import exchange, keyed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limit(settings: Any) -> None:
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0


def answer(start: TurnStart, text: str) -> Message:
    """Finish a turn's reply as the generation would."""
    assert start.plan is not None and start.assistant_message is not None
    services.replies.finish_reply(start.plan, Outcome(status="complete", content=text))
    return Message.objects.get(pk=start.assistant_message.pk)


def shown(conversation: Conversation) -> list[str]:
    conversation.refresh_from_db()
    return [s.message.content for s in tree.shown_thread(conversation)]


def snapshot(conversation: Conversation) -> tuple[Any, ...]:
    """Everything a refused action must leave as it was."""
    conversation.refresh_from_db()
    return (
        conversation.shown_leaf_id,
        list(conversation.messages.values_list("pk", "parent", "shown_child", "content")),
    )


@pytest.fixture
def talk(alice: Any) -> Conversation:
    """Q1 A1 Q2 A2, stored and shown."""
    keyed(alice)
    conversation = services.conversations.create_conversation(alice)
    exchange(alice, conversation, "Q1", "A1")
    exchange(alice, conversation, "Q2", "A2")
    return conversation


def test_a_send_continues_the_shown_thread(alice, talk):
    q1, a1, q2, a2 = talk.messages.order_by("id")
    assert [q1.parent_id, a1.parent_id, q2.parent_id, a2.parent_id] == [None, q1.pk, a1.pk, q2.pk]
    assert shown(talk) == ["Q1", "A1", "Q2", "A2"]


def test_regenerating_an_earlier_reply_adds_a_version_beside_it_and_shows_it(alice, talk):
    _q1, a1, *_ = talk.messages.order_by("id")
    start = services.turns.regenerate(alice, talk, str(a1.public_id))
    assert start.plan is not None
    # Upstream: the thread root to the question, nothing of what came after.
    assert start.plan.history == [{"role": "user", "content": "Q1"}]
    answer(start, "A1 again")
    assert shown(talk) == ["Q1", "A1 again"]
    versions = tree.shown_thread(talk)[1]
    assert (versions.version, versions.versions, versions.previous_id) == (2, 2, a1.public_id)


def test_a_switch_back_shows_the_thread_that_was_below_that_version(alice, talk):
    _q1, a1, *_ = talk.messages.order_by("id")
    new = answer(services.turns.regenerate(alice, talk, a1.public_id), "A1 again")
    services.threads.switch(talk, str(a1.public_id))
    assert shown(talk) == ["Q1", "A1", "Q2", "A2"]
    services.threads.switch(talk, str(new.public_id))
    assert shown(talk) == ["Q1", "A1 again"]
    # A follow-up continues the version shown: its history carries that version's text.
    services.threads.switch(talk, str(a1.public_id))
    services.threads.switch(talk, str(new.public_id))
    start = services.turns.start_turn(alice, talk, "Q3")
    assert start.plan is not None
    assert start.plan.history == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1 again"},
        {"role": "user", "content": "Q3"},
    ]


def test_editing_a_question_adds_a_version_and_keeps_the_old_branch_reachable(alice, talk):
    q1, *_ = talk.messages.order_by("id")
    start = services.turns.edit_and_resend(alice, talk, q1.public_id, "Q1 edited")
    assert start.plan is not None and start.plan.history == [
        {"role": "user", "content": "Q1 edited"}
    ]
    assert start.user_message.parent_id is None  # a sibling of the first question
    answer(start, "A1 edited")
    assert shown(talk) == ["Q1 edited", "A1 edited"]
    services.threads.switch(talk, q1.public_id)
    assert shown(talk) == ["Q1", "A1", "Q2", "A2"]
    first = tree.shown_thread(talk)[0]
    assert (first.version, first.versions, first.next_id) == (1, 2, start.user_message.public_id)


def test_a_switch_to_a_message_deep_in_another_branch_shows_its_whole_thread(alice, talk):
    q1, _a1, q2, a2 = talk.messages.order_by("id")
    answer(services.turns.edit_and_resend(alice, talk, q1.public_id, "other"), "branch")
    # Any message, not only a version beside a shown one (a search hit): its thread is shown.
    services.threads.switch(talk, q2.public_id)
    assert shown(talk) == ["Q1", "A1", "Q2", "A2"]
    talk.refresh_from_db()
    assert talk.shown_leaf_id == a2.pk


def test_every_version_is_found_by_search(alice, talk):
    from conversations import search

    _q1, a1, *_ = talk.messages.order_by("id")
    answer(services.turns.regenerate(alice, talk, a1.public_id), "a zephyrine answer")
    services.threads.switch(talk, a1.public_id)
    hits = search.search(alice.pk, "zephyrine")
    assert [h.message_id for h in hits] == [
        str(talk.messages.get(content="a zephyrine answer").public_id)
    ]


def test_regenerate_without_an_id_is_the_last_reply_shown(alice, talk):
    start = services.turns.regenerate(alice, talk)
    assert start.user_message.content == "Q2"
    assert start.assistant_message is not None and start.assistant_message.parent_id == (
        start.user_message.pk
    )


def test_a_second_reply_while_one_streams_is_refused_anywhere_in_the_tree(alice, talk):
    q1, a1, *_ = talk.messages.order_by("id")
    services.turns.regenerate(alice, talk, a1.public_id)  # streams (no generation here)
    before = snapshot(talk)
    for action in (
        lambda: services.turns.start_turn(alice, talk, "more"),
        lambda: services.turns.regenerate(alice, talk, a1.public_id),
        lambda: services.turns.edit_and_resend(alice, talk, q1.public_id, "x"),
    ):
        with pytest.raises(ServiceError) as refused:
            action()
        assert refused.value.code == "generation_running"
    assert snapshot(talk) == before
    # A switch is no reply: allowed, and the reply goes on (it is still streaming).
    services.threads.switch(talk, a1.public_id)
    assert talk.messages.filter(status=Message.Status.STREAMING).count() == 1


@pytest.mark.parametrize("action", ["switch", "regenerate", "edit"])
def test_a_message_of_another_conversation_or_person_is_not_found_and_nothing_changes(
    alice, bob, talk, action
):
    keyed(bob)
    mine_elsewhere = services.conversations.create_conversation(alice)
    theirs = services.conversations.create_conversation(bob)
    foreign = [
        exchange(alice, mine_elsewhere, "elsewhere", "there"),
        exchange(bob, theirs, "bob's", "his"),
    ]
    before = snapshot(talk)
    for reply in foreign:
        target = reply.parent if action == "edit" else reply
        with pytest.raises(ServiceError) as refused:
            if action == "switch":
                services.threads.switch(talk, target.public_id)
            elif action == "regenerate":
                services.turns.regenerate(alice, talk, target.public_id)
            else:
                services.turns.edit_and_resend(alice, talk, target.public_id, "x")
        assert refused.value.code == "message_not_found"
        assert refused.value.message  # a sentence for people
    with pytest.raises(ServiceError) as refused:
        services.threads.switch(talk, "not-a-uuid")
    assert refused.value.code == "invalid_message_id"
    assert snapshot(talk) == before


def test_a_question_cannot_be_regenerated_nor_a_reply_edited(alice, talk):
    q1, a1, *_ = talk.messages.order_by("id")
    before = snapshot(talk)
    with pytest.raises(ServiceError) as refused:
        services.turns.regenerate(alice, talk, q1.public_id)
    assert refused.value.code == "not_regenerable"
    with pytest.raises(ServiceError) as refused:
        services.turns.edit_and_resend(alice, talk, a1.public_id, "x")
    assert refused.value.code == "not_editable"
    assert snapshot(talk) == before


def test_the_admin_sees_every_version_where_it_hangs_and_which_are_shown(alice, talk, client):
    from django.contrib.auth import get_user_model

    _q1, a1, *_ = talk.messages.order_by("id")
    answer(services.turns.regenerate(alice, talk, a1.public_id), "A1 again")
    admin = get_user_model().objects.create_superuser("root", password="pw-root")
    client.force_login(admin)
    page = client.get(f"/admin/conversations/conversation/{talk.pk}/change/").content.decode()
    page = page.split('id="messages-group"', 1)[1]  # the messages, not the conversation
    for message in talk.messages.all():
        assert str(message.public_id)[:8] in page
    assert page.count(">1 / 2<") == 1 and page.count(">2 / 2<") == 1
    # Q1 and "A1 again" shown; A1, Q2, A2 not.
    assert page.count('alt="True"') == 2 and page.count('alt="False"') == 3
