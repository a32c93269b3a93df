"""Secrets at rest: encrypted model fields, look-up digests and masking.

Tokens are encrypted with Fernet (AES-128-CBC + HMAC-SHA256). ``RCHAT["ENCRYPTION_KEYS"]``
lists Fernet keys: the first encrypts, every one decrypts, so a key is rotated by
putting a new one first and re-saving rows (``manage.py rchat_rotate_keys``) before
the old one is dropped. Without keys, one is derived from ``SECRET_KEY`` (and
``SECRET_KEY_FALLBACKS`` still decrypt, so rotating Django's key loses nothing).
"""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

from .conf import get_setting
from .exceptions import DecryptionError, RChatConfigurationError

MASK = "••••"
KEY_HINT = "Make a key with: python manage.py rchat_generate_key"


def derive_key(secret):
    """A Fernet key derived from a Django SECRET_KEY (a domain-separated SHA-256)."""
    digest = hashlib.sha256(b"rchat.crypto.v1:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def configured_keys():
    """The Fernet keys in force, first one encrypting; raises on a malformed key."""
    setting = get_setting("ENCRYPTION_KEYS") or []
    if not isinstance(setting, list | tuple):
        raise RChatConfigurationError(
            'RCHAT["ENCRYPTION_KEYS"] must be a list of keys, not '
            f"{type(setting).__name__} (a single key goes in a list of one)."
        )
    keys = list(setting)
    if not keys:
        keys = [derive_key(settings.SECRET_KEY)]
        keys += [derive_key(k) for k in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(keys)


@functools.lru_cache(maxsize=8)
def _fernet(keys):
    fernets = []
    for position, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError) as exc:
            raise RChatConfigurationError(
                f'RCHAT["ENCRYPTION_KEYS"][{position}] is not a Fernet key '
                f"(32 bytes, urlsafe base64). {KEY_HINT}"
            ) from exc
    return MultiFernet(fernets)


def check_keys():
    """Raise ``RChatConfigurationError`` unless every configured key is usable."""
    _fernet(configured_keys())


def encrypt(plaintext):
    return _fernet(configured_keys()).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext):
    try:
        return _fernet(configured_keys()).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            'A stored R-Chat secret cannot be decrypted with RCHAT["ENCRYPTION_KEYS"] '
            "(or SECRET_KEY): was a key removed before rows were re-encrypted?"
        ) from exc


def reencrypt(ciphertext):
    """The same secret encrypted under the first key (used to retire old keys)."""
    return _fernet(configured_keys()).rotate(ciphertext.encode()).decode()


def digest(secret):
    """SHA-256 hex digest for looking a token up by equality.

    Tokens are long random strings issued by R-Chat, so an unkeyed digest leaks
    nothing useful, and it survives a rotation of SECRET_KEY or the Fernet keys.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def mask(secret):
    """Show at most the last 4 characters of a secret, and only of a long one."""
    if not secret:
        return ""
    if len(secret) < 12:
        return MASK
    return MASK + secret[-4:]


def redact(text, *secrets):
    """``text`` with every occurrence of each secret replaced by its mask."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, mask(secret))
    return text


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python code sees the plain text.

    Equality look-ups cannot work on it (each encryption differs): store a
    ``digest()`` beside it for that.
    """

    description = "Text encrypted at rest"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
