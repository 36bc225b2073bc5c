"""The app, unchanged, plus a count of every SQL write it executes (benchmark only).

Daphne serves `bench.counting_asgi:application`. Every database connection the app opens
gets a Django execute wrapper that counts INSERT, UPDATE and DELETE statements per table;
`GET /__bench__/writes` answers the running totals as JSON. Counting happens below the ORM,
at the statement the database receives, so nothing the app writes can be missed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.db.backends.signals import connection_created

from chatsite.asgi import application as app

# `INSERT OR IGNORE INTO` is how SQLite spells bulk_create(ignore_conflicts=True).
WRITE = re.compile(
    r'^\s*(INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([\w.]+)"?', re.IGNORECASE
)
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def count_writes(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    match = WRITE.match(sql)
    if match is not None:
        verb = match.group(1).split()[0].upper()
        with _lock:
            _counts[f"{verb} {match.group(2)}"] += 1
    return execute(sql, params, many, context)


def install(sender: Any, connection: Any, **kwargs: Any) -> None:
    # The same wrapper object serves a thread for its whole life and reconnects often
    # (CONN_MAX_AGE=0): add the counter once.
    if count_writes not in connection.execute_wrappers:
        connection.execute_wrappers.append(count_writes)


connection_created.connect(install)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/writes":
        with _lock:
            body = json.dumps(dict(_counts)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await app(scope, receive, send)
