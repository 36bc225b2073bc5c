"""Shared fixtures: named users, the fake gateway over real HTTP, signed-in websockets."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client

from conversations import generation, services, upstream
from conversations.demo.server import FakeGateway

# The shared helpers of tests/support/ assert too: rewrite them as pytest does test modules.
pytest.register_assert_rewrite("tests.support")

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture(scope="session", autouse=True)
def _compiled_translations() -> None:
    """Compile the .po files `make locale` would (only stale ones), so that a bare `pytest`
    after editing a translation tests the edit. The .mo files are not in git."""
    for po in django_settings.LOCALE_PATHS[0].glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        if shutil.which("msgfmt") is None:
            pytest.fail(f"GNU gettext is missing (apt-get install gettext): cannot compile {po}")
        subprocess.run(["msgfmt", "--check", "-o", str(mo), str(po)], check=True)


@pytest.fixture(scope="session")
def gateway_server() -> Iterator[FakeGateway]:
    server = FakeGateway(token_delay=0.0).start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def gateway(gateway_server: FakeGateway) -> Iterator[FakeGateway]:
    gateway_server.reset()
    gateway_server.token_delay = 0.0
    gateway_server.context_limit = None
    yield gateway_server
    gateway_server.context_limit = None
    gateway_server.reset()


# Attachments (issue 18) are tested on the file system and on a real S3 API server: moto in a
# process of its own, spoken to over HTTP as django-storages speaks to COS, MinIO or AWS.
@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    from tests.support.processes import S3Server  # after the assert rewrite is registered

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(params=["files", "s3"])
def store(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> str:
    """The attachments storage of this test: a folder of its own, or a bucket of its own."""
    stores = dict(settings.STORAGES)
    if request.param == "files":
        stores["attachments"] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path, "base_url": None},
        }
    else:
        import boto3

        server = request.getfixturevalue("s3_server")
        bucket = f"chat-{secrets.token_hex(6)}"
        credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        boto3.client(
            "s3", endpoint_url=server.url, region_name="us-east-1", **credentials
        ).create_bucket(Bucket=bucket)
        stores["attachments"] = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": server.url,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "default_acl": None,
                "file_overwrite": False,
            },
        }
    settings.STORAGES = stores
    return request.param


@pytest.fixture(autouse=True)
def _chat_settings(settings: Any) -> None:
    settings.CHAT_UPSTREAM_RETRY_BACKOFF = 0.01
    settings.CHAT_DEMO_GATEWAY_URL = ""
    settings.CLOUDBASE_API_KEY = ""
    upstream.forget_clients()
    # Rate-limit counters live in the cache; a test must not inherit another's.
    cache.clear()


@pytest.fixture(autouse=True)
async def _fresh_async_state() -> AsyncIterator[None]:
    # Every test has its own event loop, so it gets its own channel layer instance too.
    # channels-redis keeps per-instance asyncio state (receive locks, backup-queue cleaners
    # of its one process-local channel); a cleaner still pending when a test's loop closed
    # would leave a lock held that the next test's consumers wait on, then one bound to a
    # dead loop. An instance per test shares nothing with the last one.
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
    layer = get_channel_layer()
    await layer.flush()
    yield
    await generation.registry.shutdown()
    generation.registry.draining = False
    await upstream.close_clients()
    await layer.flush()
    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture
def refuse_writes(db: None) -> Iterator[Any]:
    """`refuse(table, column, value)`: from then on the database itself refuses, with an
    error of its own, every UPDATE of `table` that sets `column` to `value` (a trigger, on
    SQLite and PostgreSQL alike). For the paths that must survive a write the database
    refuses, without mocking the database."""
    installed: list[tuple[str, str]] = []

    def refuse(table: str, column: str, value: str) -> None:
        name = f"test_refuse_{len(installed)}"
        literal = "'" + value.replace("'", "''") + "'"
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW "
                    f"WHEN (NEW.{column} = {literal}) "
                    "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
                )
            else:
                cursor.execute(
                    "CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$"
                )
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW "
                    f"WHEN (NEW.{column} = {literal}) EXECUTE FUNCTION test_refuse()"
                )
        installed.append((name, table))

    yield refuse
    with connection.cursor() as cursor:
        for name, table in installed:
            on = "" if connection.vendor == "sqlite" else f" ON {table}"
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}{on}")
        if installed and connection.vendor != "sqlite":
            cursor.execute("DROP FUNCTION IF EXISTS test_refuse()")


def make_user(username: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(username, password="pw-" + username, **extra)


@pytest.fixture
def alice(db: None) -> Any:
    return make_user("alice")


@pytest.fixture
def bob(db: None) -> Any:
    return make_user("bob")


def give_key(user: Any, gateway: FakeGateway, key: str, **kwargs: Any) -> Any:
    return services.credentials.set_api_key(user, key=key, base_url=gateway.base_url, **kwargs)


def session_cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def signed_in(user: Any, **kwargs: Any) -> Client:
    """A test client signed in as `user` (`kwargs` go to the Client: headers, HTTPS)."""
    client = Client(**kwargs)
    client.force_login(user)
    return client


async def open_socket(user: Any | None, conversation_public_id: Any) -> WebsocketCommunicator:
    from chatsite.asgi import application

    headers = [ORIGIN]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation_public_id}/", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


# Frames that arrive on their own schedule (a generated title after the first reply);
# tests about turns skip them, tests about titles ask for them.
SIDE_FRAMES = ("conversation",)


async def receive(
    communicator: WebsocketCommunicator, timeout: float = 10, skip: tuple[str, ...] = SIDE_FRAMES
) -> dict[str, Any]:
    while True:
        frame = json.loads(await communicator.receive_from(timeout=timeout))
        if frame["type"] not in skip:
            return frame


async def frames_until(
    communicator: WebsocketCommunicator, frame_type: str, timeout: float = 15
) -> list[dict[str, Any]]:
    """Every frame up to and including the first of `frame_type`."""
    received: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no {frame_type!r} frame; got {[f['type'] for f in received]}"
        frame = await receive(communicator, timeout=remaining)
        received.append(frame)
        if frame["type"] == frame_type:
            return received


def joined_deltas(received: list[dict[str, Any]], kind: str = "delta") -> str:
    return "".join(f["text"] for f in received if f["type"] == kind)
