"""Give a user (or the instance) a gateway credential. The key is read from standard input,
never from the command line, where other users and shell history could see it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations import services
from conversations.models import ApiCredential, cloudbase_base_url


class Command(BaseCommand):
    help = "Set a user's gateway API key (read from stdin). Example: echo KEY | manage.py set_api_key alice --env-id my-env"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", help="the user; omit with --instance-default")
        parser.add_argument(
            "--instance-default",
            action="store_true",
            help="set the credential for users without one",
        )
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--base-url", help="the gateway base URL (without /v1/messages)")
        where.add_argument("--env-id", help="a CloudBase environment id (builds the base URL)")
        parser.add_argument(
            "--scheme", choices=ApiCredential.Scheme.values, default=ApiCredential.Scheme.BEARER
        )
        parser.add_argument("--model", default="", help="default model, e.g. hy3-preview")
        parser.add_argument(
            "--allowed-models",
            metavar="M1,M2",
            help="the models people may choose, comma-separated; the default model is "
            "always allowed (added if left out). Omitted: keep the current list",
        )
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--vision",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="whether the models take images (new credentials: yes). Omitted: keep",
        )
        parser.add_argument(
            "--pdf",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="whether the models take PDFs; without, their text is sent (new "
            "credentials: yes). Omitted: keep",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["instance_default"] == bool(options["username"]):
            raise CommandError("Give a USERNAME or --instance-default (one of them).")
        user = None
        if options["username"]:
            try:
                user = get_user_model().objects.get_by_natural_key(options["username"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {options['username']!r}.") from None
        if sys.stdin.isatty():
            key = getpass.getpass("API key (input hidden): ")
        else:
            key = sys.stdin.readline()
        base_url = options["base_url"] or cloudbase_base_url(options["env_id"])
        try:
            credential = services.credentials.set_api_key(
                user,
                key=key,
                base_url=base_url,
                scheme=options["scheme"],
                model=options["model"],
                label=options["label"],
                allowed_models=(
                    None
                    if options["allowed_models"] is None
                    else options["allowed_models"].split(",")
                ),
                vision=options["vision"],
                pdf=options["pdf"],
            )
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        except Exception as exc:  # validation errors name fields, never the key
            raise CommandError(f"Invalid credential: {exc}") from None
        owner = user.get_username() if user else "the instance default"
        self.stdout.write(
            f"Saved key {credential.key_hint} for {owner} at {credential.base_url} (model {credential.default_model}; "
            f"allowed: {', '.join(credential.model_choices)}; images "
            f"{'yes' if credential.vision else 'no'}, PDFs {'yes' if credential.pdf else 'no'})."
        )
