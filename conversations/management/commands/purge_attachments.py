"""Remove attachments uploaded but never sent (after CHAT_ATTACHMENT_UNSENT_HOURS, 24 by
default). Serving processes run it at start too; run it daily from cron or a timer."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from conversations import services


class Command(BaseCommand):
    help = "Remove attached files that were uploaded but never sent, after a day."

    def handle(self, *args: Any, **options: Any) -> None:
        removed = services.attachments.purge_unsent()
        self.stdout.write(f"Removed {removed} attachment(s) that were never sent.")
