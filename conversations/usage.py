"""Token usage, aggregated in the database: per user, per day and per month (UTC).

Usage is what the gateway reported for each assistant reply (`input_tokens` and
`output_tokens`, stored by `services.replies.finish_reply`), whatever became of the reply later:
a superseded, stopped or failed reply was still paid for. Every function here runs a
fixed number of queries, whatever the number of messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from conversations.models import ApiCredential, Message

# Nulls (a reply that failed before the gateway reported usage) count as zero.
_INPUT = Coalesce(F("input_tokens"), 0)
_OUTPUT = Coalesce(F("output_tokens"), 0)
# Prompt caching: input read from and written to the gateway's cache, which the gateway
# reports apart from `input_tokens` (shown apart; quotas count input and output only).
_CACHE_READ = Coalesce(F("cache_read_input_tokens"), 0)
_CACHE_WRITE = Coalesce(F("cache_creation_input_tokens"), 0)


def month_start(now: datetime | None = None) -> datetime:
    """The first instant of the UTC month of `now`: quotas count from here."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime | None = None) -> datetime:
    """When the quota of the month of `now` resets."""
    # Day 1 plus 32 days always lands in the next month.
    return (month_start(now) + timedelta(days=32)).replace(day=1)


def replies() -> QuerySet[Message]:
    """The messages that cost tokens."""
    return Message.objects.filter(role=Message.Role.ASSISTANT)


def tokens_used(user_id: int, since: datetime) -> int:
    """Input plus output tokens of this user's replies since `since` (one query)."""
    result = replies().filter(conversation__owner_id=user_id, created_at__gte=since)
    return result.aggregate(total=Sum(_INPUT + _OUTPUT))["total"] or 0


# --- Groups -----------------------------------------------------------------------------------
def members_using(group_id: int, group_name: str) -> QuerySet[Any]:
    """The members of a group whose turns its credential answers (`credentials.resolve`):
    those without a credential of their own, and without another group of theirs whose
    active credential comes first by name. Their replies are what the group's quota counts.

    Replies are not stamped with the credential that paid for them, so usage follows
    today's membership: a member who joins mid-month brings the month's replies along, one
    who leaves takes theirs.
    """
    earlier_group = ApiCredential.objects.filter(
        group__user=OuterRef("pk"), is_active=True, group__name__lt=group_name
    )
    return (
        get_user_model()
        .objects.filter(groups=group_id)
        .exclude(Exists(ApiCredential.objects.filter(user=OuterRef("pk"))))
        .exclude(Exists(earlier_group))
    )


def group_tokens_used(group_id: int, since: datetime) -> int:
    """Input plus output tokens since `since` of the members who use the group's credential
    (one query)."""
    name = Group.objects.filter(pk=group_id).values_list("name", flat=True).first()
    if name is None:
        return 0
    result = replies().filter(
        conversation__owner__in=members_using(group_id, name), created_at__gte=since
    )
    return result.aggregate(total=Sum(_INPUT + _OUTPUT))["total"] or 0


@dataclass(frozen=True)
class GroupUsage:
    group_id: int
    name: str
    members: int  # members who use the group's credential
    input_tokens: int
    output_tokens: int
    quota: int | None  # of the group's newest active credential; None: no quota
    active: bool  # has an active credential

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def left(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.total)


def groups_usage(since: datetime) -> list[GroupUsage]:
    """Every group that has a credential, with its members' usage since `since`, by name.
    Two queries per group: an organisation has a few groups, not thousands."""
    result = []
    groups = Group.objects.filter(api_credentials__isnull=False).distinct().order_by("name")
    for group in groups:
        credential = (
            ApiCredential.objects.filter(group=group)
            .order_by("-is_active", "-updated_at")
            .values("is_active", "monthly_token_quota")
            .first()
        ) or {"is_active": False, "monthly_token_quota": None}
        members = members_using(group.pk, group.name)
        totals = replies().filter(conversation__owner__in=members, created_at__gte=since)
        sums = totals.aggregate(tokens_in=Sum(_INPUT), tokens_out=Sum(_OUTPUT))
        result.append(
            GroupUsage(
                group.pk,
                group.name,
                members.count(),
                sums["tokens_in"] or 0,
                sums["tokens_out"] or 0,
                credential["monthly_token_quota"],
                credential["is_active"],
            )
        )
    return result


