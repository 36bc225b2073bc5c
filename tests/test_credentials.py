"""Whose key answers whom, edits taking effect at once, and the plaintext key staying in memory."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser, Group
from django.db import connection
from django.test import Client

from conversations import credentials, services
from conversations.demo.script import Script
from conversations.models import ApiCredential, Conversation
from tests.conftest import frames_until, give_key, make_user, open_socket, receive
from tests.support.chat import new_conversation, stored

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


def stream_requests(gateway) -> list:
    """Requests for replies (a conversation's first reply is followed by a title request)."""
    return [r for r in gateway.requests if r.body.get("stream")]


async def one_turn(user, content: str = "hello") -> list[dict]:
    conversation = await new_conversation(user)
    sock = await open_socket(user, conversation.public_id)
    received = [await receive(sock)]
    await sock.send_json_to({"type": "send", "content": content})
    received += await frames_until(sock, "done")
    await sock.disconnect()
    return received


async def test_each_user_reaches_the_gateway_with_their_own_key_and_others_get_the_default(
    alice, bob, gateway
):
    carol = await db(make_user)("carol")
    await db(give_key)(alice, gateway, "sk-alice-own-1111")
    await db(give_key)(bob, gateway, "sk-bob-own-2222")
    await db(give_key)(None, gateway, "sk-instance-default-3333")

    for user, content in ((alice, "from alice"), (bob, "from bob"), (carol, "from carol")):
        assert (await one_turn(user, content))[-1]["status"] == "complete"

    seen = {
        r.body["messages"][-1]["content"]: r.headers["authorization"]
        for r in stream_requests(gateway)
    }
    assert seen == {
        "from alice": "Bearer sk-alice-own-1111",
        "from bob": "Bearer sk-bob-own-2222",
        "from carol": "Bearer sk-instance-default-3333",
    }
    # Every request of a person, titles included, carries that person's key.
    for request in gateway.requests:
        assert request.headers["authorization"] in seen.values()


async def test_a_deactivated_key_is_refused_and_does_not_fall_back_to_the_default(alice, gateway):
    await db(give_key)(alice, gateway, "sk-alice")
    await db(give_key)(None, gateway, "sk-default")
    await ApiCredential.objects.filter(user=alice).aupdate(is_active=False)
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "hi"})
    error = await receive(sock)
    await sock.disconnect()
    assert error["type"] == "error" and error["code"] == "no_api_key"
    assert "administrator" in error["message"]
    assert gateway.requests == []
    assert await stored(conversation) == []


async def test_without_any_key_the_turn_is_refused_with_a_clear_error(alice, gateway):
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "regenerate"})
    error = await receive(sock)
    await sock.disconnect()
    assert error["code"] == "no_api_key" and "API key" in error["message"]
    assert gateway.requests == []


async def test_a_key_changed_between_two_turns_is_used_by_the_second(alice, gateway):
    await db(give_key)(alice, gateway, "sk-before-edit")
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "first"})
    await frames_until(sock, "done")

    await db(give_key)(alice, gateway, "sk-after-edit")
    await sock.send_json_to({"type": "send", "content": "second"})
    await frames_until(sock, "done")
    await sock.disconnect()

    first, second = stream_requests(gateway)
    assert first.headers["authorization"] == "Bearer sk-before-edit"
    assert second.headers["authorization"] == "Bearer sk-after-edit"


async def test_a_credential_edited_in_the_admin_takes_effect_on_the_next_turn(
    alice, gateway, admin_user
):
    credential = await db(give_key)(alice, gateway, "sk-old-key", scheme="x-api-key")
    await one_turn(alice)

    def edit_in_admin() -> None:
        client = Client()
        client.force_login(admin_user)
        response = client.post(
            f"/admin/conversations/apicredential/{credential.pk}/change/",
            {
                "user": alice.pk,
                "label": "",
                "is_active": "on",
                "scheme": "bearer",
                "base_url": gateway.base_url,
                "default_model": "hy3-preview",
                "allowed_models": "",
                "api_key": "sk-new-key",
            },
        )
        assert response.status_code == 302

    await db(edit_in_admin)()
    await one_turn(alice)
    before, after = stream_requests(gateway)
    assert before.headers["x-api-key"] == "sk-old-key" and "authorization" not in before.headers
    assert (
        after.headers["authorization"] == "Bearer sk-new-key" and "x-api-key" not in after.headers
    )


