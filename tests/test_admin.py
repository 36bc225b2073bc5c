"""The admin: credentials with a write-only key, users with their usage, messages by user and month."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from conversations import credentials, generation, services, usage
from conversations.demo.script import Script
from conversations.models import ApiCredential, Conversation, Message
from tests.conftest import give_key, make_user, open_socket, receive
from tests.support.chat import new_conversation
from tests.support.turns import record_reply

pytestmark = pytest.mark.django_db

db = database_sync_to_async

KEY = "sk-plaintext-admin-0123456789-a1b2"
MASK = "sk-…a1b2"
NEW_KEY = "sk-rotated-admin-9876543210-c3d4"
NEW_MASK = "sk-…c3d4"
ADD_URL = "/admin/conversations/apicredential/add/"
LIST_URL = "/admin/conversations/apicredential/"


def change_url(credential: ApiCredential) -> str:
    return f"/admin/conversations/apicredential/{credential.pk}/change/"


def form_data(user: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "user": user.pk if user is not None else "",
        "label": "Alice's CloudBase key",
        "is_active": "on",
        "scheme": "bearer",
        "env_id": "",
        "base_url": "https://gw.example/v1/ai/cloudbase",
        "default_model": "hy3-preview",
        "allowed_models": "hy3-preview\nhunyuan-t1",
        "api_key": "",
        "monthly_token_quota": "",
        # As a browser sends the two ticked boxes (images and PDFs, on by default).
        "vision": "on",
        "pdf": "on",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def test_a_label_with_a_nul_is_refused_with_a_sentence_and_nothing_is_stored(admin_client, alice):
    # The admin keeps Django's refusal (the app's own forms clean instead): an administrator
    # is told, and PostgreSQL is never asked to store a NUL.
    response = admin_client.post(ADD_URL, form_data(alice, label="work\x00 key", api_key=KEY))
    assert response.status_code == 200
    assert "Null characters are not allowed." in response.content.decode()
    assert not ApiCredential.objects.exists()


def assert_no_plaintext(html: str, *keys: str) -> None:
    for key in keys:
        assert key not in html
        # Not even the distinctive middle of it.
        assert key[3:-5] not in html


def test_an_admin_adds_a_credential_and_then_sees_only_its_mask(admin_client, alice):
    response = admin_client.post(
        ADD_URL,
        form_data(
            alice,
            env_id="my-env-7f3a",
            base_url="",
            api_key=KEY,
            monthly_token_quota="200000",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    credential = ApiCredential.objects.get(user=alice)
    assert credential.base_url == "https://my-env-7f3a.api.tcloudbasegateway.com/v1/ai/cloudbase"
    assert credential.get_key() == KEY
    assert KEY not in credential.key_encrypted
    assert credential.key_hint == MASK
    assert credential.monthly_token_quota == 200_000
    assert credential.model_choices == ["hy3-preview", "hunyuan-t1"]

    for url in (
        LIST_URL,
        f"{LIST_URL}?q=alice",
        change_url(credential),
        f"/admin/conversations/apicredential/{credential.pk}/history/",
        "/admin/",
    ):
        html = admin_client.get(url).content.decode()
        assert_no_plaintext(html, KEY)
    assert MASK in admin_client.get(LIST_URL).content.decode()
    change_page = admin_client.get(change_url(credential)).content.decode()
    assert MASK in change_page
    # The password box is empty: the form never renders the stored key back.
    assert 'name="api_key" autocomplete="new-password"' in change_page
    assert 'name="api_key" value=' not in change_page
    assert all(KEY not in entry.change_message for entry in LogEntry.objects.all())


def test_typing_a_new_key_rotates_it_and_an_empty_box_keeps_it(admin_client, alice):
    credential = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")

    response = admin_client.post(change_url(credential), form_data(alice, label="kept"))
    assert response.status_code == 302
    credential.refresh_from_db()
    assert (credential.label, credential.get_key(), credential.key_hint) == ("kept", KEY, MASK)

    response = admin_client.post(change_url(credential), form_data(alice, api_key=NEW_KEY))
    assert response.status_code == 302
    credential.refresh_from_db()
    assert (credential.get_key(), credential.key_hint) == (NEW_KEY, NEW_MASK)
    # The next turn of Alice uses the new key.
    assert credentials.resolve(alice).key == NEW_KEY

    for url in (LIST_URL, change_url(credential)):
        html = admin_client.get(url).content.decode()
        assert_no_plaintext(html, KEY, NEW_KEY)
        # The old mask is left only in the audit of the change (a mask, never the key).
        shown = html.split('class="credential-audit"')[0]
        assert NEW_MASK in shown and MASK not in shown


def test_a_refused_form_does_not_echo_the_key(admin_client, alice):
    response = admin_client.post(ADD_URL, form_data(alice, base_url="", api_key=KEY))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Give a base URL or a CloudBase ENV_ID." in html
    assert_no_plaintext(html, KEY)
    assert not ApiCredential.objects.exists()


def test_a_new_credential_needs_a_key(admin_client, alice):
    response = admin_client.post(ADD_URL, form_data(alice))
    assert response.status_code == 200
    assert "A new credential needs its API key." in response.content.decode()
    assert not ApiCredential.objects.exists()


def test_the_instance_default_is_a_credential_without_user(admin_client, alice):
    response = admin_client.post(ADD_URL, form_data(None, api_key=KEY))
    assert response.status_code == 302
    assert ApiCredential.objects.get().user is None
    assert credentials.resolve(alice).key == KEY


def test_allowed_models_are_cleaned_and_always_include_the_default(admin_client, alice):
    models = " hy3-large\n\nhunyuan-t1 \nhy3-large\n"
    response = admin_client.post(ADD_URL, form_data(alice, api_key=KEY, allowed_models=models))
    assert response.status_code == 302
    credential = ApiCredential.objects.get(user=alice)
    assert credential.allowed_models == "hy3-preview\nhy3-large\nhunyuan-t1"
    assert credentials.resolve(alice).allowed_models == ("hy3-preview", "hy3-large", "hunyuan-t1")
    # The list says which models each credential allows; the form says what the list means.
    assert ">hy3-preview, hy3-large, hunyuan-t1<" in admin_client.get(LIST_URL).content.decode()
    page = admin_client.get(change_url(credential)).content.decode()
    assert "The default model is always allowed" in page


def test_a_malformed_allowed_model_is_refused_with_the_field_named(admin_client, alice):
    data = form_data(alice, api_key=KEY, allowed_models="hy3-preview\nhy3 large")
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "is not a model name" in html and "errors field-allowed_models" in html
    assert not ApiCredential.objects.exists()


def test_unticking_active_revokes_the_key(admin_client, alice):
    credential = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    response = admin_client.post(change_url(credential), form_data(alice, is_active=None))
    assert response.status_code == 302
    # No fallback to the instance default: a revoked key means no key.
    assert credentials.resolve(alice) is None


def test_deleting_a_credential_in_the_admin_goes_through_the_services(admin_client, alice, caplog):
    credential = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    with caplog.at_level(logging.INFO, logger="conversations.services"):
        response = admin_client.post(
            f"/admin/conversations/apicredential/{credential.pk}/delete/", {"post": "yes"}
        )
    assert response.status_code == 302
    assert f"Credential {credential.pk} deleted (key {MASK})" in caplog.text
    assert KEY not in caplog.text
    # With no credential of her own left, Alice has the instance default again.
    assert credentials.resolve(alice).key == "sk-default"


# --- Conversations: deleted and edited through the services ------------------------------------
def conversation_url(conversation: Conversation, view: str) -> str:
    return f"/admin/conversations/conversation/{conversation.pk}/{view}/"


async def as_admin(admin: Any, url: str, data: dict[str, Any]) -> Any:
    """POST with Django's test client as `admin`, from the database thread as a view runs."""

    def post() -> Any:
        client = Client()
        client.force_login(admin)
        return client.post(url, data)

    return await db(post)()


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_conversation_in_the_admin_stops_its_reply_and_tells_its_pages(
    alice, gateway, admin_user
):
    await db(give_key)(alice, gateway, "sk-admin-delete")
    conversation = await new_conversation(alice)
    gateway.enqueue(Script(words=2000, token_delay=0.005))
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "long please"})
    deltas = 0
    while deltas < 3:
        deltas += (await receive(sock))["type"] == "delta"

    response = await as_admin(admin_user, conversation_url(conversation, "delete"), {"post": "yes"})
    assert response.status_code == 302
    while (frame := await receive(sock))["type"] == "delta":
        pass
    assert frame == {"type": "deleted"}
    await sock.disconnect()

    # No more tokens are paid for: the gateway sees the hang-up.
    for _ in range(100):
        if gateway.requests[0].disconnected_at is not None:
            break
        await asyncio.sleep(0.01)
    assert gateway.requests[0].disconnected_at is not None
    assert not gateway.requests[0].completed
    await generation.registry.wait(conversation.public_id)
    assert not await Message.objects.filter(conversation_id=conversation.pk).aexists()


