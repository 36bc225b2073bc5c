"""Real processes for tests: Daphne as it runs in production, on the test database, and a
private Redis server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent
# Checkpoints and leases short enough for a test to outlive a dead process's replies.
FAST_LEASES = {"CHAT_CHECKPOINT_INTERVAL": "0.2", "CHAT_LEASE_SECONDS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database this test process uses, for a child process to share."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def wait_until_listening(
    port: int, process: subprocess.Popen[bytes], seconds: float, log: Callable[[], str]
) -> None:
    """Until something accepts connections on `port`; fails at once if `process` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited: {log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.args[0]} did not start listening in {seconds:.0f} s")


def process_env() -> dict[str, str]:
    """What a child process (Daphne, a management command) needs to share this test
    process's database and encryption keys."""
    return {
        "DEBUG": "1",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": test_database_url(),
        "CHAT_DEMO_GATEWAY_URL": "",
    }


class DaphneProcess:
    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, **process_env(), **env}
        self.log_path = ROOT / "var" / f"daphne-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "chatsite.asgi:application",
        ]

    def start(self) -> DaphneProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until_listening(self.port, self.process, 30, lambda: self.log_path.read_text())
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> DaphneProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class ServeProcess(DaphneProcess):
    """`manage.py serve`, as `make run` runs it: Daphne in a session of its own, which the
    command passes SIGINT and SIGTERM on to."""

    def __init__(self, **env: str) -> None:
        super().__init__(**env)
        # Known while the command runs: an orphan's parent is no longer the command.
        self.started_children: list[int] = []

    def command(self) -> list[str]:
        return [sys.executable, "manage.py", "serve", "--port", str(self.port)]

    def children(self) -> list[int]:
        """The ids of the command's child processes (Daphne)."""
        if self.process is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # pid (comm) state ppid ...: comm may hold spaces, so split after it.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def start(self) -> ServeProcess:
        super().start()
        self.started_children = self.children()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        # Daphne is not in the command's session: a SIGKILL to the command (or its death)
        # leaves it running, so it is ended by its own id.
        children = {*self.started_children, *self.children()}
        super().kill(sig)
        for pid in children:
            try:
                if b"daphne" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass  # it ended with the command


class RedisServer:
    """A private redis-server on a free port, for tests that stop and restart it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_listening(self.port, self.process, 10, lambda: "")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


async def connect(server: DaphneProcess, cookie: bytes, conversation_id: Any) -> Any:
    """A signed-in websocket to `server` (the `websockets` client, as a browser connects)."""
    return await websockets.connect(
        f"{server.ws_url}/ws/conversations/{conversation_id}/",
        additional_headers={"Cookie": cookie.decode(), "Origin": server.http_url},
        open_timeout=10,
    )


class S3Server:
    """moto's S3-compatible server in a process of its own: the real S3 API over HTTP, as
    django-storages and boto3 speak it to Tencent COS, MinIO or AWS."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_listening(self.port, self.process, 30, lambda: "")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
