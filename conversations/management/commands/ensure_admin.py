"""On a fresh install, create the first local admin and print its password once."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create an admin account if there is no user at all (prints the password once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(options["username"], email="", password=password)
        line = "=" * 64
        self.stdout.write(
            f"{line}\nCreated the first admin account (shown only this once):\n"
            f"  username: {options['username']}\n  password: {password}\n"
            f"Sign in at http://127.0.0.1:8000/accounts/login/ and change it in /admin/.\n{line}"
        )
