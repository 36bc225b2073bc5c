"""The shown thread a page at a time (conversations/pages.py): pages of a long thread read
with a cost that does not grow with it, cursors that page up and down without gaps or
repeats, versions counted as the whole tree counts them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import pages, services, tree
from conversations.models import Conversation, Message
from tests.support.long import long_thread, thread_ids

pytestmark = pytest.mark.django_db


def ids(page: pages.Page | None) -> list[str]:
    assert page is not None
    return [str(s.message.public_id) for s in page.shown]


def test_the_newest_page_is_the_end_of_the_thread_and_says_where_more_is(alice: Any) -> None:
    conversation = long_thread(alice, 100)
    every = thread_ids(conversation)

    page = pages.newest(conversation)

    assert ids(page) == every[-pages.PAGE_SIZE :]
    assert str(page.older_than) == every[-pages.PAGE_SIZE]
    assert page.newer_than is None


def test_paging_up_reaches_the_first_message_without_gaps_or_repeats(alice: Any) -> None:
    conversation = long_thread(alice, 101)
    page = pages.newest(conversation)
    seen = ids(page)
    while page.older_than is not None:
        page = pages.before(conversation, page.older_than)
        seen = ids(page) + seen

    assert seen == thread_ids(conversation)


def test_a_page_around_a_message_pages_down_to_the_end(alice: Any) -> None:
    conversation = long_thread(alice, 120)
    every = thread_ids(conversation)
    target = every[30]

    page = pages.around(conversation, target)
    assert page is not None and target in ids(page)
    half = pages.PAGE_SIZE // 2
    assert ids(page) == every[30 - half + 1 : 30 + half + 1]
    seen = ids(page)
    while page.newer_than is not None:
        page = pages.after(conversation, page.newer_than)
        seen += ids(page)
    assert seen[-1] == every[-1] and seen == every[every.index(seen[0]) :]


def test_opening_costs_the_same_queries_at_100_and_1000_messages(alice: Any) -> None:
    short, long = long_thread(alice, 100), long_thread(alice, 1000)
    counts = []
    for conversation in (short, long):
        with CaptureQueriesContext(connection) as queries:
            page = pages.newest(conversation)
        counts.append(len(queries))
        assert len(page.shown) == pages.PAGE_SIZE
    assert counts[0] == counts[1] <= 4


def test_versions_on_a_page_are_those_of_the_whole_tree(alice: Any, gateway: Any) -> None:
    conversation = long_thread(alice, 60)
    every = list(conversation.messages.order_by("id"))
    # Two more versions of the reply at 51, the middle one shown, and of the first question.
    for message in (every[51], every[51], every[0]):
        sibling = Message.objects.create(
            conversation=conversation, parent=message.parent, role=message.role, content="v"
        )
    services.threads.switch(conversation, every[51].public_id)
    conversation.refresh_from_db()

    whole = tree.shown_thread(conversation)
    page = pages.newest(conversation, size=20)
    expected = whole[-20:]
    assert [
        (s.message.pk, s.version, s.versions, s.previous_id, s.next_id, s.parent_id)
        for s in page.shown
    ] == [
        (s.message.pk, s.version, s.versions, s.previous_id, s.next_id, s.parent_id)
        for s in expected
    ]
    first = pages.before(conversation, every[1].public_id)
    assert first is not None and first.shown[0].versions == 2 and first.older_than is None
    assert sibling.pk  # the first question's new version exists beside it


def test_a_message_of_another_conversation_is_no_cursor(alice: Any, bob: Any) -> None:
    mine, theirs = long_thread(alice, 10), long_thread(bob, 10)
    foreign = thread_ids(theirs)[5]

    assert pages.before(mine, foreign) is None
    assert pages.after(mine, foreign) is None
    assert pages.around(mine, foreign) is None


def test_the_tail_is_what_follows_a_message_or_nothing_when_the_thread_moved_on(
    alice: Any,
) -> None:
    conversation = long_thread(alice, 50)
    every = thread_ids(conversation)

    assert ids(pages.tail(conversation, every[45])) == every[46:]
    assert ids(pages.tail(conversation, every[-1])) == []
    # More than a page behind: the page starts over from the newest instead.
    assert pages.tail(conversation, every[2]) is None
    # Another version shown below it: that message is not on the shown thread any more.
    message = Message.objects.get(public_id=every[47])
    Message.objects.create(
        conversation=conversation, parent=message.parent, role=message.role, content="v2"
    )
    services.threads.switch(conversation, Message.objects.order_by("-id").first().public_id)
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert pages.tail(conversation, every[48]) is None
    assert pages.around(conversation, every[48]) is None
