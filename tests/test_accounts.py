"""Accounts made and kept by single sign-on (services.accounts), from a token's claims."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from conversations import credentials, services
from conversations.models import SingleSignOnIdentity
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

User = get_user_model()


def sign_in(claims: dict, groups_claim: str = "groups"):
    return services.accounts.sign_in_from_claims(
        claims, username_claim="preferred_username", groups_claim=groups_claim
    )


def test_a_first_sign_in_makes_an_account_from_the_claims():
    user = sign_in(
        {
            "sub": "f3a1-0001",
            "preferred_username": "dana",
            "email": "dana@example.org",
            "given_name": "Dana",
            "family_name": "Scully",
        }
    )
    assert (user.username, user.email, user.first_name, user.last_name) == (
        "dana",
        "dana@example.org",
        "Dana",
        "Scully",
    )
    assert not user.has_usable_password()
    assert SingleSignOnIdentity.objects.get(user=user).subject == "f3a1-0001"


def test_the_same_subject_is_the_same_account_even_under_a_new_name():
    first = sign_in({"sub": "f3a1-0002", "preferred_username": "dana"})
    again = sign_in({"sub": "f3a1-0002", "preferred_username": "dana.s", "email": "d@example.org"})
    assert again.pk == first.pk and again.username == "dana"
    assert again.email == "d@example.org"
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("claims", "named"),
    [
        ({"preferred_username": "dana"}, "no sub claim"),
        ({"sub": "f3a1-0003"}, "no preferred_username claim"),
        ({"sub": "f3a1-0003", "preferred_username": "   "}, "no preferred_username claim"),
        ({"sub": "f3a1-0003", "preferred_username": ["dana"]}, "no preferred_username claim"),
        ({}, "no sub, preferred_username claim"),
    ],
)
def test_a_token_without_the_required_claims_signs_no_one_in_and_says_why(claims, named):
    with pytest.raises(services.ServiceError) as refused:
        sign_in(claims)
    assert refused.value.code == "sso_claims_missing"
    assert named in refused.value.message
    assert not User.objects.exists() and not SingleSignOnIdentity.objects.exists()


def test_a_local_account_of_the_same_name_is_not_taken_over():
    local = make_user("frank")
    with pytest.raises(services.ServiceError) as refused:
        sign_in({"sub": "f3a1-0004", "preferred_username": "frank"})
    assert refused.value.code == "sso_username_taken"
    assert "An account named “frank” already exists here" in refused.value.message
    assert not SingleSignOnIdentity.objects.exists()
    local.refresh_from_db()
    assert local.check_password("pw-frank")


def test_a_name_this_site_cannot_hold_is_refused_with_a_sentence():
    with pytest.raises(services.ServiceError) as refused:
        sign_in({"sub": "f3a1-0005", "preferred_username": "dana scully!"})
    assert refused.value.code == "sso_username_invalid"
    assert "“dana scully!”" in refused.value.message
    assert not User.objects.exists()


def test_known_groups_are_given_and_an_unknown_group_claim_creates_nothing():
    research = Group.objects.create(name="research")
    everyone = Group.objects.create(name="everyone")
    user = sign_in(
        {
            "sub": "f3a1-0006",
            "preferred_username": "dana",
            "groups": ["research", "/org/everyone", "ghosts"],
        }
    )
    assert set(user.groups.all()) == {research, everyone}
    assert not Group.objects.filter(name="ghosts").exists()
    # The provider is the source of the groups: one taken away there is taken away here.
    sign_in({"sub": "f3a1-0006", "preferred_username": "dana", "groups": "research"})
    assert list(user.groups.all()) == [research]


def test_a_token_without_the_groups_claim_keeps_the_groups_a_person_has():
    research = Group.objects.create(name="research")
    user = sign_in({"sub": "f3a1-0007", "preferred_username": "dana", "groups": ["research"]})
    sign_in({"sub": "f3a1-0007", "preferred_username": "dana"})
    assert list(user.groups.all()) == [research]


def test_a_group_from_the_claim_brings_the_groups_key():
    research = Group.objects.create(name="research")
    services.credentials.set_api_key(
        None, group=research, key="sk-research", base_url="https://gw.example/v1"
    )
    user = sign_in({"sub": "f3a1-0008", "preferred_username": "dana", "groups": ["research"]})
    assert credentials.resolve(user).key == "sk-research"


def test_a_deactivated_account_is_not_signed_in():
    user = sign_in({"sub": "f3a1-0009", "preferred_username": "dana"})
    User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(services.ServiceError) as refused:
        sign_in({"sub": "f3a1-0009", "preferred_username": "dana"})
    assert refused.value.code == "account_inactive"
