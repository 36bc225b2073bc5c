"""Give a user, a group or the instance a gateway credential. The key is read from standard
input, never from the command line, where other users and shell history could see it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations import services
from conversations.credentials import GatewayCredential
from conversations.models import ApiCredential, cloudbase_base_url


class Command(BaseCommand):
    help = "Set a user's gateway API key (read from stdin). Example: echo KEY | manage.py set_api_key alice --env-id my-env"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "username", nargs="?", help="the user; omit with --group or --instance-default"
        )
        parser.add_argument(
            "--group",
            metavar="NAME",
            help="instead of a user: the Django group whose members share this credential",
        )
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
        parser.add_argument(
            "--context-window",
            type=int,
            default=None,
            metavar="TOKENS",
            help="the models' context window in tokens; long conversations are fitted into "
            "it (new credentials: 200000). Omitted: keep",
        )
        parser.add_argument(
            "--prompt-caching",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="mark the system prompt and replayed history cacheable (cache_control) "
            "(new credentials: no). Omitted: keep",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="first make one cheap request with the key; if the gateway refuses it, say "
            "why, save nothing and exit non-zero",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        owners = [options["instance_default"], bool(options["username"]), bool(options["group"])]
        if sum(owners) != 1:
            raise CommandError("Give a USERNAME, --group NAME or --instance-default (one of them).")
        user = group = None
        if options["username"]:
            try:
                user = get_user_model().objects.get_by_natural_key(options["username"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {options['username']!r}.") from None
        if options["group"]:
            try:
                group = Group.objects.get(name=options["group"])
            except Group.DoesNotExist:
                # Groups are made in the admin (or by single sign-on): a typo makes none.
                raise CommandError(
                    f"No group named {options['group']!r}. Create it in the admin first."
                ) from None
        if sys.stdin.isatty():
            key = getpass.getpass("API key (input hidden): ")
        else:
            key = sys.stdin.readline()
        base_url = options["base_url"] or cloudbase_base_url(options["env_id"])
        if options["check"]:
            self.check_key(user, group, key, base_url, options)
        try:
            credential = services.credentials.set_api_key(
                user,
                group=group,
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
                context_window=options["context_window"],
                prompt_caching=options["prompt_caching"],
            )
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        except Exception as exc:  # validation errors name fields, never the key
            raise CommandError(f"Invalid credential: {exc}") from None
        if user is not None:
            owner = user.get_username()
        elif group is not None:
            owner = f"the group {group.name}"
        else:
            owner = "the instance default"
        self.stdout.write(
            f"Saved key {credential.key_hint} for {owner} at {credential.base_url} (model {credential.default_model}; "
            f"allowed: {', '.join(credential.model_choices)}; images "
            f"{'yes' if credential.vision else 'no'}, PDFs {'yes' if credential.pdf else 'no'}; "
            f"context window {credential.context_window} tokens, prompt caching "
            f"{'on' if credential.prompt_caching else 'off'})."
        )

    def check_key(
        self, user: Any, group: Group | None, key: str, base_url: str, options: dict[str, Any]
    ) -> None:
        """Check the key before it replaces a working one: a refused key is not saved."""
        if not key.strip():
            raise CommandError("The API key is empty.")
        current = (
            ApiCredential.objects.filter(user=user, group=group, is_active=True)
            .order_by("-updated_at")
            .first()
        )
        model = options["model"] or (current.default_model if current else "")
        credential = GatewayCredential(
            base_url=base_url,
            scheme=options["scheme"],
            key=key.strip(),
            default_model=model or settings.CHAT_DEFAULT_MODEL,
            identity="check",
        )
        result = services.credentials.check_key(credential)
        if not result.accepted:
            raise CommandError(f"{result.message} Nothing was saved.")
        self.stdout.write(result.message)
