"""Serve the app with Daphne; with no gateway key configured, start the offline demo gateway.

`make run` calls this. Production runs `daphne chatsite.asgi:application` itself (docs/deploy.md).

Daphne and the demo gateway run in sessions of their own, so a Ctrl-C in the terminal
reaches this command only, which passes each SIGINT or SIGTERM on to Daphne once: the
first drains it (conversations/lifecycle.py), a second stops it at once. The demo gateway
is stopped after Daphne, so the replies of the drain can still finish.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from conversations import credentials
from conversations.models import ApiCredential


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Command(BaseCommand):
    help = "Run Daphne on HOST:PORT; starts the offline demo gateway when no API key is configured."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        gateway: subprocess.Popen[bytes] | None = None
        env = os.environ.copy()
        configured = (
            credentials.from_environment() is not None
            or ApiCredential.objects.filter(is_active=True).exists()
        )
        if not configured and not settings.CHAT_DEMO_GATEWAY_URL:
            port = _free_port()
            gateway = subprocess.Popen(
                [sys.executable, "manage.py", "fakegateway", "--port", str(port)],
                cwd=settings.BASE_DIR,
                env=env,
                start_new_session=True,
            )
            env["CHAT_DEMO_GATEWAY_URL"] = f"http://127.0.0.1:{port}"
            self._wait_for(port)
            self.stdout.write(
                f"No API key configured: replies come from the offline demo gateway on port {port}.\n"
                "Set CLOUDBASE_API_KEY and CLOUDBASE_ENV_ID (see .env.example) to talk to CloudBase."
            )
        self.stdout.write(f"Serving on http://{options['host']}:{options['port']}/")
        command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            options["host"],
            "-p",
            str(options["port"]),
            "chatsite.asgi:application",
        ]
        daphne = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, start_new_session=True)

        def forward(signum: int, frame: Any) -> None:
            daphne.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            daphne.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if daphne.poll() is None:
                daphne.kill()
            if gateway is not None:
                gateway.terminate()
                gateway.wait(5)

    @staticmethod
    def _wait_for(port: int) -> None:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