@dataclass(frozen=True)
class Totals:
    input_tokens: int
    output_tokens: int
    replies: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def totals(since: datetime, *, user_id: int | None = None) -> Totals:
    rows = replies().filter(created_at__gte=since)
    if user_id is not None:
        rows = rows.filter(conversation__owner_id=user_id)
    # Aliases differ from the field names: an alias would shadow the field it sums.
    result = rows.aggregate(
        tokens_in=Sum(_INPUT),
        tokens_out=Sum(_OUTPUT),
        replies=Count("id"),
        cache_read=Sum(_CACHE_READ),
        cache_write=Sum(_CACHE_WRITE),
    )
    return Totals(
        result["tokens_in"] or 0,
        result["tokens_out"] or 0,
        result["replies"],
        result["cache_read"] or 0,
        result["cache_write"] or 0,
    )


@dataclass(frozen=True)
class Day:
    day: date
    input_tokens: int
    output_tokens: int
    replies: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def tokens_per_day(
    days: int = 30, *, user_id: int | None = None, today: date | None = None
) -> list[Day]:
    """One entry per UTC day, oldest first, ending today; days without replies are zeros."""
    today = today or timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    rows = replies().filter(created_at__gte=datetime.combine(first, time.min, tzinfo=UTC))
    if user_id is not None:
        rows = rows.filter(conversation__owner_id=user_id)
    grouped = (
        rows.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(
            tokens_in=Sum(_INPUT),
            tokens_out=Sum(_OUTPUT),
            replies=Count("id"),
            cache_read=Sum(_CACHE_READ),
            cache_write=Sum(_CACHE_WRITE),
        )
        # An explicit order replaces Meta.ordering, which must not join the GROUP BY.
        .order_by("day")
    )
    found = {row["day"]: row for row in grouped}
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = found.get(day, {})
        result.append(
            Day(
                day,
                row.get("tokens_in") or 0,
                row.get("tokens_out") or 0,
                row.get("replies") or 0,
                row.get("cache_read") or 0,
                row.get("cache_write") or 0,
            )
        )
    return result


@dataclass(frozen=True)
class UserTotal:
    user_id: int
    username: str
    input_tokens: int
    output_tokens: int

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


def top_users(since: datetime, limit: int = 10) -> list[UserTotal]:
    """The users who spent the most tokens since `since`, most first (one query)."""
    username = "conversation__owner__" + get_user_model().USERNAME_FIELD
    rows = (
        replies()
        .filter(created_at__gte=since)
        .values("conversation__owner_id", username)
        .annotate(tokens_in=Sum(_INPUT), tokens_out=Sum(_OUTPUT), tokens=Sum(_INPUT + _OUTPUT))
        .order_by("-tokens", username)[:limit]
    )
    return [
        UserTotal(row["conversation__owner_id"], row[username], row["tokens_in"], row["tokens_out"])
        for row in rows
    ]


# --- Per user (the admin's usage list) --------------------------------------------------
def with_usage(users: QuerySet[Any], now: datetime | None = None) -> QuerySet[Any]:
    """Annotate users with their usage and the quota that applies to them, in one query.

    Every sum runs over the single users -> conversations -> messages join, so no row is
    counted twice; the credentials come in as subqueries, not joins, for the same reason.
    """
    start = month_start(now)
    reply = Q(conversations__messages__role=Message.Role.ASSISTANT)
    this_month = reply & Q(conversations__messages__created_at__gte=start)
    own = ApiCredential.objects.filter(user=OuterRef("pk"))
    own_active = own.filter(is_active=True).order_by("-updated_at")
    group = ApiCredential.objects.filter(group__user=OuterRef("pk"))
    group_active = group.filter(is_active=True).order_by("group__name", "-updated_at")
    default = ApiCredential.objects.filter(user=None, group=None, is_active=True).order_by(
        "-updated_at"
    )

    def tokens(field: str, condition: Q) -> Coalesce:
        return Coalesce(Sum(f"conversations__messages__{field}", filter=condition), 0)

    return users.annotate(
        month_input_tokens=tokens("input_tokens", this_month),
        month_output_tokens=tokens("output_tokens", this_month),
        total_input_tokens=tokens("input_tokens", reply),
        total_output_tokens=tokens("output_tokens", reply),
        messages_sent=Count(
            "conversations__messages",
            filter=Q(conversations__messages__role=Message.Role.USER),
        ),
        last_used_at=Max("conversations__messages__created_at", filter=reply),
        has_own_key=Exists(own),
        has_active_key=Exists(own_active),
        own_quota=Subquery(own_active.values("monthly_token_quota")[:1]),
        has_group_key=Exists(group),
        key_group=Subquery(group_active.values("group__name")[:1]),
        default_quota=Subquery(default.values("monthly_token_quota")[:1]),
    )


