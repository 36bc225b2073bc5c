"""The audit of credentials: every change kept (who, when, what), never the key."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from conversations import services
from conversations.models import ApiCredential, CredentialChange
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

KEY = "sk-audited-first-key-0123-aaaa"
NEW_KEY = "sk-audited-second-key-4567-bbbb"
ADD_URL = "/admin/conversations/apicredential/add/"
AUDIT_URL = "/admin/conversations/credentialchange/"


def form(user: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "user": user.pk,
        "group": "",
        "label": "Alice's key",
        "is_active": "on",
        "scheme": "bearer",
        "env_id": "",
        "base_url": "https://gw.example/v1",
        "default_model": "hy3-preview",
        "allowed_models": "",
        "api_key": "",
        "monthly_token_quota": "",
        "rate_limit_per_minute": "",
        # As a browser sends the two ticked boxes (images and PDFs, on by default).
        "vision": "on",
        "pdf": "on",
    }
    return {**data, **overrides}


def changes() -> list[CredentialChange]:
    return list(CredentialChange.objects.order_by("id"))


def test_an_admins_create_edit_deactivate_and_delete_are_each_kept(admin_client, admin_user, alice):
    assert admin_client.post(ADD_URL, form(alice, api_key=KEY)).status_code == 302
    credential = ApiCredential.objects.get(user=alice)
    url = f"/admin/conversations/apicredential/{credential.pk}/change/"
    edit = form(alice, label="Alice's new key", api_key=NEW_KEY, monthly_token_quota="5000")
    assert admin_client.post(url, edit).status_code == 302
    admin_client.post(
        "/admin/conversations/apicredential/",
        {"action": "deactivate", "_selected_action": [credential.pk]},
    )
    name = str(ApiCredential.objects.get(pk=credential.pk))
    admin_client.post(
        f"/admin/conversations/apicredential/{credential.pk}/delete/", {"post": "yes"}
    )

    created, edited, deactivated, deleted = changes()
    assert [c.action for c in changes()] == ["created", "changed", "deactivated", "deleted"]
    assert {(c.actor_id, c.actor_name, c.via) for c in changes()} == {
        (admin_user.pk, admin_user.username, "admin")
    }
    assert created.changes["user"] == [None, "alice"]
    assert created.changes["key"] == [None, "sk-…aaaa"]
    assert edited.changes == {
        "label": ["Alice's key", "Alice's new key"],
        "monthly_token_quota": [None, 5000],
        "key": ["sk-…aaaa", "sk-…bbbb"],
    }
    assert deactivated.changes == {"is_active": [True, False]}
    # The credential is gone; its records stay, under its name.
    assert deleted.credential is None and deleted.credential_name == name
    assert CredentialChange.objects.filter(credential=None).count() == 4
    text = str([(c.changes, c.credential_name, c.summary) for c in changes()])
    assert KEY not in text and NEW_KEY not in text


def test_saving_without_a_change_keeps_no_record_and_the_same_key_again_is_no_key_change(
    admin_client, alice
):
    credential = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    url = f"/admin/conversations/apicredential/{credential.pk}/change/"
    assert admin_client.post(url, form(alice, label="")).status_code == 302
    assert admin_client.post(url, form(alice, label="", api_key=KEY)).status_code == 302
    assert [c.action for c in changes()] == ["created"]


def test_a_command_line_change_is_kept_as_such(alice):
    research = Group.objects.create(name="research")
    original = sys.stdin
    sys.stdin = io.StringIO(KEY + "\n")
    try:
        call_command(
            "set_api_key",
            "--group",
            "research",
            "--base-url",
            "https://gw.example/v1",
            stdout=io.StringIO(),
        )
    finally:
        sys.stdin = original
    (change,) = changes()
    assert (change.actor, change.actor_name, change.via, change.action) == (
        None,
        "",
        "command",
        "created",
    )
    assert change.changes["group"] == [None, research.name]
    assert change.credential.group == research


def test_assigning_a_credential_to_many_users_keeps_a_record_per_user(admin_client, alice, bob):
    source = services.credentials.set_api_key(None, key=KEY, base_url="https://gw.example/v1")
    admin_client.post(
        "/admin/auth/user/",
        {
            "action": "assign_credential",
            "_selected_action": [alice.pk, bob.pk],
            "credential": source.pk,
        },
    )
    assigned = CredentialChange.objects.filter(via="admin", action="created")
    assert sorted(c.changes["user"][1] for c in assigned) == ["alice", "bob"]


@pytest.mark.parametrize("bulk", [False, True])
def test_deleting_a_user_or_a_group_in_the_admin_keeps_the_deletion_of_their_credentials(
    admin_client, admin_user, alice, bob, bulk
):
    research = Group.objects.create(name="research")
    research.user_set.add(alice, bob)
    services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    services.credentials.set_api_key(
        None, group=research, key=NEW_KEY, base_url="https://gw.example/v1"
    )
    names = sorted(str(c) for c in ApiCredential.objects.all())
    for model, pk in (("user", alice.pk), ("group", research.pk)):
        if bulk:
            response = admin_client.post(
                f"/admin/auth/{model}/",
                {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
            )
        else:
            response = admin_client.post(f"/admin/auth/{model}/{pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
    # The credentials went with their owners, and each deletion is kept, by whom, as such.
    assert not ApiCredential.objects.exists()
    deleted = [c for c in changes() if c.action == "deleted"]
    assert sorted(c.credential_name for c in deleted) == names
    assert {(c.actor_id, c.via) for c in deleted} == {(admin_user.pk, "admin")}
    # The group's members stay.
    assert type(bob).objects.filter(pk=bob.pk).exists()


def test_the_audit_is_shown_in_the_admin_and_cannot_be_edited(admin_client, alice):
    credential = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    services.credentials.set_api_key(alice, key=NEW_KEY, base_url="https://gw2.example/v1")
    listing = admin_client.get(AUDIT_URL).content.decode()
    assert "https://gw.example/v1 → https://gw2.example/v1" in listing
    assert "key: sk-…aaaa → sk-…bbbb" in listing
    page = admin_client.get(f"/admin/conversations/apicredential/{credential.pk}/change/")
    html = page.content.decode()
    assert "Changes (audit)" in html and "key: sk-…aaaa → sk-…bbbb" in html
    for body in (listing, html):
        assert KEY not in body and NEW_KEY not in body
    record = CredentialChange.objects.first()
    assert admin_client.get(f"{AUDIT_URL}add/").status_code == 403
    assert admin_client.post(f"{AUDIT_URL}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert CredentialChange.objects.count() == 2


def test_staff_who_may_not_see_credentials_do_not_see_the_audit(client):
    staff = make_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(AUDIT_URL).status_code == 403
