"""Limits checked before a turn is stored: the monthly token quota and the message rate.

`services` calls `check_turn` before it writes anything, so a refused turn stores nothing,
never reaches the gateway, and is answered by an error frame only.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations import usage
from conversations.credentials import GatewayCredential

RATE_WINDOW_SECONDS = 60


class LimitExceeded(Exception):
    """A turn refused by a limit: `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_turn(user: AbstractBaseUser, credential: GatewayCredential) -> None:
    """Raise `LimitExceeded` if this user may not start a turn now."""
    # The quota first: it has no side effect, while a passed rate check counts the turn.
    check_quota(user, credential)
    check_rate(user)


def check_quota(
    user: AbstractBaseUser, credential: GatewayCredential, now: datetime | None = None
) -> None:
    """Refuse a turn once this month's replies of the user used up the credential's quota.

    The quota counts per user, also on the instance default credential. A reply that
    starts under the quota may finish over it: it is never cut for the quota.
    """
    quota = credential.monthly_token_quota
    if quota is None:
        return
    now = now or timezone.now()
    used = usage.tokens_used(user.pk, usage.month_start(now))
    if used < quota:
        return
    resets = usage.next_month_start(now)
    raise LimitExceeded(
        "quota_exceeded",
        _(
            "You have used your monthly quota of %(quota)s tokens. It resets on %(date)s at "
            "00:00 UTC; ask your administrator if you need more before then."
        )
        % {
            "quota": formats.number_format(quota, force_grouping=True),
            "date": formats.date_format(resets.date(), "DATE_FORMAT"),
        },
    )


def check_rate(user: AbstractBaseUser) -> None:
    """At most CHAT_RATE_LIMIT_PER_MINUTE turns per user per clock minute.

    The count lives in Django's cache, so with Redis every process shares it. A fixed
    window keeps it to one atomic increment per turn; the price is that a burst across
    a minute boundary can reach twice the limit.
    """
    limit = settings.CHAT_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return
    now = clock()
    window = int(now // RATE_WINDOW_SECONDS)
    key = f"chat:rate:{user.pk}:{window}"
    cache.add(key, 0, timeout=RATE_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:
        # Evicted between add and incr: this turn is the first one counted again.
        cache.set(key, 1, timeout=RATE_WINDOW_SECONDS * 2)
        count = 1
    if count <= limit:
        return
    # A refused turn does not count, so trying again does not push the wait further.
    try:
        cache.decr(key)
    except ValueError:
        pass
    seconds = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
    raise LimitExceeded(
        "rate_limited_local",
        ngettext(
            "You are sending messages too quickly (at most %(limit)d per minute). "
            "Try again in %(seconds)d second.",
            "You are sending messages too quickly (at most %(limit)d per minute). "
            "Try again in %(seconds)d seconds.",
            seconds,
        )
        % {"limit": limit, "seconds": seconds},
    )


def clock() -> float:
    """Seconds since the epoch for the rate windows (tests replace it)."""
    return time.time()
