"""Encryption of API keys at rest, and settings that refuse to run without a key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from conversations import crypto

BASE_DIR = Path(__file__).resolve().parent.parent
OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_a_key_round_trips_and_its_ciphertext_reveals_nothing(settings):
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    token = crypto.encrypt("sk-secret-value")
    assert crypto.decrypt(token) == "sk-secret-value"
    assert "secret" not in token
    # A fresh IV each time: equal keys do not give equal ciphertexts.
    assert crypto.encrypt("sk-secret-value") != token


def test_the_first_key_encrypts_and_every_key_decrypts(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    old_token = crypto.encrypt("sk-1")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    assert crypto.decrypt(old_token) == "sk-1"
    new_token = crypto.encrypt("sk-2")
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert crypto.decrypt(new_token) == "sk-2"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(old_token)


def test_rotate_re_encrypts_with_the_first_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    token = crypto.encrypt("sk-3")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    rotated = crypto.rotate(token)
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert crypto.decrypt(rotated) == "sk-3"


def test_an_undecryptable_token_raises_without_echoing_it(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    token = crypto.encrypt("sk-4")
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    for operation in (crypto.decrypt, crypto.rotate):
        with pytest.raises(crypto.DecryptionError) as failed:
            operation(token)
        assert token not in str(failed.value)
        assert "FIELD_ENCRYPTION_KEYS" in str(failed.value)


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-ant-api03-abcdefghijklmnop-a1b2", "sk-…a1b2"),
        ("  sk-abcdefgh-a1b2\n", "sk-…a1b2"),
        ("abcdefg", "…fg"),
        ("abc", "…"),
    ],
)
def test_the_mask_shows_too_little_to_use_the_key(secret, masked):
    assert crypto.mask(secret) == masked


# --- Settings ----------------------------------------------------------------------------------
def manage_check(**environment: str) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("FIELD_ENCRYPTION_KEYS", "DEBUG", "SECRET_KEY")
    }
    env.update(environment)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_encryption_keys():
    result = manage_check(DEBUG="0", SECRET_KEY="a-production-secret-key")
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stderr
    assert "Fernet.generate_key()" in result.stderr  # says how to make one


def test_a_malformed_encryption_key_is_refused_at_start_without_echoing_it():
    result = manage_check(
        DEBUG="0",
        SECRET_KEY="a-production-secret-key",
        FIELD_ENCRYPTION_KEYS=f"{NEW},not-a-key-xyz",
    )
    assert result.returncode != 0
    assert "key number 2 is not a Fernet key" in result.stderr
    assert "not-a-key-xyz" not in result.stderr and NEW not in result.stderr


def test_production_starts_with_keys_and_development_derives_one():
    production = manage_check(
        DEBUG="0", SECRET_KEY="a-production-secret-key", FIELD_ENCRYPTION_KEYS=f" {NEW} , {OLD}"
    )
    assert production.returncode == 0, production.stderr
    development = manage_check(DEBUG="1")
    assert development.returncode == 0, development.stderr
    assert "development key" in development.stderr