async def test_an_unreadable_stored_key_is_a_clear_error_not_a_crash(alice, gateway, settings):
    await db(give_key)(alice, gateway, "sk-alice")
    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "hi"})
    error = await receive(sock)
    await sock.disconnect()
    assert error["code"] == "api_key_unreadable" and "administrator" in error["message"]
    assert gateway.requests == []


# --- The plaintext key stays in memory -------------------------------------------------------
SECRET = "sk-never-stored-in-clear-5b8e1f"


def database_text() -> bytes:
    """Everything the database holds: on SQLite the bytes of its files (the write-ahead log
    included), on PostgreSQL every text column of every table."""
    if connection.vendor == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        files = [name, name.with_name(name.name + "-wal"), name.with_name(name.name + "-journal")]
        # Read by another process: closing a descriptor of the database file in this one
        # would drop every POSIX lock its open SQLite connections hold on it (they are
        # per process), and another process could then delete the WAL under them.
        return subprocess.run(
            ["cat", *[str(path) for path in files if path.exists()]],
            capture_output=True,
            check=True,
        ).stdout
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'tsvector')"
        )
        columns: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            columns.setdefault(table, []).append(column)
        values: list[str] = []
        for table, names in columns.items():
            cursor.execute(
                "SELECT {} FROM {}".format(
                    ", ".join(f"{connection.ops.quote_name(c)}::text" for c in names),
                    connection.ops.quote_name(table),
                )
            )
            values += [str(value) for row in cursor.fetchall() for value in row]
        return "\n".join(values).encode()


