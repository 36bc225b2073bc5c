"""The benchmark's own world: a fresh SQLite database under var/bench/, keys, users.

The orchestrator process sets the environment, then sets Django up on it; every child
(Daphne, the fake gateway) inherits the same environment and so the same database, secret
key and encryption keys.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from cryptography.fernet import Fernet

from bench.procs import VAR

DB_PATH = VAR / "bench.sqlite3"


def prepare_environment(database_url: str = "") -> dict[str, str]:
    """A fresh database (SQLite unless given another, created empty by the caller) and the
    variables every process of the run shares."""
    VAR.mkdir(parents=True, exist_ok=True)
    if not database_url:
        for suffix in ("", "-wal", "-shm", "-journal"):
            DB_PATH.with_name(DB_PATH.name + suffix).unlink(missing_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            # Production mode, as docs/deploy.md runs it: DEBUG=1 (what `make run` uses)
            # records every SQL statement, which is not what a deployment pays. Plain HTTP
            # on 127.0.0.1 and a session cookie sent as a header: no TLS redirect.
            "DEBUG": "0",
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "DATABASE_URL": database_url or f"sqlite:///{DB_PATH}",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            # Nothing from a developer's .env may answer for the bench user.
            "CHAT_DEMO_GATEWAY_URL": "",
            "CLOUDBASE_API_KEY": "",
            "LOG_LEVEL": "WARNING",
            # One account drives every stream: the per-user turn limit must not refuse them,
            # but its check still runs (a limit no run reaches, rather than 0 = off).
            "CHAT_RATE_LIMIT_PER_MINUTE": "1000000",
        }
    )
    return dict(os.environ)


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    # DEBUG=0 serves static files from the collected, hashed copies: pages need the manifest.
    call_command("collectstatic", verbosity=0, interactive=False)


def make_user(username: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password=secrets.token_urlsafe(16))


def give_key(user: Any, gateway_url: str) -> None:
    from conversations import services

    services.credentials.set_api_key(
        user, key="bench-key", base_url=gateway_url, model="bench-model"
    )


def session_cookie(user: Any) -> str:
    """A real session row, as a login would create, and the Cookie header that carries it."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def new_conversations(user: Any, count: int) -> list[str]:
    """Fresh conversations, so every stream of every run asks the same, one-message request.

    Untitled, as `POST /c/` creates them: a first reply is then also named by the model,
    which is part of what a first turn costs."""
    from conversations.models import Conversation

    created = Conversation.objects.bulk_create(
        [Conversation(owner=user) for _ in range(count)], batch_size=500
    )
    return [str(c.public_id) for c in created]
