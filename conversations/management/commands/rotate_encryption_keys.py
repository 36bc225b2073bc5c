"""Re-encrypt every stored API key with the first key of FIELD_ENCRYPTION_KEYS.

Rotation of the encryption key: put the new key first (`FIELD_ENCRYPTION_KEYS=new,old`),
restart, run this, then drop the old key. See docs/credentials.md.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations import services


class Command(BaseCommand):
    help = "Re-encrypt every stored API key with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        result = services.credentials.rotate_encryption_keys()
        self.stdout.write(
            ngettext(
                "Re-encrypted %(count)d API key with the first key of FIELD_ENCRYPTION_KEYS.",
                "Re-encrypted %(count)d API keys with the first key of FIELD_ENCRYPTION_KEYS.",
                result.rotated,
            )
            % {"count": result.rotated}
        )
        if result.changed_meanwhile:
            self.stdout.write(
                _("%(count)d changed while rotating; they were saved with the new key already.")
                % {"count": result.changed_meanwhile}
            )
        if result.undecryptable:
            # Exit non-zero: the old key must not be dropped while these depend on it.
            raise CommandError(
                _(
                    "%(count)d API key(s) could not be decrypted with any key of "
                    "FIELD_ENCRYPTION_KEYS (credential ids: %(ids)s). Add the key they were "
                    "saved with and run again, or enter those API keys again in the admin."
                )
                % {
                    "count": len(result.undecryptable),
                    "ids": ", ".join(str(pk) for pk in result.undecryptable),
                }
            )