async def test_the_plaintext_key_is_in_no_frame_log_page_or_database_byte(
    alice, gateway, caplog, admin_user
):
    # Everything at DEBUG, the SDK and HTTP libraries included.
    for name in ("", "anthropic", "httpx", "httpx2", "httpcore", "conversations", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    credential = await db(give_key)(alice, gateway, SECRET)
    gateway.enqueue(Script(text="An answer."), Script(text="A title"))
    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    frames = [await receive(sock)]
    await sock.send_json_to({"type": "send", "content": "hello"})
    frames += await frames_until(sock, "done")
    await sock.disconnect()

    assert gateway.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(frames)

    assert {"anthropic", "conversations"} <= {r.name.split(".")[0] for r in caplog.records}
    assert SECRET not in caplog.text  # messages, arguments and tracebacks, formatted
    assert all(SECRET not in record.getMessage() for record in caplog.records)

    def pages() -> list[tuple[str, int, str]]:
        """Every page the user and an administrator can open about this key's owner."""
        c = conversation.public_id
        client = Client()
        client.force_login(alice)
        admin = Client()
        admin.force_login(admin_user)
        urls = {
            client: [
                "/",
                "/conversations/",
                "/search/?q=hello",
                f"/c/{c}/",
                f"/c/{c}/messages/",
                f"/c/{c}/settings/",
                f"/c/{c}/delete/",
                f"/c/{c}/export.md",
                f"/c/{c}/export.json",
            ],
            admin: [
                "/admin/",
                "/admin/usage/",
                f"/admin/usage/?user={alice.pk}",
                "/admin/conversations/apicredential/",
                "/admin/conversations/apicredential/?q=sk",
                f"/admin/conversations/apicredential/{credential.pk}/change/",
                f"/admin/conversations/apicredential/{credential.pk}/delete/",
                f"/admin/conversations/apicredential/{credential.pk}/history/",
                "/admin/conversations/conversation/",
                f"/admin/conversations/conversation/{conversation.pk}/change/",
                "/admin/conversations/message/",
                "/admin/auth/user/",
                f"/admin/auth/user/{alice.pk}/change/",
            ],
        }
        return [
            (url, response.status_code, response.content.decode())
            for who, paths in urls.items()
            for url in paths
            for response in [who.get(url)]
        ]

    seen = await db(pages)()
    assert [(url, status) for url, status, _ in seen if status != 200] == []
    assert [url for url, _, body in seen if SECRET in body] == []
    # The mask is there, so the pages were the right ones.
    assert credential.key_hint and any(credential.key_hint in body for _, _, body in seen)

    on_disk = await db(database_text)()
    stored_row = await ApiCredential.objects.aget(pk=credential.pk)
    # The file really holds the credential (so the search below means something) ...
    assert stored_row.key_encrypted.encode() in on_disk
    # ... but only encrypted.
    assert SECRET.encode() not in on_disk


def test_resolve_returns_the_plaintext_only_in_memory(alice):
    services.credentials.set_api_key(alice, key=SECRET, base_url="https://gw.example/v1")
    credential = credentials.resolve(alice)
    assert credential.key == SECRET
    # The dataclass keeps the key out of its repr, so it cannot slip into a log line.
    assert SECRET not in repr(credential)


def test_resolve_takes_the_newest_active_own_key_then_the_newest_active_default(alice):
    bob = make_user("bob")

    def credential(user, key: str, *, active: bool = True) -> ApiCredential:
        row = ApiCredential(user=user, base_url="https://gw.example/v1", default_model="m")
        row.set_key(key)
        row.is_active = active
        return services.credentials.save_credential(row)

    credential(None, "sk-default-old")
    credential(None, "sk-default-new")
    credential(None, "sk-default-off", active=False)
    credential(alice, "sk-alice-old")
    credential(alice, "sk-alice-new")
    credential(alice, "sk-alice-off", active=False)
    assert credentials.resolve(alice).key == "sk-alice-new"
    # Bob has none of his own, a visitor is nobody: both get the newest active default.
    assert credentials.resolve(bob).key == "sk-default-new"
    assert credentials.resolve(AnonymousUser()).key == "sk-default-new"
    resolved = credentials.resolve(alice)
    row = ApiCredential.objects.get(pk=resolved.credential_id)
    # The row comes back as the ORM would read it: typed values, not raw column text.
    assert (resolved.last_used_at, resolved.allowed_models) == (row.last_used_at, ("m",))
    ApiCredential.objects.filter(user=alice, is_active=True).update(is_active=False)
    # Only revoked keys of her own: no key at all, not the default.
    assert credentials.resolve(alice) is None


# --- Allowed models -------------------------------------------------------------------------
async def answered_without_the_gateway(user, conversation, content: str, client_id="") -> None:
    """A stored exchange, as if a reply had been written (no request to the gateway)."""
    start = await services.events.call(
        services.turns.start_turn, user, conversation, content, client_id
    )
    outcome = services.replies.Outcome(
        status="complete", content="An answer.", stop_reason="end_turn"
    )
    await services.events.call(services.replies.finish_reply, start.plan, outcome)


async def test_a_stored_model_the_key_does_not_allow_is_refused_for_every_kind_of_turn(
    alice, gateway
):
    await db(give_key)(alice, gateway, "sk-models", model="hy3-preview")
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview\nhy3-large")
    conversation = await new_conversation(alice, model="hy3-large")
    await answered_without_the_gateway(alice, conversation, "first question")
    # The administrator takes hy3-large away; the conversation still names it.
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview")

    def rows(messages):
        return [(m.pk, m.content, m.status, m.parent_id, m.shown_child_id) for m in messages]

    before = rows(await stored(conversation))
    question = (await stored(conversation))[0]
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    for frame in (
        {"type": "send", "content": "second question", "client_id": "c-2"},
        {"type": "regenerate"},
        {"type": "edit", "message_id": str(question.public_id), "content": "first, again"},
    ):
        await sock.send_json_to(frame)
        error = await receive(sock)
        assert error["type"] == "error" and error["code"] == "model_not_allowed", frame
        assert "message_id" not in error
        # The sentence names the refused model and the ones that may be used.
        assert "hy3-large" in error["message"] and "hy3-preview" in error["message"]

    assert rows(await stored(conversation)) == before
    assert gateway.requests == []

    # Back on an allowed model (here the key's default), the same conversation is answered.
    await Conversation.objects.filter(pk=conversation.pk).aupdate(model="")
    await sock.send_json_to({"type": "send", "content": "second question"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()
    assert [r.body["model"] for r in stream_requests(gateway)] == ["hy3-preview"]


async def test_an_empty_allowed_list_allows_the_default_model_only(alice, gateway):
    await db(give_key)(alice, gateway, "sk-models", model="hy3-preview")
    conversation = await new_conversation(alice, model="hy3-large")
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "hello"})
    error = await receive(sock)
    await sock.disconnect()
    assert error["code"] == "model_not_allowed"
    assert await stored(conversation) == []
    assert gateway.requests == []


async def test_a_resend_of_a_stored_question_is_still_answered_with_the_stored_message(
    alice, gateway
):
    # A page resending after a reconnect must learn its question was stored, not be refused.
    await db(give_key)(alice, gateway, "sk-models", model="hy3-preview")
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview\nhy3-large")
    conversation = await new_conversation(alice, model="hy3-large")
    await answered_without_the_gateway(alice, conversation, "question", client_id="c-1")
    await ApiCredential.objects.filter(user=alice).aupdate(allowed_models="hy3-preview")
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "question", "client_id": "c-1"})
    echo = await receive(sock)
    await sock.disconnect()
    assert echo["type"] == "message" and echo["message"]["client_id"] == "c-1"
    assert len(await stored(conversation)) == 2
    assert gateway.requests == []


