"""Single sign-on with OpenID Connect: mozilla-django-oidc's backend (code flow, PKCE,
nonce, signature checked against the provider's keys), with accounts and groups kept by
`services.accounts`. Configured in `chatsite/oidc.py`; the flow's URLs are under /oidc/.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from conversations import services

logger = logging.getLogger(__name__)


class SingleSignOnBackend(OIDCAuthenticationBackend):
    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # The verified ID token's claims, then the userinfo endpoint's: Entra ID, for one,
        # puts `groups` in the ID token only.
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        claims = self.get_userinfo(access_token, id_token, payload)
        try:
            return services.accounts.sign_in_from_claims(
                claims,
                username_claim=settings.OIDC_USERNAME_CLAIM,
                groups_claim=settings.OIDC_GROUPS_CLAIM,
            )
        except services.ServiceError as exc:
            logger.warning("Single sign-on refused: %s", exc.code)
            # Shown on the sign-in page the failed flow returns to.
            messages.error(self.request, exc.message)
            return None
