"""A/B of the statement that picks a turn's credential (`credentials._deciding_row`):
before groups (own, then default) and with them (own, groups by name, default), on SQLite,
300 users in 10 groups (two each), 100 of them with a key of their own.

    DEBUG=1 .venv/bin/python bench/credential_resolution.py

Prints the median microseconds per statement (7 rounds of 2000, twice, alternating).
Figures: docs/performance.md, "Groups in the credential statement".
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATABASE = ROOT / "var" / "bench-resolve.sqlite3"


def _setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DATABASE_URL"] = f"sqlite:///{DATABASE}"
    import django

    django.setup()
    from django.core.management import call_command

    for suffix in ("", "-wal", "-shm"):
        Path(f"{DATABASE}{suffix}").unlink(missing_ok=True)
    DATABASE.parent.mkdir(exist_ok=True)
    call_command("migrate", verbosity=0)


def _before_groups(user_id: int) -> Any:
    """The statement as it was before groups (own, then default)."""
    from conversations import rows
    from conversations.models import ApiCredential

    db = rows.database()
    user, active, updated = (
        rows.column(db, ApiCredential, n) for n in ("user", "is_active", "updated_at")
    )
    return rows.one(
        db,
        ApiCredential,
        f"WHERE ({user} IS NULL AND {active}) OR {user} = %s "
        f"ORDER BY {user} IS NULL, {active} DESC, {updated} DESC LIMIT 1",
        [user_id],
    )


def _per_statement(
    fn: Callable[[int], Any], ids: list[int], rounds: int = 7, n: int = 2000
) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for k in range(n):
            fn(ids[k % len(ids)])
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


def main() -> None:
    _setup()
    from django.contrib.auth.models import Group, User

    from conversations import credentials, services

    users = [User.objects.create_user(f"u{i}") for i in range(300)]
    groups = [Group.objects.create(name=f"g{i}") for i in range(10)]
    for i, user in enumerate(users):
        user.groups.add(groups[i % 10], groups[(i + 3) % 10])
    for group in groups:
        services.credentials.set_api_key(
            None, group=group, key="sk-g", base_url="https://gw.example/v1"
        )
    services.credentials.set_api_key(None, key="sk-d", base_url="https://gw.example/v1")
    for user in users[:100]:
        services.credentials.set_api_key(user, key="sk-u", base_url="https://gw.example/v1")
    cases = [
        ("a person with a key of their own", [u.pk for u in users[:100]]),
        ("a person without (before: the default; now: a group's)", [u.pk for u in users[100:]]),
    ]
    for label, ids in cases:
        before, after = [], []
        for _ in range(2):
            before.append(_per_statement(_before_groups, ids))
            after.append(_per_statement(credentials._deciding_row, ids))
        print(
            f"{label}: before {statistics.median(before):.0f} µs, "
            f"with groups {statistics.median(after):.0f} µs per statement"
        )


if __name__ == "__main__":
    main()
