"""What the test provider says about a person. A user whose username starts with
"nameless" gets no `preferred_username` claim (a token without a required claim)."""

from __future__ import annotations

from typing import Any

from oidc_provider.lib.claims import ScopeClaims


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    if not user.username.startswith("nameless"):
        claims["preferred_username"] = user.username
    claims["email"] = user.email
    claims["given_name"] = user.first_name
    claims["family_name"] = user.last_name
    return claims


class GroupsClaims(ScopeClaims):
    """The `groups` scope: a `groups` claim with the names of the person's groups."""

    info_groups = ("Groups", "The groups you belong to.")

    def scope_groups(self) -> dict[str, Any]:
        return {"groups": sorted(group.name for group in self.user.groups.all())}
