"""Monthly token quotas and the per-user message rate: refused before anything is stored or sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.core.cache import cache

from conversations import credentials, limits, services, usage
from conversations.demo.script import Script
from conversations.models import ApiCredential, Message
from tests.conftest import frames_until, give_key, make_user, open_socket, receive
from tests.support.chat import new_conversation, stored
from tests.support.turns import record_reply

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

# 45 s into a clock minute: a refused turn may try again in 15 s.
MINUTE_START = 29_000_000 * 60.0
CLOCK = MINUTE_START + 45


def stream_requests(gateway) -> list:
    """Requests for replies (a conversation's first reply is followed by a title request)."""
    return [r for r in gateway.requests if r.body.get("stream")]


def set_quota(user, quota: int | None) -> None:
    ApiCredential.objects.filter(user=user).update(monthly_token_quota=quota)


async def open_chat(user, conversation=None):
    conversation = conversation or await new_conversation(user)
    sock = await open_socket(user, conversation.public_id)
    assert (await receive(sock))["type"] == "state"
    return conversation, sock


# --- Quota -------------------------------------------------------------------------------------
async def test_a_turn_over_the_monthly_quota_is_refused_and_says_when_it_resets(alice, gateway):
    await db(give_key)(alice, gateway, "sk-alice")
    await db(set_quota)(alice, 1000)
    await db(record_reply)(alice, input_tokens=600, output_tokens=400)
    conversation, sock = await open_chat(alice)

    await sock.send_json_to({"type": "send", "content": "one more?"})
    error = await receive(sock)
    await sock.disconnect()

    assert error["type"] == "error" and error["code"] == "quota_exceeded"
    reset = usage.next_month_start()
    assert "1,000 tokens" in error["message"]
    assert f"{reset.year}" in error["message"] and "00:00 UTC" in error["message"]
    assert await stored(conversation) == []
    assert gateway.requests == []


def test_the_quota_resets_on_the_first_of_next_month_utc(alice):
    services.credentials.set_api_key(alice, key="sk", base_url="https://gw.example/v1")
    set_quota(alice, 10)
    new_year_eve = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    reply = record_reply(alice, input_tokens=10, output_tokens=0)
    Message.objects.filter(pk=reply.pk).update(created_at=new_year_eve - timedelta(hours=1))
    credential = credentials.resolve(alice)
    with pytest.raises(limits.LimitExceeded) as refused:
        limits.check_quota(alice, credential, now=new_year_eve)
    assert "Jan. 1, 2027" in refused.value.message
    # An hour later it is January: the December replies no longer count.
    limits.check_quota(alice, credential, now=new_year_eve + timedelta(hours=1))


async def test_last_months_usage_does_not_count(alice, gateway):
    await db(give_key)(alice, gateway, "sk-alice")
    await db(set_quota)(alice, 1000)
    await db(record_reply)(
        alice, input_tokens=5000, output_tokens=5000, at=usage.month_start() - timedelta(days=1)
    )
    _, sock = await open_chat(alice)
    await sock.send_json_to({"type": "send", "content": "hello"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()


async def test_the_gateways_reported_usage_is_what_the_quota_counts(alice, gateway):
    await db(give_key)(alice, gateway, "sk-alice")
    await db(set_quota)(alice, 1_000_000)
    conversation, sock = await open_chat(alice)
    gateway.enqueue(Script(text="four words of answer"))
    await sock.send_json_to({"type": "send", "content": "hello"})
    done = (await frames_until(sock, "done"))[-1]
    reported = done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    assert reported > 0
    assert await db(usage.tokens_used)(alice.pk, usage.month_start()) == reported

    # Exactly used up: the next turn is refused.
    await db(set_quota)(alice, reported)
    await sock.send_json_to({"type": "send", "content": "again"})
    assert (await receive(sock))["code"] == "quota_exceeded"
    await sock.disconnect()
    assert len(await stored(conversation)) == 2
    assert len(stream_requests(gateway)) == 1


def test_the_instance_default_quota_counts_for_each_user_separately(alice, bob):
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    set_quota(None, 100)
    record_reply(alice, input_tokens=60, output_tokens=40)
    with pytest.raises(services.ServiceError) as refused:
        services.turns.start_turn(alice, services.conversations.create_conversation(alice), "hi")
    assert refused.value.code == "quota_exceeded"
    start = services.turns.start_turn(bob, services.conversations.create_conversation(bob), "hi")
    assert start.plan is not None


def test_regenerate_and_edit_are_refused_over_the_quota_and_change_nothing(alice):
    services.credentials.set_api_key(alice, key="sk", base_url="https://gw.example/v1")
    reply = record_reply(alice, input_tokens=50, output_tokens=50)
    conversation = reply.conversation
    question = conversation.messages.get(role=Message.Role.USER)
    set_quota(alice, 100)
    before = list(conversation.messages.values_list("pk", "parent", "shown_child"))

    for action in (
        lambda: services.turns.regenerate(alice, conversation),
        lambda: services.turns.edit_and_resend(alice, conversation, question.public_id, "edited"),
    ):
        with pytest.raises(services.ServiceError) as refused:
            action()
        assert refused.value.code == "quota_exceeded"
    assert list(conversation.messages.values_list("pk", "parent", "shown_child")) == before


def test_no_quota_means_no_limit(alice):
    services.credentials.set_api_key(alice, key="sk", base_url="https://gw.example/v1")
    record_reply(alice, input_tokens=10**9, output_tokens=10**9)
    assert services.turns.start_turn(
        alice, services.conversations.create_conversation(alice), "hi"
    ).plan


# --- Rate ----------------------------------------------------------------------------------------
async def test_turns_over_the_rate_limit_are_refused_without_storing_or_calling_upstream(
    alice, gateway, settings, monkeypatch
):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    now = [CLOCK]
    monkeypatch.setattr(limits, "clock", lambda: now[0])
    await db(give_key)(alice, gateway, "sk-alice")
    conversation, sock = await open_chat(alice)
    for content in ("one", "two"):
        await sock.send_json_to({"type": "send", "content": content})
        assert (await frames_until(sock, "done"))[-1]["status"] == "complete"

    await sock.send_json_to({"type": "send", "content": "three"})
    error = await receive(sock)
    assert error["type"] == "error" and error["code"] == "rate_limited_local"
    assert "2 per minute" in error["message"] and "15 seconds" in error["message"]
    assert [m.content for m in await stored(conversation) if m.role == "user"] == ["one", "two"]
    assert len(stream_requests(gateway)) == 2

    # Regenerate is a turn too.
    await sock.send_json_to({"type": "regenerate"})
    assert (await receive(sock))["code"] == "rate_limited_local"

    # The next minute, the person may write again.
    now[0] = MINUTE_START + 60
    await sock.send_json_to({"type": "send", "content": "three"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()
    assert len(stream_requests(gateway)) == 3


def test_the_rate_limit_is_per_user_and_refusals_do_not_count(alice, bob, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 3
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    for _ in range(3):
        limits.check_rate(alice)
    for _ in range(5):
        with pytest.raises(limits.LimitExceeded):
            limits.check_rate(alice)
    assert cache.get(f"chat:rate:{alice.pk}:{int(CLOCK // 60)}") == 3
    limits.check_rate(bob)


def test_a_resend_of_a_stored_message_is_not_counted(alice, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    services.credentials.set_api_key(alice, key="sk", base_url="https://gw.example/v1")
    conversation = services.conversations.create_conversation(alice)
    first = services.turns.start_turn(alice, conversation, "hi", client_id="c-1")
    again = services.turns.start_turn(alice, conversation, "hi", client_id="c-1")
    assert again.plan is None and again.user_message.pk == first.user_message.pk


def test_zero_turns_the_rate_limit_off(alice, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 0
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    for _ in range(100):
        limits.check_rate(alice)


def test_the_default_rate_limit_is_twenty_a_minute(alice, monkeypatch):
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    for _ in range(20):
        limits.check_rate(alice)
    with pytest.raises(limits.LimitExceeded):
        limits.check_rate(alice)


# --- Groups ------------------------------------------------------------------------------------
def keyed_group(name: str, *members, **limits_: int) -> Group:
    group = Group.objects.create(name=name)
    group.user_set.add(*members)
    services.credentials.set_api_key(
        None, group=group, key="sk-group", base_url="https://gw.example/v1"
    )
    ApiCredential.objects.filter(group=group).update(**limits_)
    return group


def start(user):
    return services.turns.start_turn(user, services.conversations.create_conversation(user), "hi")


def test_a_groups_quota_is_shared_by_the_members_who_use_its_key(alice, bob):
    carol = make_user("carol")
    keyed_group("research", alice, bob, carol, monthly_token_quota=100)
    # Carol has a key of her own: her replies are not the group's.
    services.credentials.set_api_key(carol, key="sk-carol", base_url="https://gw.example/v1")
    record_reply(carol, input_tokens=5000, output_tokens=5000)
    record_reply(alice, input_tokens=30, output_tokens=20)
    assert start(bob).plan is not None
    record_reply(bob, input_tokens=30, output_tokens=20)

    # Alice and Bob spent 100 together: neither may start another turn this month.
    for user in (alice, bob):
        with pytest.raises(services.ServiceError) as refused:
            start(user)
        assert refused.value.code == "quota_exceeded"
        assert "Your group has used its monthly quota of 100 tokens" in refused.value.message
    assert start(carol).plan is not None


def test_a_person_in_two_groups_counts_only_for_the_group_whose_key_they_use(alice, bob):
    keyed_group("1-research", alice, monthly_token_quota=100)
    keyed_group("2-everyone", alice, bob, monthly_token_quota=100)
    record_reply(alice, input_tokens=100, output_tokens=0)
    assert (
        usage.group_tokens_used(Group.objects.get(name="1-research").pk, usage.month_start()) == 100
    )
    assert (
        usage.group_tokens_used(Group.objects.get(name="2-everyone").pk, usage.month_start()) == 0
    )
    assert start(bob).plan is not None
    with pytest.raises(services.ServiceError):
        start(alice)


def test_a_groups_rate_limit_counts_its_members_together(alice, bob, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 20
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    keyed_group("research", alice, bob, rate_limit_per_minute=3)
    carol = make_user("carol")
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    for user in (alice, bob, alice):
        limits.check_rate(user, credentials.resolve(user))
    with pytest.raises(limits.LimitExceeded) as refused:
        limits.check_rate(bob, credentials.resolve(bob))
    assert "Your group is sending messages too quickly (at most 3 per minute together)" in (
        refused.value.message
    )
    assert "15 seconds" in refused.value.message
    # Refusals count for no one: Bob's own count is still one.
    assert cache.get(f"chat:rate:{bob.pk}:{int(CLOCK // 60)}") == 1
    # Someone outside the group is not held back by it.
    limits.check_rate(carol, credentials.resolve(carol))
    # The next minute, the group may send again.
    monkeypatch.setattr(limits, "clock", lambda: CLOCK + 60)
    limits.check_rate(bob, credentials.resolve(bob))


def test_each_person_of_a_group_keeps_the_instances_limit_too(alice, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    keyed_group("research", alice, rate_limit_per_minute=50)
    credential = credentials.resolve(alice)
    limits.check_rate(alice, credential)
    limits.check_rate(alice, credential)
    with pytest.raises(limits.LimitExceeded) as refused:
        limits.check_rate(alice, credential)
    assert "at most 2 per minute" in refused.value.message
    assert cache.get(f"chat:rate:group:{credential.group_id}:{int(CLOCK // 60)}") == 2


def test_a_users_own_rate_limit_replaces_the_instances(alice, bob, settings, monkeypatch):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    services.credentials.set_api_key(alice, key="sk-alice", base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=alice).update(rate_limit_per_minute=5)
    credential = credentials.resolve(alice)
    for _ in range(5):
        limits.check_rate(alice, credential)
    with pytest.raises(limits.LimitExceeded) as refused:
        limits.check_rate(alice, credential)
    assert "at most 5 per minute" in refused.value.message


async def test_a_turn_over_the_groups_rate_limit_is_refused_before_anything_is_stored(
    alice, bob, gateway, settings, monkeypatch
):
    monkeypatch.setattr(limits, "clock", lambda: CLOCK)
    group = await db(keyed_group)("research", alice, bob, rate_limit_per_minute=1)
    await ApiCredential.objects.filter(group=group).aupdate(base_url=gateway.base_url)
    _, sock = await open_chat(alice)
    await sock.send_json_to({"type": "send", "content": "one"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()
    conversation, sock = await open_chat(bob)
    await sock.send_json_to({"type": "send", "content": "two"})
    error = await receive(sock)
    await sock.disconnect()
    assert error["type"] == "error" and error["code"] == "rate_limited_local"
    assert await stored(conversation) == []
    assert len(stream_requests(gateway)) == 1
