"""The conversation list: newest activity first, grouped by day, paged by a cursor.

A cursor (last `updated_at` and id) instead of an offset keeps every page one indexed
query, however many conversations a person has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    groups: list[tuple[str, list[Conversation]]]
    next_cursor: str | None


def _parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        stamp, _, pk = cursor.rpartition("~")
        when = datetime.fromisoformat(stamp)
        when = when if when.tzinfo else timezone.make_aware(when)
        # In UTC now: a hand-made stamp near year 1 or 9999 overflows here, not in the query.
        return when.astimezone(UTC), int(pk)
    except (ValueError, OverflowError):
        return None


# Pinned conversations are few by nature; past this many, the oldest pins show in their day.
PINNED_LIMIT = 50


def page(user: AbstractBaseUser, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """A page of the sidebar: pinned conversations on top (first page only), then the rest
    by last activity. Archived conversations are not listed (see `archived_page`)."""
    fields = ("public_id", "title", "updated_at", "pinned_at")
    listed = Conversation.objects.filter(owner=user, archived_at__isnull=True).only(*fields)
    pinned = list(listed.filter(pinned_at__isnull=False).order_by("-pinned_at")[:PINNED_LIMIT])
    rows = listed.exclude(pk__in=[c.pk for c in pinned])
    result = _page(rows, cursor, size)
    if cursor or not pinned:
        return result
    return Page([(_("Pinned"), pinned), *result.groups], result.next_cursor)


def archived_page(user: AbstractBaseUser, cursor: str | None = None, size: int = PAGE_SIZE) -> Page:
    """The Archived page: archived conversations by last activity, paged like the list."""
    rows = Conversation.objects.filter(owner=user, archived_at__isnull=False).only(
        "public_id", "title", "updated_at", "archived_at"
    )
    return _page(rows, cursor, size)


def _page(rows: QuerySet[Conversation], cursor: str | None, size: int) -> Page:
    after = _parse_cursor(cursor)
    if after is not None:
        when, pk = after
        rows = rows.filter(Q(updated_at__lt=when) | Q(updated_at=when, pk__lt=pk))
    items = list(rows.order_by("-updated_at", "-pk")[: size + 1])
    next_cursor = None
    if len(items) > size:
        items = items[:size]
        last = items[-1]
        next_cursor = f"{last.updated_at.isoformat()}~{last.pk}"
    return Page(group_by_day(items), next_cursor)


def group_by_day(
    items: list[Conversation], now: datetime | None = None
) -> list[tuple[str, list[Conversation]]]:
    today = timezone.localdate(now or timezone.now())
    labels: list[tuple[str, list[Conversation]]] = []
    for conversation in items:
        day = timezone.localdate(conversation.updated_at)
        # A clock slightly ahead of `now` is still today; "previous N days" includes day N.
        if day >= today:
            label = _("Today")
        elif day == today - timedelta(days=1):
            label = _("Yesterday")
        elif day >= today - timedelta(days=7):
            label = _("Previous 7 days")
        elif day >= today - timedelta(days=30):
            label = _("Previous 30 days")
        else:
            label = _("Older")
        if labels and labels[-1][0] == label:
            labels[-1][1].append(conversation)
        else:
            labels.append((label, [conversation]))
    return labels
