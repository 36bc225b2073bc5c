"""Encryption of API keys at rest (Fernet; the first configured key encrypts, all decrypt)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _current() -> MultiFernet:
    # Keyed on the tuple so a settings override (tests, rotation) takes effect at once.
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        # Never include the token: it is ciphertext of a secret.
        raise DecryptionError(
            "A stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt with the first (newest) key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "A stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS."
        ) from exc


def mask(secret: str) -> str:
    """What people may see of a key: a hint to recognise it, never enough to use it."""
    secret = secret.strip()
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 4 else "…"
    return f"{secret[:3]}…{secret[-4:]}"
