"""Run the bundled offline gateway (the Messages streaming protocol, no real model)."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations.demo.server import FakeGateway


class Command(BaseCommand):
    help = "Serve the offline demo gateway on 127.0.0.1:PORT (for the demo, tests and benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--token-delay", type=float, default=0.03, help="seconds between tokens"
        )
        parser.add_argument(
            "--stamp", action="store_true", help="tokens carry their send time (benchmarks)"
        )
        parser.add_argument(
            "--context-limit",
            type=int,
            default=None,
            metavar="TOKENS",
            help="refuse prompts over this many tokens with Anthropic's 'prompt is too long'",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        gateway = FakeGateway(
            options["host"],
            options["port"],
            token_delay=options["token_delay"],
            stamp=options["stamp"],
            context_limit=options["context_limit"],
        )

        async def main() -> None:
            await gateway.start()
            self.stdout.write(f"Fake gateway listening on {gateway.base_url}", ending="\n")
            self.stdout.flush()
            await asyncio.Event().wait()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
