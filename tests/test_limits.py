"""Monthly token quotas and the per-user message rate: refused before anything is stored or sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from conversations import credentials, limits, services, usage
from conversations.demo.script import Script
from conversations.models import ApiCredential, Message
from tests.conftest import frames_until, give_key, open_socket, receive
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
