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
    check_rate(user, credential)


def check_quota(
    user: AbstractBaseUser, credential: GatewayCredential, now: datetime | None = None
) -> None:
    """Refuse a turn once this month's replies used up the credential's quota.

    The quota counts per owner of the credential: a user's own for that user, a group's for
    the members who use it, together (`usage.group_tokens_used`), and the instance
    default's for each user separately. A reply that starts under the quota may finish
    over it: it is never cut for the quota.
    """
    quota = credential.monthly_token_quota
    if quota is None:
        return
    now = now or timezone.now()
    if credential.group_id is not None:
        used = usage.group_tokens_used(credential.group_id, usage.month_start(now))
    else:
        used = usage.tokens_used(user.pk, usage.month_start(now))
    if used < quota:
        return
    resets = usage.next_month_start(now)
    if credential.group_id is not None:
        message = _(
            "Your group has used its monthly quota of %(quota)s tokens. It resets on %(date)s "
            "at 00:00 UTC; ask your administrator if your group needs more before then."
        )
    else:
        message = _(
            "You have used your monthly quota of %(quota)s tokens. It resets on %(date)s at "
            "00:00 UTC; ask your administrator if you need more before then."
        )
    raise LimitExceeded(
        "quota_exceeded",
        message
        % {
            "quota": formats.number_format(quota, force_grouping=True),
            "date": formats.date_format(resets.date(), "DATE_FORMAT"),
        },
    )


def check_rate(user: AbstractBaseUser, credential: GatewayCredential | None = None) -> None:
    """At most CHAT_RATE_LIMIT_PER_MINUTE turns per user per clock minute, and at most the
    credential's own `rate_limit_per_minute`, counted per owner of the credential: the
    user's own replaces the instance's figure for that user; a group's is shared by the
    members who use it, on top of each person's; the default's counts each person.

    The counts live in Django's cache, so with Redis every process shares them. A fixed
    window keeps it to one atomic increment per count and turn; the price is that a burst
    across a minute boundary can reach twice the limit.
    """
    own = credential.rate_limit_per_minute if credential is not None else None
    personal = settings.CHAT_RATE_LIMIT_PER_MINUTE
    counters: list[tuple[str, int]] = []
    if credential is not None and credential.group_id is not None:
        if own:  # 0, like the instance's 0, is no limit
            counters.append((f"group:{credential.group_id}", own))
    elif own is not None:
        personal = own
    if personal > 0:
        counters.append((f"{user.pk}", personal))
    now = clock()
    window = int(now // RATE_WINDOW_SECONDS)
    counted: list[str] = []
    for owner, limit in counters:
        key = f"chat:rate:{owner}:{window}"
        if _count(key) <= limit:
            counted.append(key)
            continue
        # A refused turn does not count, so trying again does not push the wait further.
        for taken in [*counted, key]:
            try:
                cache.decr(taken)
            except ValueError:
                pass
        seconds = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        if owner.startswith("group:"):
            raise LimitExceeded(
                "rate_limited_local",
                ngettext(
                    "Your group is sending messages too quickly (at most %(limit)d per minute "
                    "together). Try again in %(seconds)d second.",
                    "Your group is sending messages too quickly (at most %(limit)d per minute "
                    "together). Try again in %(seconds)d seconds.",
                    seconds,
                )
                % {"limit": limit, "seconds": seconds},
            )
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


def _count(key: str) -> int:
    """Add one to a window's count and return it."""
    cache.add(key, 0, timeout=RATE_WINDOW_SECONDS * 2)
    try:
        return cache.incr(key)
    except ValueError:
        # Evicted between add and incr: this turn is the first one counted again.
        cache.set(key, 1, timeout=RATE_WINDOW_SECONDS * 2)
        return 1


def clock() -> float:
    """Seconds since the epoch for the rate windows (tests replace it)."""
    return time.time()
