import logging
import os

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = _("Conversations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The SDK falls back to ANTHROPIC_* variables and config profiles for credentials,
        # base URL and extra headers. Every request here carries its own user's credential,
        # so nothing from the process environment may ever join it.
        leaked = sorted(name for name in os.environ if name.startswith("ANTHROPIC_"))
        for name in leaked:
            del os.environ[name]
        if leaked:
            logger.warning(
                "Ignoring and unsetting %s: credentials come from the database.", ", ".join(leaked)
            )
