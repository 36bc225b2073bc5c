"""Render stored replies again after a renderer change (`rendering.VERSION` raised).

Pages never render a stored reply: they show the HTML saved with it. So after an upgrade
that changes the HTML (sanitiser rules, the highlighter), run this once; replies keep
showing their older HTML until it reaches them. Batched (one transaction each) and
resumable: stopped halfway, it goes on from the replies still of an older version.
Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations import rendering, services


class Command(BaseCommand):
    help = "Render again the stored HTML of replies made by an older renderer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="replies per transaction (500)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        size = max(1, options["batch_size"])
        total = services.rendered.stale().count()
        done, last = 0, 0
        started = time.monotonic()
        self._progress(done, total, started)
        while True:
            count, last_id = services.rendered.rerender_batch(last, size)
            if last_id is None:
                break
            done, last = done + count, last_id
            self._progress(done, max(total, done), started)
        if sys.stderr.isatty():
            self.stderr.write("")
        self.stdout.write(
            f"Rendered {done} repl{'y' if done == 1 else 'ies'} again "
            f"(renderer version {rendering.VERSION})."
        )

    def _progress(self, done: int, total: int, started: float) -> None:
        width = 30
        filled = width * done // total if total else width
        elapsed = time.monotonic() - started
        bar = "#" * filled + "-" * (width - filled)
        # One line redrawn on a terminal; one line per batch in a log.
        ending = "\r" if sys.stderr.isatty() else "\n"
        self.stderr.write(f"[{bar}] {done}/{total} replies, {elapsed:.1f} s", ending=ending)