# --- Groups ------------------------------------------------------------------------------------
def group_with(name: str, *members) -> Group:
    group = Group.objects.create(name=name)
    group.user_set.add(*members)
    return group


def test_a_person_uses_their_own_key_else_their_groups_else_the_default(alice, bob):
    carol = make_user("carol")
    research = group_with("research", alice, bob)
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    services.credentials.set_api_key(
        None, group=research, key="sk-research", base_url="https://gw.example/v1"
    )
    services.credentials.set_api_key(alice, key="sk-alice", base_url="https://gw.example/v1")

    assert credentials.resolve(alice).key == "sk-alice"
    assert credentials.resolve(bob).key == "sk-research"
    assert credentials.resolve(carol).key == "sk-default"
    shared = credentials.resolve(bob)
    assert (shared.group_id, shared.user_id) == (research.pk, None)
    # Setting the default again leaves the group's credential alone, and the reverse.
    services.credentials.set_api_key(None, key="sk-default-2", base_url="https://gw.example/v1")
    assert credentials.resolve(bob).key == "sk-research"
    assert credentials.resolve(carol).key == "sk-default-2"


def test_of_several_groups_the_one_whose_name_sorts_first_wins(alice):
    research = group_with("1-research", alice)
    everyone = group_with("2-everyone", alice)
    # A group of hers without a key sorts first: it is passed over.
    group_with("0-no-key", alice)
    # The research key is the older one: the rule is the name, not the age.
    services.credentials.set_api_key(
        None, group=research, key="sk-research", base_url="https://gw.example/v1"
    )
    services.credentials.set_api_key(
        None, group=everyone, key="sk-everyone", base_url="https://gw.example/v1"
    )
    assert credentials.resolve(alice).key == "sk-research"
    ApiCredential.objects.filter(group=research).update(is_active=False)
    # One of her groups was revoked, another still has an active key: that one answers.
    assert credentials.resolve(alice).key == "sk-everyone"


def test_a_revoked_group_key_does_not_fall_back_to_the_default(alice, bob):
    research = group_with("research", alice)
    services.credentials.set_api_key(None, key="sk-default", base_url="https://gw.example/v1")
    services.credentials.set_api_key(
        None, group=research, key="sk-research", base_url="https://gw.example/v1"
    )
    services.credentials.deactivate_credentials(ApiCredential.objects.filter(group=research))
    assert credentials.resolve(alice) is None
    assert credentials.resolve(bob).key == "sk-default"
    # Out of the group, she is someone who was never given a key: the default answers.
    research.user_set.remove(alice)
    assert credentials.resolve(alice).key == "sk-default"


def test_a_credential_cannot_belong_to_a_user_and_a_group(alice):
    research = group_with("research", alice)
    with pytest.raises(services.ServiceError) as refused:
        services.credentials.set_api_key(
            alice, group=research, key="sk", base_url="https://gw.example/v1"
        )
    assert refused.value.code == "two_owners"
    assert ApiCredential.objects.count() == 0


async def test_a_group_members_turn_reaches_the_gateway_with_the_groups_key(alice, bob, gateway):
    research = await db(group_with)("research", alice, bob)
    await db(services.credentials.set_api_key)(
        None, group=research, key="sk-research-shared", base_url=gateway.base_url
    )
    for user in (alice, bob):
        assert (await one_turn(user, f"from {user.username}"))[-1]["status"] == "complete"
    assert {r.headers["authorization"] for r in stream_requests(gateway)} == {
        "Bearer sk-research-shared"
    }
