"""Accounts made and kept up to date by single sign-on (`conversations.sso`): a person of the
identity provider, by their `sub` claim, is one account here; their groups follow a claim.

Only groups that exist here are given: a group name in the claim that is unknown here
creates nothing (an administrator makes groups, and gives them keys and quotas).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import SingleSignOnIdentity
from conversations.services import ServiceError
from conversations.text import clean

logger = logging.getLogger(__name__)


def sign_in_from_claims(
    claims: dict[str, Any], *, username_claim: str, groups_claim: str = ""
) -> AbstractBaseUser:
    """The account of the person these claims describe, made on their first sign-in.

    Raises ServiceError, with a sentence for the sign-in page, when the claims cannot
    sign anyone in: no `sub`, no username, a username this site cannot hold, or one that
    is already a local account's (signing in to it would take it over).
    """
    subject = _text(claims.get("sub"))
    username = _text(claims.get(username_claim))
    missing = [name for name, value in (("sub", subject), (username_claim, username)) if not value]
    if missing:
        raise ServiceError(
            "sso_claims_missing",
            _(
                "The identity provider did not say who you are (the sign-in token has no "
                "%(claims)s claim), so no one was signed in. Ask your administrator to "
                "check the provider's settings for this site."
            )
            % {"claims": ", ".join(missing)},
        )
    User = get_user_model()
    with transaction.atomic():
        identity = (
            SingleSignOnIdentity.objects.select_for_update()
            .select_related("user")
            .filter(subject=subject)
            .first()
        )
        if identity is None:
            user = _new_user(User, username, claims)
            identity = SingleSignOnIdentity.objects.create(user=user, subject=subject)
        else:
            user = identity.user
        _update_profile(user, claims)
        if groups_claim:
            _set_groups(user, claims, groups_claim)
        identity.last_sign_in_at = timezone.now()
        identity.save(update_fields=["last_sign_in_at"])
    if not user.is_active:
        raise ServiceError(
            "account_inactive",
            _("Your account here is deactivated. Ask your administrator."),
        )
    return user


def _text(value: Any) -> str:
    return clean(value).strip() if isinstance(value, str) else ""


def _new_user(User: Any, username: str, claims: dict[str, Any]) -> AbstractBaseUser:
    field = User._meta.get_field(User.USERNAME_FIELD)
    try:
        field.run_validators(username)
        if len(username) > field.max_length:
            raise ValidationError(_("It is too long."))
    except ValidationError as exc:
        raise ServiceError(
            "sso_username_invalid",
            _("The name “%(name)s” from the identity provider cannot be a username here: %(why)s")
            % {"name": username[:160], "why": " ".join(exc.messages)},
        ) from None
    if User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
        # A local account of that name is not someone's to take by naming themselves so at
        # the provider: an administrator links or renames it.
        raise ServiceError(
            "sso_username_taken",
            _(
                "An account named “%(name)s” already exists here and signs in with a "
                "password. Ask your administrator to rename it or to remove it."
            )
            % {"name": username},
        )
    user = User(**{User.USERNAME_FIELD: username})
    # Signs in through the provider only.
    user.set_unusable_password()
    user.save()
    logger.info("Account %s created by single sign-on", user.pk)
    return user


def _update_profile(user: Any, claims: dict[str, Any]) -> None:
    changed = []
    for field, claim, length in (
        ("email", "email", 254),
        ("first_name", "given_name", 150),
        ("last_name", "family_name", 150),
    ):
        value = _text(claims.get(claim))[:length]
        if value and getattr(user, field, value) != value:
            setattr(user, field, value)
            changed.append(field)
    if changed:
        user.save(update_fields=changed)


def group_names(value: Any) -> list[str]:
    """The group names of a groups claim: a list of names or one name; Keycloak's full
    paths ("/research") count by their last part."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    result = []
    for name in names:
        text = _text(name)
        if text:
            result.append(text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text)
    return result


def _set_groups(user: Any, claims: dict[str, Any], claim: str) -> None:
    if claim not in claims:
        # Likely a scope or mapper missing at the provider: keep what the person has rather
        # than strip everyone's groups (and keys) at their next sign-in.
        logger.warning("The sign-in token of user %s has no %r claim", user.pk, claim)
        return
    names = group_names(claims[claim])
    known = list(Group.objects.filter(name__in=names))
    unknown = sorted(set(names) - {group.name for group in known})
    if unknown:
        logger.info("Groups unknown here, not given to user %s: %s", user.pk, unknown)
    user.groups.set(known)
