"""The single sign-on configuration: from environment variables only, refused at start when
it cannot work (chatsite/oidc.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatsite import oidc
from tests.support.processes import ROOT

KEYCLOAK = "https://sso.example.org/realms/staff/protocol/openid-connect"
COMPLETE = {
    "OIDC_RP_CLIENT_ID": "chat",
    "OIDC_RP_CLIENT_SECRET": "s3cret-value-never-printed",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{KEYCLOAK}/auth",
    "OIDC_OP_TOKEN_ENDPOINT": f"{KEYCLOAK}/token",
    "OIDC_OP_USER_ENDPOINT": f"{KEYCLOAK}/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": f"{KEYCLOAK}/certs",
}


def test_without_any_oidc_variable_single_sign_on_is_off():
    assert oidc.settings_from({"PATH": "/usr/bin", "OIDC_GROUPS_CLAIM": ""}) == {}


def test_a_complete_configuration_gives_the_libraries_settings_and_ours():
    settings = oidc.settings_from(
        {**COMPLETE, "OIDC_PROVIDER_NAME": "Keycloak", "OIDC_GROUPS_CLAIM": "groups"}
    )
    assert settings["OIDC_ENABLED"] is True
    assert settings["OIDC_OP_TOKEN_ENDPOINT"] == f"{KEYCLOAK}/token"
    assert (settings["OIDC_RP_SIGN_ALGO"], settings["OIDC_RP_SCOPES"]) == (
        "RS256",
        "openid email profile",
    )
    assert (settings["OIDC_PROVIDER_NAME"], settings["OIDC_GROUPS_CLAIM"]) == ("Keycloak", "groups")
    assert settings["OIDC_USERNAME_CLAIM"] == "preferred_username"
    assert settings["LOGIN_REDIRECT_URL_FAILURE"] == "/accounts/login/"


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"OIDC_RP_CLIENT_SECRET": None}, "half configured: set OIDC_RP_CLIENT_SECRET too"),
        (
            {"OIDC_OP_TOKEN_ENDPOINT": None, "OIDC_OP_USER_ENDPOINT": None},
            "set OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT too",
        ),
        ({"OIDC_OP_TOKEN_ENDPOINT": "sso.example.org/token"}, "OIDC_OP_TOKEN_ENDPOINT must be an"),
        ({"OIDC_RP_SIGN_ALGO": "none"}, "OIDC_RP_SIGN_ALGO must be one of"),
        ({"OIDC_OP_JWKS_ENDPOINT": None}, "set OIDC_OP_JWKS_ENDPOINT"),
        ({"OIDC_RP_SCOPES": "email profile"}, "must include openid"),
    ],
)
def test_a_malformed_configuration_is_refused_with_a_sentence(change, sentence):
    environ = {**COMPLETE, **{k: v for k, v in change.items() if v is not None}}
    for name in [k for k, v in change.items() if v is None]:
        del environ[name]
    with pytest.raises(ImproperlyConfigured) as refused:
        oidc.settings_from(environ)
    assert sentence in str(refused.value)
    assert COMPLETE["OIDC_RP_CLIENT_SECRET"] not in str(refused.value)


def test_hs256_needs_no_jwks_endpoint():
    environ = {**COMPLETE, "OIDC_RP_SIGN_ALGO": "HS256"}
    del environ["OIDC_OP_JWKS_ENDPOINT"]
    assert oidc.settings_from(environ)["OIDC_RP_SIGN_ALGO"] == "HS256"


def test_the_app_refuses_to_start_with_a_half_configuration():
    env = {**os.environ, "DEBUG": "1", "OIDC_RP_CLIENT_ID": "chat"}
    completed = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "Single sign-on (OpenID Connect) is half configured" in completed.stderr
    assert "OIDC_RP_CLIENT_SECRET" in completed.stderr
