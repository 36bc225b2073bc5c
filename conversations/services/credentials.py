"""Credentials: the one a turn uses (and its limits and models), and the administrator's
writes (save, delete, set a key, rotate the encryption keys).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils.translation import gettext as _

from conversations import credentials as resolution
from conversations import crypto, limits, upstream
from conversations.credentials import GatewayCredential
from conversations.models import ApiCredential, Conversation, CredentialChange
from conversations.services import ServiceError, audit
from conversations.text import clean

logger = logging.getLogger(__name__)

# Who changed a credential: a signed-in person, or None (a command, single sign-on).
Actor = AbstractBaseUser | None
# Where a change came from, as the audit shows it.
VIA_ADMIN = CredentialChange.Via.ADMIN
VIA_COMMAND = CredentialChange.Via.COMMAND


def for_turn(user: AbstractBaseUser) -> GatewayCredential:
    """The credential of the user's next turn, once the turn is within the limits.

    A turn action calls this (or `of_user` and then `within_limits` in the same
    transaction) before its writes commit: a refused turn stores nothing and never reaches
    the gateway.
    """
    credential = of_user(user)
    within_limits(user, credential)
    return credential


def of_user(user: AbstractBaseUser) -> GatewayCredential:
    try:
        credential = resolution.resolve(user)
    except crypto.DecryptionError:
        # FIELD_ENCRYPTION_KEYS lost the key this credential was stored with.
        logger.error("The API key of user %s cannot be decrypted", user.pk)
        raise ServiceError(
            "api_key_unreadable",
            _(
                "The server cannot read your stored API key. Ask your administrator to "
                "enter it again or to restore the encryption key it was saved with."
            ),
        ) from None
    if credential is None:
        raise ServiceError(
            "no_api_key",
            _("You have no API key for the gateway yet. Ask your administrator to give you one."),
        )
    return credential


def within_limits(user: AbstractBaseUser, credential: GatewayCredential) -> None:
    try:
        limits.check_turn(user, credential)
    except limits.LimitExceeded as exc:
        raise ServiceError(exc.code, exc.message) from None


def check_model(conversation: Conversation, credential: GatewayCredential) -> None:
    """Refuse a turn with a model the credential does not allow, whatever the conversation
    stored: the administrator may have narrowed the list since the model was chosen.

    A blank model is the credential's default, which is always allowed; a credential that
    lists no models allows its default only (as `ApiCredential.model_choices` reads it).
    """
    model = conversation.model or credential.default_model
    allowed = credential.allowed_models or (credential.default_model,)
    if model not in allowed:
        raise ServiceError(
            "model_not_allowed",
            _(
                "This conversation is set to the model %(model)s, which your API key does not "
                "allow. Choose one of these in the conversation's settings: %(models)s."
            )
            % {"model": model, "models": ", ".join(allowed)},
        )


def check_key(credential: GatewayCredential) -> upstream.KeyCheck:
    """Make the cheapest request the gateway allows with this credential (`upstream.check_key`)
    and say what it answered. Sync: the admin and the commands call it; never in a turn."""
    return async_to_sync(upstream.check_key)(credential)


def check_stored_key(row: ApiCredential) -> upstream.KeyCheck:
    """`check_key` for a stored credential (the admin's "Check key" action)."""
    try:
        credential = resolution.of_row(row)
    except crypto.DecryptionError:
        return upstream.KeyCheck(
            accepted=False,
            code="api_key_unreadable",
            message=_(
                "The stored key cannot be decrypted with FIELD_ENCRYPTION_KEYS: enter it again."
            ),
        )
    return check_key(credential)


def _action(before: audit.Snapshot | None, after: audit.Snapshot | None) -> str:
    if before is None:
        return CredentialChange.Action.CREATED
    if before["is_active"] and after is not None and not after["is_active"]:
        return CredentialChange.Action.DEACTIVATED
    return CredentialChange.Action.CHANGED


def _save_audited(credential: ApiCredential, *, by: Actor, via: str, **save: Any) -> None:
    """Save and keep the record of what changed, in the caller's transaction."""
    before = audit.stored(credential.pk)
    credential.save(**save)
    after = audit.snapshot(credential)
    audit.record(credential, _action(before, after), before, after, by=by, via=via)


def save_credential(
    credential: ApiCredential, *, by: Actor = None, via: str = VIA_ADMIN
) -> ApiCredential:
    """Store a credential edited in the admin (its key already set through `set_key`)."""
    # The admin's form refuses a NUL already; a label set by other code is cleaned here.
    credential.label = clean(credential.label)
    with transaction.atomic():
        _save_audited(credential, by=by, via=via)
    credential_changed(credential)
    return credential


def delete_credential(credential: ApiCredential, *, by: Actor = None, via: str = VIA_ADMIN) -> None:
    """Delete a credential (the admin). Its person's next turn resolves again: another
    active credential of theirs, else the instance default (see `credentials.resolve`).
    Its audit records stay, under its name."""
    pk, hint = credential.pk, credential.key_hint
    with transaction.atomic():
        before = audit.stored(pk)
        audit.record(credential, CredentialChange.Action.DELETED, before, None, by=by, via=via)
        credential.delete()
    logger.info("Credential %s deleted (key %s)", pk, hint)


def delete_credentials_of(
    owner: AbstractBaseUser | Group, *, by: Actor = None, via: str = VIA_ADMIN
) -> int:
    """Delete the credentials of a user or a group about to be deleted, each through
    `delete_credential`: the database's cascade would take them without an audit record."""
    field = "group" if isinstance(owner, Group) else "user"
    owned = list(ApiCredential.objects.filter(**{field: owner}).select_related("user", "group"))
    for credential in owned:
        delete_credential(credential, by=by, via=via)
    return len(owned)


def delete_group(group: Group, *, by: Actor = None) -> None:
    """Delete a group (the admin; `by`: who), its credentials first, each kept in the
    audit as deleted. Its members stay; their next turn resolves again."""
    with transaction.atomic():
        delete_credentials_of(group, by=by)
        group.delete()


def credential_changed(credential: ApiCredential) -> None:
    """A credential was created, edited or rotated: the next turn uses the new values.

    Cached SDK clients are keyed by a fingerprint of URL, scheme and key, so a changed key
    gets a new client by itself; nothing else to do but keep this as the one hook.
    """
    logger.info("Credential %s updated (key %s)", credential.pk, credential.key_hint)


# The longest model name the model columns hold.
MODEL_NAME_LENGTH = 100


def clean_model_names(names: Iterable[str]) -> list[str]:
    """Model names as an administrator typed them: trimmed, each once, in order.

    A name has no space or comma and at most MODEL_NAME_LENGTH characters, so the comma
    list of `set_api_key --allowed-models` and the admin's lines mean the same.
    """
    cleaned: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise ServiceError(
                "invalid_model_name",
                _("The list of allowed models has an empty model name."),
            )
        if len(name) > MODEL_NAME_LENGTH or any(c.isspace() or c == "," for c in name):
            raise ServiceError(
                "invalid_model_name",
                _(
                    "“%(name)s” is not a model name: a model name has no spaces or commas "
                    "and at most %(length)d characters."
                )
                % {"name": name[:MODEL_NAME_LENGTH], "length": MODEL_NAME_LENGTH},
            )
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def allowed_models_text(default_model: str, names: list[str]) -> str:
    """The stored form of an allowed list (`ApiCredential.allowed_models`), one per line.

    The default model is always allowed: a list that leaves it out gets it in front, so the
    stored list is the whole of what may be used. An empty list stays empty: the default
    model only, whichever it becomes.
    """
    if names and default_model and default_model not in names:
        names = [default_model, *names]
    return "\n".join(names)


def set_api_key(
    user: AbstractBaseUser | None,
    *,
    group: Group | None = None,
    key: str,
    base_url: str,
    scheme: str = ApiCredential.Scheme.BEARER,
    model: str = "",
    label: str = "",
    allowed_models: list[str] | None = None,
    vision: bool | None = None,
    pdf: bool | None = None,
    context_window: int | None = None,
    prompt_caching: bool | None = None,
    by: Actor = None,
    via: str = VIA_COMMAND,
) -> ApiCredential:
    """Give `user`, or `group` (both None: the instance default) this credential, replacing
    the active one.

    `vision` and `pdf` (what the models take besides text) None keep what the replaced
    credential said (yes for a new one); so do `context_window` (200,000 for a new one) and
    `prompt_caching` (off for a new one).

    `allowed_models` None keeps the list the replaced credential had (none for a new one:
    the default model only); a list replaces it (see `allowed_models_text`).
    """
    if user is not None and group is not None:
        raise ServiceError(
            "two_owners", _("A credential belongs to a user or to a group, not to both.")
        )
    key = key.strip()
    if not key:
        raise ServiceError("empty_key", _("The API key is empty."))
    if scheme not in ApiCredential.Scheme.values:
        raise ServiceError("invalid_scheme", _("The scheme must be bearer or x-api-key."))
    if (
        context_window is not None
        and not MIN_CONTEXT_WINDOW <= context_window <= MAX_CONTEXT_WINDOW
    ):
        raise ServiceError(
            "invalid_context_window",
            _("The context window must be between %(low)s and %(high)s tokens.")
            % {"low": f"{MIN_CONTEXT_WINDOW:,}", "high": f"{MAX_CONTEXT_WINDOW:,}"},
        )
    if allowed_models is not None:
        allowed_models = clean_model_names(allowed_models)
        if not allowed_models:
            raise ServiceError("invalid_model_name", _("Give at least one model name to allow."))
    with transaction.atomic():
        credential = ApiCredential.objects.select_for_update().filter(
            user=user, group=group, is_active=True
        ).order_by("-updated_at").first() or ApiCredential(user=user, group=group)
        credential.base_url = base_url
        credential.scheme = scheme
        # From a command line, whose bytes Python decodes with surrogates where they are not
        # UTF-8: cleaned like any text that is stored.
        credential.default_model = (
            clean(model) or credential.default_model or settings.CHAT_DEFAULT_MODEL
        )
        if allowed_models is not None:
            credential.allowed_models = allowed_models_text(
                credential.default_model, allowed_models
            )
        credential.label = clean(label) or credential.label
        if vision is not None:
            credential.vision = vision
        if pdf is not None:
            credential.pdf = pdf
        if context_window is not None:
            credential.context_window = context_window
        if prompt_caching is not None:
            credential.prompt_caching = prompt_caching
        credential.is_active = True
        credential.set_key(key)
        credential.full_clean(exclude=["key_encrypted"])
        _save_audited(credential, by=by, via=via)
    credential_changed(credential)
    return credential


# A window smaller than a reply leaves no room for history; larger than any model is a typo.
MIN_CONTEXT_WINDOW = 1_024
MAX_CONTEXT_WINDOW = 10_000_000


def remember_context_limit(credential_id: int | None, model: str, limit: int) -> None:
    """The gateway refused a prompt over `limit` tokens for `model`: later turns fit to it
    at the first try (`GatewayCredential.window_for`). Not audited: the gateway taught it,
    no one changed the credential. An UPDATE of one JSON value; a credential from the
    environment (no row) learns nothing to keep."""
    if credential_id is None or not model or limit < MIN_CONTEXT_WINDOW:
        return
    with transaction.atomic():
        row = ApiCredential.objects.select_for_update().filter(pk=credential_id).first()
        if row is None:
            return
        limits = dict(row.context_limits) if isinstance(row.context_limits, dict) else {}
        if limits.get(model) == limit:
            return
        limits[model[:MODEL_NAME_LENGTH]] = limit
        ApiCredential.objects.filter(pk=credential_id).update(context_limits=limits)
    logger.info("Credential %s: the gateway limits %s to %d tokens", credential_id, model, limit)


def assign_credential(
    source: ApiCredential,
    users: Iterable[AbstractBaseUser],
    *,
    by: Actor = None,
    via: str = VIA_ADMIN,
) -> int:
    """Give each of `users` a credential of their own like `source` (the admin's action on
    many users at once): same gateway, key, models and limits. A user's active credential
    is updated in place, as `set_api_key` does; one without gets a new one. The key is
    copied encrypted, never decrypted. Returns how many users were given it."""
    copied = [
        "base_url",
        "scheme",
        "key_encrypted",
        "key_hint",
        "default_model",
        "allowed_models",
        "vision",
        "pdf",
        "context_window",
        "prompt_caching",
        "monthly_token_quota",
        "rate_limit_per_minute",
    ]
    changed: list[ApiCredential] = []
    with transaction.atomic():
        for user in users:
            credential = ApiCredential.objects.select_for_update().filter(
                user=user, is_active=True
            ).order_by("-updated_at").first() or ApiCredential(user=user)
            for name in copied:
                setattr(credential, name, getattr(source, name))
            credential.label = source.label
            credential.is_active = True
            _save_audited(credential, by=by, via=via)
            changed.append(credential)
    for credential in changed:
        credential_changed(credential)
    return len(changed)


def deactivate_credentials(
    credentials: Iterable[ApiCredential], *, by: Actor = None, via: str = VIA_ADMIN
) -> int:
    """Revoke credentials (the admin's action): their owners' next turns are refused
    (`credentials.resolve`). Returns how many were active."""
    changed: list[ApiCredential] = []
    with transaction.atomic():
        for credential in credentials:
            if credential.is_active:
                credential.is_active = False
                _save_audited(credential, by=by, via=via, update_fields=["is_active", "updated_at"])
                changed.append(credential)
    for credential in changed:
        credential_changed(credential)
    return len(changed)


@dataclass(frozen=True)
class KeyRotation:
    rotated: int
    # Edited while the rotation ran: the edit already stored it under the newest key.
    changed_meanwhile: int
    # Ids of credentials that no key of FIELD_ENCRYPTION_KEYS decrypts.
    undecryptable: list[int]


def rotate_encryption_keys() -> KeyRotation:
    """Re-encrypt every stored API key with the first key of FIELD_ENCRYPTION_KEYS.

    The plaintext keys do not change, so cached clients stay valid. `updated_at` is left
    alone on purpose: it decides which credential is a user's newest, and a new storage
    key is not a new credential.
    """
    rotated, changed, failed = 0, 0, []
    # A list, not a cursor: SQLite must not iterate a table while it is being updated.
    rows = list(ApiCredential.objects.order_by("pk").values_list("pk", "key_encrypted"))
    for pk, token in rows:
        try:
            new_token = crypto.rotate(token)
        except crypto.DecryptionError:
            failed.append(pk)
            continue
        # Compare-and-set: never overwrite a key an administrator replaced meanwhile.
        if ApiCredential.objects.filter(pk=pk, key_encrypted=token).update(key_encrypted=new_token):
            rotated += 1
        else:
            changed += 1
    if failed:
        logger.warning("Credentials %s cannot be decrypted with FIELD_ENCRYPTION_KEYS", failed)
    return KeyRotation(rotated, changed, failed)
