"""The audit of credentials: what each change changed, recorded in the transaction of the
change (`services.credentials` calls these), so that a change and its record are both kept
or neither is. Never the key: a key appears as its mask."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from conversations import crypto
from conversations.models import ApiCredential, CredentialChange

# The fields an administrator changes, under the names the record uses.
TRACKED = [
    "label",
    "base_url",
    "scheme",
    "default_model",
    "allowed_models",
    "vision",
    "pdf",
    "context_window",
    "prompt_caching",
    "monthly_token_quota",
    "rate_limit_per_minute",
    "is_active",
]

Snapshot = dict[str, Any]


def snapshot(row: ApiCredential | None) -> Snapshot | None:
    """What a credential is now, in plain values (the owner by name, the key as its
    ciphertext, which `record` compares and never stores)."""
    if row is None or row.pk is None:
        return None
    values: Snapshot = {name: getattr(row, name) for name in TRACKED}
    values["user"] = row.user.get_username() if row.user_id else None
    values["group"] = row.group.name if row.group_id else None
    values["key"] = (row.key_encrypted, row.key_hint)
    return values


def stored(pk: int | None) -> Snapshot | None:
    """The snapshot of the row as the database holds it (before a change is saved)."""
    if pk is None:
        return None
    return snapshot(ApiCredential.objects.select_related("user", "group").filter(pk=pk).first())


def _same_key(before: tuple[str, str], after: tuple[str, str]) -> bool:
    if before[0] == after[0]:
        return True
    # Fernet encrypts the same key differently every time: compare the keys themselves,
    # in memory only.
    try:
        return crypto.decrypt(before[0]) == crypto.decrypt(after[0])
    except crypto.DecryptionError:
        return False


def differences(before: Snapshot | None, after: Snapshot | None) -> dict[str, list[Any]]:
    """{field: [before, after]} of what changed; the key as its masks."""
    before = before or {}
    after = after or {}
    changed: dict[str, list[Any]] = {}
    for name in ["user", "group", *TRACKED]:
        old, new = before.get(name), after.get(name)
        # An empty field is no change from no field (a new credential's blank label).
        if old != new and not (old in (None, "") and new in (None, "")):
            changed[name] = [old, new]
    old_key, new_key = before.get("key"), after.get("key")
    if old_key is None or new_key is None:
        if old_key != new_key:
            changed["key"] = [old_key and old_key[1], new_key and new_key[1]]
    elif not _same_key(old_key, new_key):
        changed["key"] = [old_key[1], new_key[1]]
    return changed


def record(
    row: ApiCredential,
    action: str,
    before: Snapshot | None,
    after: Snapshot | None,
    *,
    by: AbstractBaseUser | None,
    via: str,
) -> CredentialChange | None:
    """Keep one change (nothing when nothing changed). Call inside the change's transaction."""
    changes = differences(before, after)
    if not changes and action == CredentialChange.Action.CHANGED:
        return None
    return CredentialChange.objects.create(
        credential=row if row.pk is not None else None,
        credential_name=str(row)[:300],
        actor=by if by is not None and by.pk is not None else None,
        actor_name=by.get_username() if by is not None else "",
        via=via,
        action=action,
        changes=changes,
    )
