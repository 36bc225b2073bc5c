"""A person's gateway credential: what a turn needs of it (`GatewayCredential`: address,
scheme, key, models, quota, last use), and which one answers a person.

Order: the user's active credential, the active instance default in the database, the
`CLOUDBASE_*` environment variables, and last the bundled offline gateway when
`manage.py serve` started one. None of these: the person has no API key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from conversations import rows
from conversations.models import ApiCredential, cloudbase_base_url


@dataclass(frozen=True)
class GatewayCredential:
    """What is needed to call a gateway. `key` is plaintext: keep it out of reprs and logs."""

    base_url: str
    scheme: str  # "bearer" (CloudBase) or "x-api-key" (Anthropic)
    key: str = field(repr=False)
    default_model: str
    # Stable identity of the credential (a database id, "env" or "demo"): a new version of
    # the same identity replaces the cached client of the old one.
    identity: str = "anonymous"
    credential_id: int | None = None
    is_demo: bool = False
    allowed_models: tuple[str, ...] = ()
    monthly_token_quota: int | None = None
    last_used_at: datetime | None = None
    # What its models take besides text (ApiCredential.vision, .pdf).
    vision: bool = True
    pdf: bool = True

    @property
    def fingerprint(self) -> str:
        material = "\0".join((self.base_url, self.scheme, self.key))
        return hashlib.sha256(material.encode()).hexdigest()


def _from_row(row: ApiCredential) -> GatewayCredential:
    return GatewayCredential(
        base_url=row.base_url,
        scheme=row.scheme,
        key=row.get_key(),
        default_model=row.default_model,
        identity=f"db:{row.pk}",
        credential_id=row.pk,
        allowed_models=tuple(row.model_choices),
        monthly_token_quota=row.monthly_token_quota,
        last_used_at=row.last_used_at,
        vision=row.vision,
        pdf=row.pdf,
    )


def from_environment() -> GatewayCredential | None:
    if settings.CLOUDBASE_API_KEY and (settings.CLOUDBASE_BASE_URL or settings.CLOUDBASE_ENV_ID):
        base_url = settings.CLOUDBASE_BASE_URL or cloudbase_base_url(settings.CLOUDBASE_ENV_ID)
        return GatewayCredential(
            base_url=base_url,
            scheme="bearer",
            key=settings.CLOUDBASE_API_KEY,
            default_model=settings.CHAT_DEFAULT_MODEL,
            identity="env",
            allowed_models=(settings.CHAT_DEFAULT_MODEL,),
        )
    if settings.CHAT_DEMO_GATEWAY_URL:
        return GatewayCredential(
            base_url=settings.CHAT_DEMO_GATEWAY_URL,
            scheme="bearer",
            key="offline-demo",
            default_model=settings.CHAT_DEMO_MODEL,
            identity="demo",
            is_demo=True,
            allowed_models=(settings.CHAT_DEMO_MODEL,),
        )
    return None


def resolve(user: AbstractBaseUser | AnonymousUser) -> GatewayCredential | None:
    """The credential for this user's next turn (reads the database: call from sync code)."""
    row = _deciding_row(user.pk if user.is_authenticated else None)
    if row is not None and row.user_id is not None and not row.is_active:
        # A user whose only credentials were deactivated has no key: the default is for
        # people who were never given one, not a way around a revoked key.
        return None
    if row is not None:
        return _from_row(row)
    return from_environment()


def _deciding_row(user_id: int | None) -> ApiCredential | None:
    """The row that decides `resolve`, in one statement: the user's own credentials first
    (the newest active one before any inactive one), then the newest active default.
    Hand-written: every turn starts here (see `conversations.rows`)."""
    db = rows.database()
    user, active, updated = (
        rows.column(db, ApiCredential, name) for name in ("user", "is_active", "updated_at")
    )
    own = f" OR {user} = %s" if user_id is not None else ""
    return rows.one(
        db,
        ApiCredential,
        f"WHERE ({user} IS NULL AND {active}){own} "
        f"ORDER BY {user} IS NULL, {active} DESC, {updated} DESC LIMIT 1",
        [] if user_id is None else [user_id],
    )