@pytest.mark.django_db(transaction=True)
async def test_the_bulk_delete_action_deletes_each_conversation_through_the_services(
    alice, bob, admin_user
):
    mine, theirs, kept = (
        await new_conversation(alice),
        await new_conversation(bob),
        await new_conversation(bob),
    )
    sockets = [await open_socket(user, c.public_id) for user, c in ((alice, mine), (bob, theirs))]
    for sock in sockets:
        await receive(sock)

    response = await as_admin(
        admin_user,
        "/admin/conversations/conversation/",
        {"action": "delete_selected", "_selected_action": [mine.pk, theirs.pk], "post": "yes"},
    )
    assert response.status_code == 302
    for sock in sockets:
        assert await receive(sock) == {"type": "deleted"}
        await sock.disconnect()
    assert [c.pk async for c in Conversation.objects.all()] == [kept.pk]


@pytest.mark.django_db(transaction=True)
async def test_deleting_a_user_in_the_admin_tells_the_pages_of_their_conversations(
    alice, admin_user
):
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    response = await as_admin(admin_user, f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert await receive(sock) == {"type": "deleted"}
    await sock.disconnect()
    assert not await Conversation.objects.aexists()


def test_an_admin_changes_a_conversations_settings_but_cannot_add_one(admin_client, alice):
    conversation = services.conversations.create_conversation(alice, title="Mine")
    response = admin_client.post(
        conversation_url(conversation, "change"),
        {
            "system_prompt": "Be brief.",
            "model": "hy3-large",
            "temperature": "0.5",
            "top_p": "",
            "max_tokens": "300",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.system_prompt, conversation.model, conversation.max_tokens) == (
        "Be brief.",
        "hy3-large",
        300,
    )
    assert (conversation.title, conversation.owner) == ("Mine", alice)
    # A conversation is its owner's: it is started in the chat, not in the admin.
    assert admin_client.get("/admin/conversations/conversation/add/").status_code == 403


def test_messages_are_history_the_admin_reads_but_does_not_change_or_delete(admin_client, alice):
    reply = record_reply(alice, input_tokens=1, output_tokens=1)
    url = f"/admin/conversations/message/{reply.pk}"
    page = admin_client.get(f"{url}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(f"{url}/change/", {"content": "rewritten"}).status_code == 403
    assert admin_client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    listing = admin_client.get("/admin/conversations/message/").content.decode()
    assert "delete_selected" not in listing
    reply.refresh_from_db()
    assert reply.content == "a"


# --- Users with usage --------------------------------------------------------------------------
def test_the_user_list_shows_usage_and_quota_left(admin_client, alice, bob):
    services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=alice).update(monthly_token_quota=10_000)
    services.credentials.set_api_key(bob, key="sk-bob", base_url="https://gw.example/v1")
    ApiCredential.objects.filter(user=bob).update(is_active=False)
    record_reply(alice, input_tokens=1234, output_tokens=766)
    record_reply(alice, input_tokens=5, output_tokens=5, at=usage.month_start() - timedelta(days=1))

    html = admin_client.get("/admin/auth/user/?o=3").content.decode()
    row = html[html.index(">alice<") :].split("</tr>")[0]
    # this month in/out, overall in/out, messages sent, quota left
    for value in ("1,234", "766", "1,239", "771", "2", "8,000"):
        assert f">{value}<" in row, value
    bob_row = html[html.index(">bob<") :].split("</tr>")[0]
    assert "no key (deactivated)" in bob_row
    assert_no_plaintext(html, KEY)


def test_a_users_page_shows_their_usage_and_links_to_their_chart(admin_client, alice):
    record_reply(alice, input_tokens=42, output_tokens=58)
    html = admin_client.get(f"/admin/auth/user/{alice.pk}/change/").content.decode()
    assert "Tokens in, this month:" in html and ">42<" in html
    assert f'href="/admin/usage/?user={alice.pk}"' in html


def test_a_user_can_still_be_deleted_through_the_admin(admin_client, alice):
    record_reply(alice, input_tokens=1, output_tokens=1)
    response = admin_client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not type(alice).objects.filter(pk=alice.pk).exists()


def test_the_user_list_says_who_shares_a_groups_quota(admin_client, alice):
    research = Group.objects.create(name="research")
    research.user_set.add(alice)
    services.credentials.set_api_key(
        None, group=research, key=KEY, base_url="https://gw.example/v1"
    )
    html = admin_client.get("/admin/auth/user/").content.decode()
    row = html[html.index(">alice<") :].split("</tr>")[0]
    assert "shared by the group research" in row


def test_an_admin_gives_many_users_a_credential_at_once(admin_client, alice, bob):
    carol = make_user("carol")
    template = services.credentials.set_api_key(
        None, key=KEY, base_url="https://gw.example/v1", model="hy3-preview", label="Team key"
    )
    ApiCredential.objects.filter(pk=template.pk).update(monthly_token_quota=5000)
    services.credentials.set_api_key(bob, key="sk-bob-old", base_url="https://old.example/v1")
    response = admin_client.post(
        "/admin/auth/user/",
        {
            "action": "assign_credential",
            "_selected_action": [alice.pk, bob.pk],
            "credential": template.pk,
        },
        follow=True,
    )
    assert "2 users now have a credential like “Team key (instance default)” of their own" in (
        response.content.decode()
    )
    for user in (alice, bob):
        credential = credentials.resolve(user)
        assert (credential.key, credential.base_url, credential.monthly_token_quota) == (
            KEY,
            "https://gw.example/v1",
            5000,
        )
        assert credential.user_id == user.pk
    # Bob's old key was replaced, not kept beside the new one; Carol was not selected.
    assert ApiCredential.objects.filter(user=bob).count() == 1
    assert not ApiCredential.objects.filter(user=carol).exists()
    assert_no_plaintext(response.content.decode(), KEY)


def test_assigning_without_choosing_a_credential_says_so_and_changes_nothing(admin_client, alice):
    response = admin_client.post(
        "/admin/auth/user/",
        {"action": "assign_credential", "_selected_action": [alice.pk], "credential": ""},
        follow=True,
    )
    assert "Choose a credential in the list beside the action" in response.content.decode()
    assert not ApiCredential.objects.exists()


def test_the_deactivate_action_revokes_the_selected_credentials(admin_client, alice, bob):
    first = services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    second = services.credentials.set_api_key(bob, key="sk-bob", base_url="https://gw.example/v1")
    response = admin_client.post(
        LIST_URL, {"action": "deactivate", "_selected_action": [first.pk]}, follow=True
    )
    assert "1 credential deactivated" in response.content.decode()
    assert credentials.resolve(alice) is None
    assert credentials.resolve(bob).key == "sk-bob"
    assert ApiCredential.objects.get(pk=second.pk).is_active


def test_a_credential_for_a_user_and_a_group_is_refused_with_a_sentence(admin_client, alice):
    research = Group.objects.create(name="research")
    response = admin_client.post(ADD_URL, form_data(alice, group=research.pk, api_key=KEY))
    assert response.status_code == 200
    assert "A credential belongs to a user or to a group, not to both." in response.content.decode()
    assert not ApiCredential.objects.exists()


def test_an_admin_adds_a_groups_credential(admin_client, alice):
    research = Group.objects.create(name="research")
    research.user_set.add(alice)
    response = admin_client.post(
        ADD_URL, form_data(None, group=research.pk, api_key=KEY, rate_limit_per_minute="30")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = credentials.resolve(alice)
    assert (credential.group_id, credential.rate_limit_per_minute) == (research.pk, 30)


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (401, "The gateway did not accept the API key."),
        (403, "This API key may not use this model or gateway."),
        (404, "The gateway does not offer the model “hy3-preview”."),
    ],
)
def test_the_check_key_action_says_what_the_gateway_answered_never_the_key(
    admin_client, alice, bob, gateway, status, sentence
):
    good = give_key(alice, gateway, KEY)
    bad = give_key(bob, gateway, "sk-refused-0000")
    gateway.side_scripts.extend([Script(text="pong"), Script(status=status)])
    response = admin_client.post(
        LIST_URL, {"action": "check_key", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    html = response.content.decode()
    assert f"Key of “{good}”: The gateway accepted the key; model hy3-preview answered in" in html
    assert f"The check failed: {sentence}" in html
    assert_no_plaintext(html, KEY)
    assert "sk-refused-0000" not in html
    keys = sorted(r.headers["authorization"] for r in gateway.side_requests)
    assert keys == sorted([f"Bearer {KEY}", "Bearer sk-refused-0000"])


# --- Messages ----------------------------------------------------------------------------------
def test_messages_show_tokens_model_and_stop_reason_and_filter_by_user_and_month(
    admin_client, alice, bob
):
    record_reply(alice, input_tokens=111, output_tokens=222)
    last_month = usage.month_start() - timedelta(days=2)
    record_reply(alice, input_tokens=333, output_tokens=444, at=last_month)
    record_reply(bob, input_tokens=555, output_tokens=666)

    html = admin_client.get("/admin/conversations/message/").content.decode()
    for value in ("111", "222", "555", "hy3-preview", "end_turn"):
        assert f">{value}<" in html

    mine = admin_client.get(
        "/admin/conversations/message/", {"conversation__owner__id__exact": alice.pk}
    ).content.decode()
    assert ">111<" in mine and ">333<" in mine and ">555<" not in mine

    month = usage.month_start().strftime("%Y-%m")
    this_month = admin_client.get(
        "/admin/conversations/message/",
        {"conversation__owner__id__exact": alice.pk, "month": month},
    ).content.decode()
    assert ">111<" in this_month and ">333<" not in this_month
    assert "month (UTC)" in this_month


def test_staff_without_permissions_cannot_see_credentials(client):
    staff = make_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(LIST_URL).status_code == 403


def test_the_user_autocomplete_of_the_credential_form_still_works(admin_client, alice, bob):
    record_reply(alice, input_tokens=1, output_tokens=1)
    response = admin_client.get(
        "/admin/autocomplete/",
        {
            "app_label": "conversations",
            "model_name": "apicredential",
            "field_name": "user",
            "term": "ali",
        },
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["alice"]


def test_the_admin_lists_attachments_and_each_persons_storage(
    admin_client, alice, settings, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path},
        },
    }
    services.credentials.set_api_key(alice, key="sk-admin-files", base_url="http://127.0.0.1:9")
    conversation = services.conversations.create_conversation(alice)
    services.attachments.upload(alice, conversation, SimpleUploadedFile("minutes.txt", b"x" * 2048))
    listing = admin_client.get("/admin/conversations/attachment/").content.decode()
    assert "minutes.txt" in listing and "2.0 KB" in listing
    users = admin_client.get("/admin/auth/user/").content.decode()
    assert "files stored" in users.lower() and "2.0 KB" in users


def test_the_context_window_and_prompt_caching_are_set_in_the_admin(admin_client, alice):
    response = admin_client.post(
        ADD_URL,
        form_data(alice, api_key=KEY, context_window="128000", prompt_caching="on"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = ApiCredential.objects.get(user=alice)
    assert (credential.context_window, credential.prompt_caching) == (128_000, True)
    # Left empty: the default window, not an error.
    admin_client.post(change_url(credential), form_data(alice, context_window=""))
    credential.refresh_from_db()
    assert (credential.context_window, credential.prompt_caching) == (200_000, False)
    response = admin_client.post(change_url(credential), form_data(alice, context_window="10"))
    assert response.status_code == 200
    assert "The context window must be between 1,024 and 10,000,000 tokens." in (
        response.content.decode()
    )
    credential.refresh_from_db()
    assert credential.context_window == 200_000


def test_limits_learned_from_the_gateway_are_shown_read_only(admin_client, alice):
    credential = services.credentials.set_api_key(
        alice, key=KEY, base_url="https://gw.example/v1", model="hy3-preview"
    )
    services.credentials.remember_context_limit(credential.pk, "hy3-preview", 128_000)
    html = admin_client.get(change_url(credential)).content.decode()
    assert "hy3-preview: 128,000" in html
    assert 'name="context_limits"' not in html
