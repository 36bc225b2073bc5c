"""The conversation list: day groups and cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from conversations import listing, services
from conversations.models import Conversation

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def at(when: datetime, title: str = "") -> Conversation:
    return Conversation(title=title or when.isoformat(), updated_at=when)


def labels(*whens: datetime, now: datetime = NOW) -> list[str]:
    groups = listing.group_by_day([at(w) for w in whens], now=now)
    return [label for label, items in groups for _ in items]


def day(days_ago: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    return (
        midnight - timedelta(days=days_ago) + timedelta(hours=hour, minutes=minute, seconds=second)
    )


@pytest.mark.parametrize(
    ("when", "label"),
    [
        pytest.param(NOW + timedelta(minutes=5), "Today", id="slightly-in-the-future"),
        pytest.param(NOW, "Today", id="now"),
        pytest.param(day(0, 0), "Today", id="today-midnight"),
        pytest.param(day(1, 23, 59, 59), "Yesterday", id="yesterday-last-second"),
        pytest.param(day(1, 0), "Yesterday", id="yesterday-midnight"),
        pytest.param(day(2, 23, 59, 59), "Previous 7 days", id="two-days-ago"),
        pytest.param(day(7, 0), "Previous 7 days", id="seven-days-ago"),
        pytest.param(day(8, 23, 59, 59), "Previous 30 days", id="eight-days-ago"),
        pytest.param(day(30, 0), "Previous 30 days", id="thirty-days-ago"),
        pytest.param(day(31, 23, 59, 59), "Older", id="thirty-one-days-ago"),
        pytest.param(day(400), "Older", id="last-year"),
    ],
)
def test_it_labels_each_day(when: datetime, label: str) -> None:
    assert labels(when) == [label]


def test_it_keeps_order_and_merges_neighbours_of_one_label() -> None:
    items = [at(day(0, 11), "a"), at(day(0, 9), "b"), at(day(1), "c"), at(day(3), "d")]
    items += [at(day(5), "e"), at(day(20), "f"), at(day(90), "g")]
    groups = listing.group_by_day(items, now=NOW)
    assert [(label, [c.title for c in group]) for label, group in groups] == [
        ("Today", ["a", "b"]),
        ("Yesterday", ["c"]),
        ("Previous 7 days", ["d", "e"]),
        ("Previous 30 days", ["f"]),
        ("Older", ["g"]),
    ]


def test_it_uses_the_local_day_not_the_utc_day() -> None:
    # 01:30 in Shanghai on the 15th is still the 14th in UTC.
    late = datetime(2026, 3, 14, 17, 30, tzinfo=UTC)
    now = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)
    with timezone.override("Asia/Shanghai"):
        assert labels(late, now=now) == ["Today"]
    with timezone.override("UTC"):
        assert labels(late, now=now) == ["Yesterday"]


def test_it_groups_nothing_into_nothing() -> None:
    assert listing.group_by_day([], now=NOW) == []


@pytest.mark.parametrize(
    "cursor",
    ["", "garbage", "~", "2026-03-15T12:00:00~", "~12", "9999-12-31T23:59:59-12:00~1"],
)
def test_a_broken_cursor_starts_from_the_top(db: None, alice, cursor: str) -> None:
    services.conversations.create_conversation(alice, title="only one")
    page = listing.page(alice, cursor)
    assert [c.title for _, items in page.groups for c in items] == ["only one"]
    assert page.next_cursor is None


def test_pages_continue_across_equal_timestamps(db: None, alice) -> None:
    Conversation.objects.bulk_create(
        [Conversation(owner=alice, title=f"c{i:02}") for i in range(25)]
    )
    # Many rows share one timestamp: the id breaks ties, so no page repeats or skips one.
    Conversation.objects.filter(owner=alice).update(updated_at=NOW)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = listing.page(alice, cursor, size=7)
        seen += [c.title for _, items in page.groups for c in items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"c{i:02}" for i in reversed(range(25))]
