"""Management commands: set_api_key (key from stdin only), rotate_encryption_keys and
purge_attachments."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from conversations import credentials, crypto, services
from conversations.demo.script import Script
from conversations.management.commands.set_api_key import Command as SetApiKey
from conversations.models import (
    ApiCredential,
    Attachment,
    CredentialChange,
    Message,
    attachment_storage,
)
from tests.conftest import frames_until, give_key, open_socket, receive
from tests.support.chat import new_conversation
from tests.support.processes import ROOT, process_env

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async

KEY = "sk-from-standard-input-7d2c"
MASK = "sk-…7d2c"


def run(*args: str, stdin: str = "") -> str:
    """Call the real command with `stdin` as its standard input; return what it printed."""
    out = io.StringIO()
    original = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out)
    finally:
        sys.stdin = original
    return out.getvalue()


# --- set_api_key --------------------------------------------------------------------------------
def test_set_api_key_reads_the_key_from_stdin_and_prints_only_its_mask(alice):
    argv = ["set_api_key", "alice", "--env-id", "env-42", "--model", "hy3-preview"]
    output = run(*argv, stdin=KEY + "\n")

    credential = ApiCredential.objects.get(user=alice)
    assert credential.get_key() == KEY
    assert credential.base_url == "https://env-42.api.tcloudbasegateway.com/v1/ai/cloudbase"
    assert credential.default_model == "hy3-preview"
    assert MASK in output and KEY not in output
    assert all(KEY not in arg for arg in argv)


def test_set_api_key_replaces_the_active_key(alice):
    run("set_api_key", "alice", "--base-url", "https://gw.example/v1", stdin="sk-first\n")
    run("set_api_key", "alice", "--base-url", "https://gw.example/v1", stdin=KEY + "\n")
    assert ApiCredential.objects.filter(user=alice).count() == 1
    assert credentials.resolve(alice).key == KEY


def test_set_api_key_for_the_instance_default(alice):
    run(
        "set_api_key",
        "--instance-default",
        "--base-url",
        "https://gw.example/v1",
        "--scheme",
        "x-api-key",
        stdin=KEY,
    )
    default = ApiCredential.objects.get(user=None)
    assert (default.scheme, default.get_key()) == ("x-api-key", KEY)
    assert credentials.resolve(alice).key == KEY


def test_set_api_key_refuses_an_empty_key_and_an_unknown_user(alice):
    with pytest.raises(CommandError, match="empty"):
        run("set_api_key", "alice", "--env-id", "e", stdin="\n")
    with pytest.raises(CommandError, match="No user named"):
        run("set_api_key", "nobody", "--env-id", "e", stdin=KEY)
    assert not ApiCredential.objects.exists()


def test_set_api_key_sets_the_allowed_models_and_always_allows_the_default(alice):
    argv = ["set_api_key", "alice", "--env-id", "e", "--model", "hy3-preview"]
    output = run(*argv, "--allowed-models", " hy3-large,hunyuan-t1,hy3-large", stdin=KEY)

    credential = ApiCredential.objects.get(user=alice)
    # Trimmed, each once, the default model added in front.
    assert credential.allowed_models == "hy3-preview\nhy3-large\nhunyuan-t1"
    assert credentials.resolve(alice).allowed_models == ("hy3-preview", "hy3-large", "hunyuan-t1")
    assert "hy3-preview, hy3-large, hunyuan-t1" in output

    # Run again without the option: the list is kept, as the label and the model are.
    run(*argv, stdin="sk-rotated")
    assert ApiCredential.objects.get(user=alice).allowed_models == credential.allowed_models
    run(*argv, "--allowed-models", "hy3-preview", stdin="sk-rotated")
    assert credentials.resolve(alice).allowed_models == ("hy3-preview",)


def test_set_api_key_says_whether_the_models_take_images_and_pdfs(alice):
    argv = ["set_api_key", "alice", "--env-id", "e"]
    output = run(*argv, stdin=KEY)
    assert "images yes, PDFs yes" in output  # the protocol carries both
    run(*argv, "--no-vision", "--no-pdf", stdin=KEY)
    credential = credentials.resolve(alice)
    assert (credential.vision, credential.pdf) == (False, False)
    run(*argv, stdin=KEY)  # omitted: kept
    assert ApiCredential.objects.get(user=alice, is_active=True).vision is False
    output = run(*argv, "--vision", stdin=KEY)
    assert "images yes, PDFs no" in output


def test_set_api_key_sets_the_context_window_and_prompt_caching(alice):
    argv = ["set_api_key", "alice", "--env-id", "e"]
    output = run(*argv, stdin=KEY)
    assert "context window 200000 tokens, prompt caching off" in output  # the defaults
    run(*argv, "--context-window", "128000", "--prompt-caching", stdin=KEY)
    credential = credentials.resolve(alice)
    assert (credential.context_window, credential.prompt_caching) == (128_000, True)
    run(*argv, stdin=KEY)  # omitted: kept
    assert credentials.resolve(alice).context_window == 128_000
    output = run(*argv, "--no-prompt-caching", stdin=KEY)
    assert "context window 128000 tokens, prompt caching off" in output
    with pytest.raises(CommandError, match="context window must be between"):
        run(*argv, "--context-window", "10", stdin=KEY)
    assert credentials.resolve(alice).context_window == 128_000
    changes = CredentialChange.objects.filter(credential__user=alice).order_by("id")
    assert [c.changes.get("context_window") for c in changes][1] == [200_000, 128_000]
    # The run that changed nothing left no record.
    assert [c.changes.get("prompt_caching") for c in changes][1:] == [
        [False, True],
        [True, False],
    ]


def test_set_api_key_for_a_group_gives_its_members_the_key(alice):
    research = Group.objects.create(name="research")
    research.user_set.add(alice)
    output = run("set_api_key", "--group", "research", "--env-id", "env-7", stdin=KEY + "\n")
    credential = ApiCredential.objects.get(group=research)
    assert credential.user is None and credential.get_key() == KEY
    assert "the group research" in output and MASK in output and KEY not in output
    assert credentials.resolve(alice).key == KEY
    # Again: the group's active credential is replaced, not doubled.
    run("set_api_key", "--group", "research", "--env-id", "env-7", stdin="sk-second\n")
    assert ApiCredential.objects.get(group=research).get_key() == "sk-second"


def test_set_api_key_refuses_an_unknown_group_and_two_owners(alice):
    with pytest.raises(CommandError, match="No group named 'reserch'"):
        run("set_api_key", "--group", "reserch", "--env-id", "e", stdin=KEY)
    Group.objects.create(name="research")
    with pytest.raises(CommandError, match="one of them"):
        run("set_api_key", "alice", "--group", "research", "--env-id", "e", stdin=KEY)
    with pytest.raises(CommandError, match="one of them"):
        run("set_api_key", "--group", "research", "--instance-default", "--env-id", "e", stdin=KEY)
    # A group that does not exist is not made by a typo.
    assert list(Group.objects.values_list("name", flat=True)) == ["research"]
    assert not ApiCredential.objects.exists()


def test_set_api_key_check_saves_a_key_the_gateway_accepts_and_says_so(alice, gateway):
    gateway.side_scripts.append(Script(text="pong"))
    argv = ["set_api_key", "alice", "--base-url", gateway.base_url, "--model", "hy3-preview"]
    output = run(*argv, "--check", stdin=KEY + "\n")
    assert "The gateway accepted the key; model hy3-preview answered in" in output
    assert KEY not in output
    assert gateway.side_requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert credentials.resolve(alice).key == KEY


@pytest.mark.parametrize(
    ("status", "sentence"),
    [(401, "did not accept the API key"), (403, "may not use this model"), (404, "does not offer")],
)
def test_set_api_key_check_refused_exits_non_zero_and_keeps_the_old_key(
    alice, gateway, status, sentence
):
    give_key(alice, gateway, "sk-working-key")
    gateway.side_scripts.append(Script(status=status))
    with pytest.raises(CommandError) as refused:
        run("set_api_key", "alice", "--base-url", gateway.base_url, "--check", stdin=KEY)
    message = str(refused.value)
    assert sentence in message and "Nothing was saved." in message and KEY not in message
    assert credentials.resolve(alice).key == "sk-working-key"
    # The check used the model of the credential it would replace.
    assert gateway.side_requests[0].body["model"] == "hy3-preview"


def test_set_api_key_check_exits_non_zero_in_a_real_process(alice, gateway):
    """Exit status and output as a shell sees them."""
    gateway.side_scripts.append(Script(status=401))
    env = {**os.environ, **process_env()}
    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "set_api_key",
            "alice",
            "--base-url",
            gateway.base_url,
            "--check",
        ],
        input=KEY + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "The gateway did not accept the API key" in completed.stderr
    assert KEY not in completed.stdout + completed.stderr


@pytest.mark.parametrize(
    "models", ["", "hy3-large,,hunyuan-t1", "hy3-large,", "hy3 large", "m" * 101]
)
def test_set_api_key_refuses_a_malformed_model_list_and_stores_nothing(alice, models):
    with pytest.raises(CommandError, match="model name"):
        run("set_api_key", "alice", "--env-id", "e", "--allowed-models", models, stdin=KEY)
    assert not ApiCredential.objects.exists()


def test_the_key_can_never_be_given_on_the_command_line():
    parser = SetApiKey().create_parser("manage.py", "set_api_key")
    # No option or positional argument could carry a key...
    destinations = {action.dest for action in parser._actions}
    assert not {d for d in destinations if "key" in d or "token" in d or "secret" in d}
    # ... and one that tries is refused.
    with pytest.raises(CommandError):
        parser.parse_args(["alice", "--env-id", "e", "--key", KEY])
    with pytest.raises(CommandError):
        parser.parse_args(["alice", KEY, "--env-id", "e"])


# --- rotate_encryption_keys ----------------------------------------------------------------------
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


async def test_rotation_moves_every_key_to_the_new_encryption_key(alice, bob, gateway, settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    await db(give_key)(alice, gateway, "sk-alice-rotating")
    await db(give_key)(bob, gateway, "sk-bob-rotating")
    before = {c.pk: c async for c in ApiCredential.objects.all()}

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    output = await db(run)("rotate_encryption_keys")
    assert "Re-encrypted 2 API keys" in output

    # The old key is gone: everything still decrypts, and a turn works.
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    async for credential in ApiCredential.objects.all():
        old = before[credential.pk]
        assert credential.key_encrypted != old.key_encrypted
        assert credential.updated_at == old.updated_at  # not a new credential
        assert credential.key_hint == old.key_hint
    assert (await db(credentials.resolve)(alice)).key == "sk-alice-rotating"

    conversation = await new_conversation(alice)
    sock = await open_socket(alice, conversation.public_id)
    await receive(sock)
    await sock.send_json_to({"type": "send", "content": "still works?"})
    assert (await frames_until(sock, "done"))[-1]["status"] == "complete"
    await sock.disconnect()
    assert gateway.requests[0].headers["authorization"] == "Bearer sk-alice-rotating"


def test_without_rotation_dropping_the_old_key_loses_the_stored_keys(alice, settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    services.credentials.set_api_key(alice, key=KEY, base_url="https://gw.example/v1")
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(crypto.DecryptionError):
        credentials.resolve(alice)


def test_rotation_reports_keys_it_cannot_decrypt_and_rotates_the_rest(alice, bob, settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    services.credentials.set_api_key(alice, key="sk-alice", base_url="https://gw.example/v1")
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    services.credentials.set_api_key(bob, key="sk-bob", base_url="https://gw.example/v1")
    lost = ApiCredential.objects.get(user=alice)

    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, KEY_B]
    with pytest.raises(CommandError) as failed:
        run("rotate_encryption_keys")
    assert f"credential ids: {lost.pk}" in str(failed.value)
    assert "sk-alice" not in str(failed.value)

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert credentials.resolve(bob).key == "sk-bob"


def test_purge_attachments_removes_only_files_never_sent_for_a_day(alice, settings):
    # The daily command (docs/deploy.md): an upload left unsent for more than
    # CHAT_ATTACHMENT_UNSENT_HOURS goes, row and file; a newer one and a sent one stay.
    settings.CHAT_ATTACHMENT_UNSENT_HOURS = 24
    conversation = services.conversations.create_conversation(alice)

    def upload(name: str) -> Attachment:
        return services.attachments.upload(
            alice, conversation, SimpleUploadedFile(name, b"some text\n")
        )

    stale, fresh, sent = upload("stale.txt"), upload("fresh.txt"), upload("sent.txt")
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="Here"
    )
    Attachment.objects.filter(pk=sent.pk).update(message=question)
    day_ago = timezone.now() - timedelta(hours=25)
    Attachment.objects.filter(pk__in=[stale.pk, sent.pk]).update(created_at=day_ago)

    out = io.StringIO()
    call_command("purge_attachments", stdout=out)

    assert out.getvalue().strip() == "Removed 1 attachment(s) that were never sent."
    assert sorted(Attachment.objects.values_list("name", flat=True)) == ["fresh.txt", "sent.txt"]
    storage = attachment_storage()
    assert not storage.exists(stale.file.name)
    assert storage.exists(fresh.file.name) and storage.exists(sent.file.name)
