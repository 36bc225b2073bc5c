"""A person's gateway credential: what a turn needs of it (`GatewayCredential`: address,
scheme, key, models, quota, rate limit, last use), and which one answers a person.

Order: the user's own credential, else the credential of one of their groups, else the
active instance default in the database, the `CLOUDBASE_*` environment variables, and last
the bundled offline gateway when `manage.py serve` started one. None of these: the person
has no API key.

Several groups: among the person's groups that have an active credential, the one whose
name sorts first in the database's order (`ORDER BY name`); an administrator orders groups
by naming them ("1-research" before "2-everyone"). Within one group, its newest active
credential.

Deactivated credentials revoke rather than fall through: a person whose own credentials are
all deactivated has no key, and so has a person none of whose groups has an active
credential while one of them had one. The default is for people who were never given a
key, not a way around a revoked one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group

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
    rate_limit_per_minute: int | None = None
    # The owner the limits count for: a user, a group (its members together), or neither
    # (the instance default: each person separately).
    user_id: int | None = None
    group_id: int | None = None
    last_used_at: datetime | None = None
    # What its models take besides text (ApiCredential.vision, .pdf).
    vision: bool = True
    pdf: bool = True
    # Long conversations (ApiCredential.context_window, .prompt_caching, .context_limits):
    # the window the history is fitted into, cache_control on the stable prefix, and the
    # limits the gateway stated per model (model, tokens).
    context_window: int = 200_000
    prompt_caching: bool = False
    context_limits: tuple[tuple[str, int], ...] = ()

    def window_for(self, model: str) -> int:
        """The context window of `model`: the gateway's stated limit where it taught us a
        smaller one than configured."""
        learned = dict(self.context_limits).get(model)
        return min(self.context_window, learned) if learned else self.context_window

    @property
    def fingerprint(self) -> str:
        material = "\0".join((self.base_url, self.scheme, self.key))
        return hashlib.sha256(material.encode()).hexdigest()


def of_row(row: ApiCredential) -> GatewayCredential:
    return GatewayCredential(
        base_url=row.base_url,
        scheme=row.scheme,
        key=row.get_key(),
        default_model=row.default_model,
        identity=f"db:{row.pk}",
        credential_id=row.pk,
        allowed_models=tuple(row.model_choices),
        monthly_token_quota=row.monthly_token_quota,
        rate_limit_per_minute=row.rate_limit_per_minute,
        user_id=row.user_id,
        group_id=row.group_id,
        last_used_at=row.last_used_at,
        vision=row.vision,
        pdf=row.pdf,
        context_window=row.context_window,
        prompt_caching=row.prompt_caching,
        context_limits=_limits(row.context_limits),
    )


def _limits(stored: object) -> tuple[tuple[str, int], ...]:
    # A JSON object edited by hand or by an older release: only model -> positive int counts.
    if not isinstance(stored, dict):
        return ()
    return tuple(
        (str(model), int(tokens))
        for model, tokens in stored.items()
        if isinstance(tokens, int) and tokens > 0
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
            context_window=settings.CHAT_CONTEXT_WINDOW,
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
            context_window=settings.CHAT_CONTEXT_WINDOW,
        )
    return None


def resolve(user: AbstractBaseUser | AnonymousUser) -> GatewayCredential | None:
    """The credential for this user's next turn (reads the database: call from sync code)."""
    row = _deciding_row(user.pk if user.is_authenticated else None)
    if row is not None and (row.user_id is not None or row.group_id is not None):
        if not row.is_active:
            # Active rows sort first in their tier: this one is the best of a revoked tier.
            return None
    if row is not None:
        return of_row(row)
    return from_environment()


def _deciding_row(user_id: int | None) -> ApiCredential | None:
    """The row that decides `resolve`, in one statement: the user's own credentials first
    (the newest active one before any inactive one), then their groups' (active first, by
    group name, the newest of a group first), then the newest active default.
    Hand-written: every turn starts here (see `conversations.rows`)."""
    db = rows.database()
    user, group, active, updated = (
        rows.column(db, ApiCredential, name)
        for name in ("user", "group", "is_active", "updated_at")
    )
    default = f"({user} IS NULL AND {group} IS NULL AND {active})"
    if user_id is None:
        return rows.one(db, ApiCredential, f"WHERE {default} ORDER BY {updated} DESC LIMIT 1", [])
    membership = get_user_model().groups.through
    member_group, member_user = (
        rows.column(db, membership, name) for name in ("group", get_user_model()._meta.model_name)
    )
    group_name = f"(SELECT {rows.column(db, Group, 'name')} FROM {rows.table(db, Group)} " + (
        f"WHERE {rows.column(db, Group, 'id')} = {group})"
    )
    return rows.one(
        db,
        ApiCredential,
        f"WHERE {user} = %s OR {group} IN (SELECT {member_group} FROM "
        f"{rows.table(db, membership)} WHERE {member_user} = %s) OR {default} "
        f"ORDER BY CASE WHEN {user} IS NOT NULL THEN 0 WHEN {group} IS NOT NULL THEN 1 "
        f"ELSE 2 END, {active} DESC, {group_name}, {updated} DESC LIMIT 1",
        [user_id, user_id],
    )