def quota_of(user: Any) -> int | None:
    """The monthly quota of a user annotated by `with_usage`; None is no quota.

    Mirrors `credentials.resolve`: the user's own active credential, else the instance
    default (the environment credential has no quota). A user on a group's credential
    shares the group's quota, shown on the usage page (`groups_usage`): None here.
    """
    if user.has_active_key:
        return user.own_quota
    if user.has_group_key:
        return None
    return user.default_quota


def quota_left(user: Any) -> int | None:
    quota = quota_of(user)
    if quota is None:
        return None
    return max(0, quota - user.month_input_tokens - user.month_output_tokens)


# --- The chart ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    day: Day
    x: float
    width: float
    input_y: float
    input_height: float
    output_y: float
    output_height: float
    center: float
    label: str  # the date under the bar, or "" for most bars
    description: str  # the bar's numbers, for its tooltip and screen readers


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    grid_start: int
    grid_end: int
    tick_label_x: int
    date_label_y: int
    bars: list[Bar]
    ticks: list[Tick]


def compact(number: int) -> str:
    """1234567 -> 1.2M: axis labels must stay short."""
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if number >= size:
            value = number / size
            text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
            return text + suffix
    return str(number)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 10)."""
    step = 10
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def chart(days: list[Day], *, width: int = 720, height: int = 260) -> Chart:
    """Geometry of a stacked bar chart (input below, output above), drawn by a template."""
    left, right, top, bottom = 52, 8, 10, 24
    plot_width = width - left - right
    plot_height = height - top - bottom
    baseline = float(top + plot_height)
    scale = _nice_ceiling(max((d.total for d in days), default=0))
    slot = plot_width / max(1, len(days))
    bar_width = round(slot * 0.72, 2)
    bars = []
    for index, day in enumerate(days):
        input_height = round(plot_height * day.input_tokens / scale, 2)
        output_height = round(plot_height * day.output_tokens / scale, 2)
        # Label every seventh day, counted back from today so today is always labelled.
        labelled = (len(days) - 1 - index) % 7 == 0
        bars.append(
            Bar(
                day=day,
                x=round(left + index * slot + (slot - bar_width) / 2, 2),
                width=bar_width,
                input_y=round(baseline - input_height, 2),
                input_height=input_height,
                output_y=round(baseline - input_height - output_height, 2),
                output_height=output_height,
                center=round(left + index * slot + slot / 2, 2),
                # "November 25" in English, "11月25日" in Chinese.
                label=formats.date_format(day.day, "MONTH_DAY_FORMAT") if labelled else "",
                description=_(
                    "%(date)s: %(input)s input tokens, %(output)s output tokens, %(replies)s replies"
                )
                % {
                    "date": formats.date_format(day.day, "DATE_FORMAT"),
                    "input": formats.number_format(day.input_tokens, force_grouping=True),
                    "output": formats.number_format(day.output_tokens, force_grouping=True),
                    "replies": formats.number_format(day.replies, force_grouping=True),
                },
            )
        )
    ticks = [
        Tick(y=round(baseline - plot_height * part / 4, 2), label=compact(scale * part // 4))
        for part in range(5)
    ]
    return Chart(
        width=width,
        height=height,
        grid_start=left,
        grid_end=width - right,
        tick_label_x=left - 6,
        date_label_y=height - 6,
        bars=bars,
        ticks=ticks,
    )
