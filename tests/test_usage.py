"""Usage aggregated in the database: per day, per month, per user, and the admin usage page."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import services, usage
from conversations.models import ApiCredential, Message
from tests.conftest import make_user
from tests.support.turns import record_reply

pytestmark = pytest.mark.django_db

USAGE_URL = "/admin/usage/"


def test_month_boundaries_are_utc_and_roll_over_the_year():
    december = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert usage.month_start(december) == datetime(2026, 12, 1, tzinfo=UTC)
    assert usage.next_month_start(december) == datetime(2027, 1, 1, tzinfo=UTC)
    # 07:30 on 1 January in Shanghai is still December in UTC.
    shanghai = datetime(2027, 1, 1, 7, 30, tzinfo=UTC) - timedelta(hours=8)
    assert usage.month_start(shanghai) == datetime(2026, 12, 1, tzinfo=UTC)


def test_tokens_used_counts_this_month_of_this_user_only(alice, bob):
    now = timezone.now()
    record_reply(alice, input_tokens=100, output_tokens=50)
    record_reply(alice, input_tokens=7, output_tokens=None)  # failed before the usage came
    record_reply(
        alice, input_tokens=1000, output_tokens=1000, at=usage.month_start() - timedelta(seconds=1)
    )
    record_reply(bob, input_tokens=999, output_tokens=999)
    assert usage.tokens_used(alice.pk, usage.month_start(now)) == 157


def test_every_version_of_a_reply_counts_shown_or_not(alice):
    reply = record_reply(alice, input_tokens=10, output_tokens=20)
    # A second version beside it, shown: the first is still paid for.
    Message.objects.create(
        conversation=reply.conversation,
        parent=reply.parent,
        role=Message.Role.ASSISTANT,
        content="again",
        input_tokens=1,
        output_tokens=2,
    )
    assert usage.tokens_used(alice.pk, usage.month_start()) == 33


def test_tokens_per_day_fills_missing_days_and_filters_by_user(alice, bob):
    today = timezone.now().astimezone(UTC).date()
    noon = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    record_reply(alice, input_tokens=10, output_tokens=5, at=noon)
    record_reply(alice, input_tokens=1, output_tokens=1, at=noon - timedelta(days=2))
    record_reply(bob, input_tokens=100, output_tokens=100, at=noon)
    record_reply(bob, input_tokens=5000, output_tokens=5000, at=noon - timedelta(days=30))

    days = usage.tokens_per_day(30, today=today)
    assert len(days) == 30 and days[0].day == today - timedelta(days=29) and days[-1].day == today
    assert (days[-1].input_tokens, days[-1].output_tokens, days[-1].replies) == (110, 105, 2)
    assert days[-3].total == 2
    assert sum(d.total for d in days) == 217  # the reply 30 days ago is outside the window

    mine = usage.tokens_per_day(30, user_id=alice.pk, today=today)
    assert mine[-1].total == 15 and sum(d.total for d in mine) == 17


def test_top_users_are_ordered_by_tokens_this_month(alice, bob):
    carol = make_user("carol")
    record_reply(alice, input_tokens=10, output_tokens=10)
    record_reply(bob, input_tokens=300, output_tokens=0)
    record_reply(carol, input_tokens=1, output_tokens=1, at=usage.month_start() - timedelta(days=1))
    top = usage.top_users(usage.month_start())
    assert [(t.username, t.total) for t in top] == [("bob", 300), ("alice", 20)]


def test_with_usage_gives_month_and_overall_totals_and_the_quota_left(alice, bob):
    carol = make_user("carol")
    services.credentials.set_api_key(alice, key="sk-alice", base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=alice).update(monthly_token_quota=1000)
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=None).update(monthly_token_quota=50)
    services.credentials.set_api_key(carol, key="sk-carol", base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=carol).update(is_active=False)
    record_reply(alice, input_tokens=100, output_tokens=200)
    record_reply(alice, input_tokens=5, output_tokens=5, at=usage.month_start() - timedelta(days=3))
    record_reply(bob, input_tokens=40, output_tokens=40)

    rows = {u.username: u for u in usage.with_usage(type(alice).objects.all())}
    a, b, c = rows["alice"], rows["bob"], rows["carol"]
    assert (a.month_input_tokens, a.month_output_tokens) == (100, 200)
    assert (a.total_input_tokens, a.total_output_tokens) == (105, 205)
    assert a.messages_sent == 2 and a.last_used_at is not None
    assert usage.quota_left(a) == 700
    # Bob has no key of his own: the instance default's quota applies to him alone.
    assert usage.quota_of(b) == 50 and usage.quota_left(b) == 0
    assert c.has_own_key and not c.has_active_key
    assert (c.messages_sent, c.last_used_at, c.total_input_tokens) == (0, None, 0)


def test_compact_numbers_for_axis_labels():
    assert [usage.compact(n) for n in (0, 999, 1000, 1250, 12_000, 3_400_000)] == [
        "0",
        "999",
        "1k",
        "1.2k",
        "12k",
        "3.4M",
    ]


def test_the_chart_scales_bars_to_a_round_maximum():
    days = [usage.Day(date(2026, 11, 1) + timedelta(days=i), 10 * i, 5 * i, i) for i in range(30)]
    chart = usage.chart(days)
    assert len(chart.bars) == 30
    assert chart.ticks[-1].label == "500"  # the largest day is 435: the scale rounds to 500
    tallest = chart.bars[-1]
    assert tallest.output_y < tallest.input_y < chart.ticks[0].y
    assert chart.bars[0].input_height == chart.bars[0].output_height == 0
    assert chart.bars[-1].label and not chart.bars[-2].label


# --- The admin usage page --------------------------------------------------------------------
def chart_of(html: str) -> str:
    start = html.index('<svg class="usage-chart"')
    return html[start : html.index("</svg>", start)]


def test_the_usage_page_draws_30_days_and_the_top_users(admin_client, alice, bob):
    record_reply(alice, input_tokens=1200, output_tokens=34)
    record_reply(bob, input_tokens=5, output_tokens=6)
    response = admin_client.get(USAGE_URL)
    assert response.status_code == 200
    html = response.content.decode()
    svg = chart_of(html)
    assert svg.count('<g class="bar">') == 30
    # Today's bar holds both users' replies.
    assert "1,205 input tokens, 40 output tokens, 2 replies" in svg
    assert "<script" not in html.split('id="content"')[1]  # drawn on the server
    top = html[html.index('id="usage-top-heading"') :]
    assert top.index("alice") < top.index("bob")
    assert f'href="?user={alice.pk}"' in top


def test_the_usage_page_shows_cached_input_apart(admin_client, alice):
    record_reply(alice, input_tokens=10, output_tokens=5)
    assert 'id="usage-cached"' not in admin_client.get(USAGE_URL).content.decode()
    record_reply(
        alice,
        input_tokens=20,
        output_tokens=5,
        cache_read_input_tokens=3000,
        cache_creation_input_tokens=1200,
    )
    html = admin_client.get(USAGE_URL).content.decode()
    assert "3,000 tokens read from the gateway's cache, 1,200 written to it" in html
    month = usage.totals(usage.month_start())
    assert (month.input_tokens, month.cache_read_tokens, month.cache_write_tokens) == (
        30,
        3000,
        1200,
    )
    today = usage.tokens_per_day(1)[-1]
    assert (today.cache_read_tokens, today.cache_write_tokens) == (3000, 1200)


def test_the_usage_page_shows_each_groups_month_and_quota_left(admin_client, alice, bob):
    research = Group.objects.create(name="research")
    research.user_set.add(alice, bob)
    Group.objects.create(name="no-key").user_set.add(alice)
    services.credentials.set_api_key(
        None, group=research, key="sk-r", base_url="https://gw.example/v1"
    )
    ApiCredential.objects.filter(group=research).update(monthly_token_quota=10_000)
    record_reply(alice, input_tokens=1200, output_tokens=34)
    record_reply(bob, input_tokens=5, output_tokens=6)
    html = admin_client.get(USAGE_URL).content.decode()
    groups = html[html.index('id="usage-groups-heading"') :]
    row = groups[groups.index(">research<") :].split("</tr>")[0]
    # members on its key, tokens this month, quota left
    for value in ("2", "1,245", "8,755"):
        assert f">{value}<" in row, value
    assert "no-key" not in groups


def test_the_usage_page_of_one_user_shows_only_their_replies(admin_client, alice, bob):
    record_reply(alice, input_tokens=1200, output_tokens=34)
    record_reply(bob, input_tokens=5, output_tokens=6)
    html = admin_client.get(USAGE_URL, {"user": bob.pk}).content.decode()
    svg = chart_of(html)
    assert "5 input tokens, 6 output tokens" in svg
    assert "1,200" not in svg
    assert "Usage of bob" in html


@pytest.mark.parametrize("value", ["999999", "abc", ""])
def test_an_unknown_user_is_404(admin_client, value):
    assert admin_client.get(USAGE_URL, {"user": value}).status_code == 404


def test_the_usage_page_needs_a_staff_member_allowed_to_read_messages(client, alice):
    response = client.get(USAGE_URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    client.force_login(alice)  # not staff
    assert client.get(USAGE_URL).status_code == 302

    staff = make_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(USAGE_URL).status_code == 403
    assert USAGE_URL not in client.get("/admin/").content.decode()

    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    staff = type(staff).objects.get(pk=staff.pk)  # drop the permission cache
    client.force_login(staff)
    assert client.get(USAGE_URL).status_code == 200


def test_the_admin_index_links_to_the_usage_page(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert f'href="{USAGE_URL}"' in html


def _queries_for_usage_page(admin_client, params: dict[str, Any]) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(USAGE_URL, params).status_code == 200
    return len(queries)


def test_the_usage_page_runs_the_same_number_of_queries_for_any_number_of_messages(
    admin_client, alice, bob
):
    record_reply(alice, input_tokens=1, output_tokens=1)
    few = _queries_for_usage_page(admin_client, {})
    few_one_user = _queries_for_usage_page(admin_client, {"user": alice.pk})

    now = timezone.now()
    for index in range(40):
        user = make_user(f"user{index}")
        conversation = services.conversations.create_conversation(user)
        for day in range(3):
            record_reply(
                user,
                input_tokens=index,
                output_tokens=day,
                at=now - timedelta(days=day * 5),
                conversation=conversation,
            )
    assert _queries_for_usage_page(admin_client, {}) == few
    assert _queries_for_usage_page(admin_client, {"user": alice.pk}) == few_one_user
    assert few <= 8


def test_tokens_per_day_is_one_query(alice):
    for day in range(5):
        record_reply(
            alice, input_tokens=1, output_tokens=1, at=timezone.now() - timedelta(days=day)
        )
    with CaptureQueriesContext(connection) as queries:
        usage.tokens_per_day(30)
    assert len(queries) == 1
    assert re.search(r"GROUP BY", queries[0]["sql"], re.IGNORECASE)
