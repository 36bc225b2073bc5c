"""Single sign-on with OpenID Connect: its settings, read from the environment only.

Off unless `OIDC_RP_CLIENT_ID` is set. Once any `OIDC_*` variable is set, the whole
configuration must hold together, or the process refuses to start with a sentence naming
what is wrong (never a secret's value). The names of the client and endpoint variables
are those of mozilla-django-oidc's settings, so its documentation applies to them;
docs/configuration.md has examples for Keycloak, Authing and Microsoft Entra ID.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import URLValidator

REQUIRED = [
    "OIDC_RP_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET",
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
]
ENDPOINTS = [
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
]
OPTIONAL = [
    "OIDC_OP_JWKS_ENDPOINT",
    "OIDC_RP_SIGN_ALGO",
    "OIDC_RP_SCOPES",
    "OIDC_PROVIDER_NAME",
    "OIDC_USERNAME_CLAIM",
    "OIDC_GROUPS_CLAIM",
]
# Asymmetric algorithms need the provider's public keys (the JWKS endpoint); HS256 signs
# with the client secret.
SIGN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256"]


def settings_from(environ: Mapping[str, str]) -> dict[str, Any]:
    """The Django settings of single sign-on, from environment variables: {} when it is
    off. Raises ImproperlyConfigured for a configuration that cannot work."""
    given = {
        name: environ.get(name, "").strip() for name in REQUIRED + OPTIONAL if environ.get(name)
    }
    given = {name: value for name, value in given.items() if value}
    if not given:
        return {}
    missing = [name for name in REQUIRED if name not in given]
    if missing:
        raise ImproperlyConfigured(
            "Single sign-on (OpenID Connect) is half configured: set "
            + ", ".join(missing)
            + " too, or unset every OIDC_* variable to turn it off (docs/configuration.md)."
        )
    validate = URLValidator(schemes=["https", "http"])
    for name in ENDPOINTS:
        if name in given:
            try:
                validate(given[name])
            except ValidationError:
                raise ImproperlyConfigured(
                    f"{name} must be an http(s) URL of the identity provider; it is "
                    f"{given[name]!r}."
                ) from None
    algorithm = given.get("OIDC_RP_SIGN_ALGO", "RS256")
    if algorithm not in SIGN_ALGORITHMS:
        raise ImproperlyConfigured(
            f"OIDC_RP_SIGN_ALGO must be one of {', '.join(SIGN_ALGORITHMS)}; it is {algorithm!r}."
        )
    if algorithm != "HS256" and "OIDC_OP_JWKS_ENDPOINT" not in given:
        raise ImproperlyConfigured(
            f"OIDC_RP_SIGN_ALGO {algorithm} needs the provider's keys: set "
            "OIDC_OP_JWKS_ENDPOINT (the jwks_uri of its /.well-known/openid-configuration)."
        )
    scopes = given.get("OIDC_RP_SCOPES", "openid email profile")
    if "openid" not in scopes.split():
        raise ImproperlyConfigured(
            f"OIDC_RP_SCOPES must include openid (it is {scopes!r}): without it the "
            "provider sends no ID token."
        )
    username_claim = given.get("OIDC_USERNAME_CLAIM", "preferred_username")
    return {
        "OIDC_ENABLED": True,
        "OIDC_RP_CLIENT_ID": given["OIDC_RP_CLIENT_ID"],
        "OIDC_RP_CLIENT_SECRET": given["OIDC_RP_CLIENT_SECRET"],
        "OIDC_OP_AUTHORIZATION_ENDPOINT": given["OIDC_OP_AUTHORIZATION_ENDPOINT"],
        "OIDC_OP_TOKEN_ENDPOINT": given["OIDC_OP_TOKEN_ENDPOINT"],
        "OIDC_OP_USER_ENDPOINT": given["OIDC_OP_USER_ENDPOINT"],
        "OIDC_OP_JWKS_ENDPOINT": given.get("OIDC_OP_JWKS_ENDPOINT"),
        "OIDC_RP_SIGN_ALGO": algorithm,
        "OIDC_RP_SCOPES": scopes,
        "OIDC_PROVIDER_NAME": given.get("OIDC_PROVIDER_NAME", "single sign-on"),
        "OIDC_USERNAME_CLAIM": username_claim,
        "OIDC_GROUPS_CLAIM": given.get("OIDC_GROUPS_CLAIM", ""),
        # A person signs in with the provider's PKCE-protected code flow and a nonce.
        "OIDC_USE_PKCE": True,
        "OIDC_USE_NONCE": True,
        # Back to the sign-in page, which says why (conversations.sso puts the sentence).
        "LOGIN_REDIRECT_URL_FAILURE": "/accounts/login/",
    }
