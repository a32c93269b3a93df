"""Secrets at rest: encrypted columns, key rotation, digests, masking."""

import hashlib
from io import StringIO

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from rchat import crypto
from rchat.exceptions import DecryptionError, RChatConfigurationError
from rchat.models import Credential
from tests.factories import CredentialFactory

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()

TOKEN = "cdt_live_7a1f3e9b2c4d5e6f7a8b"
SIGNATURE = "sig_live_0b9c8d7e6f5a4b3c2d1e"


def use_keys(settings, *keys):
    settings.RCHAT = {**settings.RCHAT, "ENCRYPTION_KEYS": list(keys)}


def raw_secrets(pk):
    """The three secret columns exactly as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token, signature_token, previous_signature_token, signature_digest "
            "FROM rchat_credential WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()


def fernet_reads(key, ciphertext):
    try:
        Fernet(key).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


@pytest.mark.django_db
def test_tokens_are_encrypted_in_the_database(settings):
    use_keys(settings, KEY_A)
    credential = CredentialFactory(token=TOKEN, signature_token=SIGNATURE)

    token, signature, previous, digest = raw_secrets(credential.pk)

    assert TOKEN not in token
    assert SIGNATURE not in signature
    assert fernet_reads(KEY_A, token)
    assert fernet_reads(KEY_A, signature)
    assert previous == ""
    # The digest is what a webhook is looked up by; it is not the token either.
    assert digest == hashlib.sha256(SIGNATURE.encode()).hexdigest()
    credential.refresh_from_db()
    assert (credential.token, credential.signature_token) == (TOKEN, SIGNATURE)


@pytest.mark.django_db
def test_a_credential_is_found_by_the_digest_of_its_signature_token():
    credential = CredentialFactory(signature_token=SIGNATURE)
    CredentialFactory()

    found = Credential.objects.get(signature_digest=crypto.digest(SIGNATURE))

    assert found == credential
    assert found.signature_token == SIGNATURE


@pytest.mark.django_db
def test_the_same_token_encrypts_differently_each_time(settings):
    use_keys(settings, KEY_A)
    one = CredentialFactory(token=TOKEN)
    two = CredentialFactory(token=TOKEN)

    assert raw_secrets(one.pk)[0] != raw_secrets(two.pk)[0]


@pytest.mark.django_db
def test_key_rotation_new_key_first_then_rchat_rotate_keys_retires_the_old_one(settings):
    use_keys(settings, KEY_A)
    credential = CredentialFactory(token=TOKEN, signature_token=SIGNATURE)

    # Step 1: a new key goes first; rows written under A still read.
    use_keys(settings, KEY_B, KEY_A)
    assert Credential.objects.get(pk=credential.pk).token == TOKEN
    assert fernet_reads(KEY_A, raw_secrets(credential.pk)[0])

    # Step 2: re-encrypt every row under B.
    call_command("rchat_rotate_keys", stdout=(out := StringIO()))
    assert out.getvalue().splitlines()[-1] == "Re-encrypted 1 credential(s) with the first key."
    token, signature, _, _ = raw_secrets(credential.pk)
    assert fernet_reads(KEY_B, token)
    assert not fernet_reads(KEY_A, token)
    assert fernet_reads(KEY_B, signature)

    # Step 3: A is removed; B alone reads everything.
    use_keys(settings, KEY_B)
    fresh = Credential.objects.get(pk=credential.pk)
    assert (fresh.token, fresh.signature_token) == (TOKEN, SIGNATURE)


@pytest.mark.django_db
def test_rotation_rewrites_the_previous_signature_token_too(settings):
    use_keys(settings, KEY_A)
    credential = CredentialFactory(
        token=TOKEN, signature_token=SIGNATURE, previous_signature_token="sig_old_1234567890"
    )
    use_keys(settings, KEY_B, KEY_A)
    call_command("rchat_rotate_keys", stdout=StringIO())

    use_keys(settings, KEY_B)
    assert Credential.objects.get(pk=credential.pk).previous_signature_token == (
        "sig_old_1234567890"
    )


@pytest.mark.django_db
def test_a_removed_key_gives_a_clear_decryption_error(settings):
    use_keys(settings, KEY_A)
    credential = CredentialFactory(token=TOKEN)
    use_keys(settings, KEY_B)

    with pytest.raises(DecryptionError) as caught:
        Credential.objects.get(pk=credential.pk)

    assert "cannot be decrypted" in str(caught.value)
    assert "ENCRYPTION_KEYS" in str(caught.value)
    assert "was a key removed" in str(caught.value)


@pytest.mark.django_db
def test_rotate_keys_rewrites_what_it_can_and_fails_naming_the_unreadable_rows(settings):
    """One row under a lost key does not stop the others; the exit is non-zero."""
    use_keys(settings, KEY_A)
    readable = CredentialFactory(name="readable", token=TOKEN)
    use_keys(settings, KEY_C)
    lost = CredentialFactory(name="lost")

    use_keys(settings, KEY_B, KEY_A)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("rchat_rotate_keys", stdout=out, stderr=err)

    assert str(caught.value) == (
        f"Re-encrypted 1 of 2 credential(s); 1 cannot be decrypted with the configured keys "
        f"(#{lost.pk}): put back the key they were written with, then run this command again."
    )
    assert out.getvalue().splitlines() == ["[1/2] readable"]
    assert err.getvalue().splitlines() == [f"[2/2] credential #{lost.pk}: cannot be decrypted"]
    use_keys(settings, KEY_B)
    assert Credential.objects.get(pk=readable.pk).token == TOKEN


@pytest.mark.django_db
def test_rotate_keys_refuses_to_start_with_a_malformed_key(settings):
    use_keys(settings, KEY_A)
    credential = CredentialFactory(token=TOKEN)
    before = raw_secrets(credential.pk)
    use_keys(settings, "not-a-key", KEY_A)

    with pytest.raises(RChatConfigurationError, match=r'ENCRYPTION_KEYS"\]\[0\] is not a Fernet'):
        call_command("rchat_rotate_keys", stdout=StringIO())

    assert raw_secrets(credential.pk) == before


@pytest.mark.django_db
def test_without_keys_secret_key_is_used_and_its_fallbacks_still_decrypt(settings):
    settings.RCHAT = {k: v for k, v in settings.RCHAT.items() if k != "ENCRYPTION_KEYS"}
    settings.SECRET_KEY = "first-secret-key-for-the-site-0123456789"
    credential = CredentialFactory(token=TOKEN)
    assert fernet_reads(crypto.derive_key(settings.SECRET_KEY), raw_secrets(credential.pk)[0])

    settings.SECRET_KEY = "second-secret-key-for-the-site-9876543210"
    settings.SECRET_KEY_FALLBACKS = ["first-secret-key-for-the-site-0123456789"]
    assert Credential.objects.get(pk=credential.pk).token == TOKEN

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(DecryptionError):
        Credential.objects.get(pk=credential.pk)


@pytest.mark.parametrize(
    "keys, message",
    [
        ("a-single-string", "must be a list of keys, not str"),
        (["short"], 'RCHAT["ENCRYPTION_KEYS"][0] is not a Fernet key'),
        ([KEY_A, ""], 'RCHAT["ENCRYPTION_KEYS"][1] is not a Fernet key'),
    ],
)
def test_malformed_encryption_keys_are_configuration_errors_naming_the_setting(
    settings, keys, message
):
    settings.RCHAT = {**settings.RCHAT, "ENCRYPTION_KEYS": keys}

    with pytest.raises(RChatConfigurationError) as caught:
        crypto.encrypt("anything")

    assert message in str(caught.value)


def test_encrypt_decrypt_round_trip_keeps_thai_text(settings):
    use_keys(settings, KEY_A)
    secret = "โทเค็นลับ-1234"

    assert crypto.decrypt(crypto.encrypt(secret)) == secret


@pytest.mark.parametrize(
    "secret, masked",
    [
        ("", ""),
        (None, ""),
        ("short", "••••"),
        ("elevenchars", "••••"),
        ("twelve-chars", "••••hars"),
        (TOKEN, "••••7a8b"),
    ],
)
def test_mask_shows_at_most_the_last_four_characters(secret, masked):
    assert crypto.mask(secret) == masked


def test_redact_masks_every_occurrence_of_every_secret():
    text = f"token={TOKEN}; again {TOKEN}; signature={SIGNATURE}"

    redacted = crypto.redact(text, TOKEN, SIGNATURE, "", None)

    assert TOKEN not in redacted
    assert SIGNATURE not in redacted
    assert redacted == "token=••••7a8b; again ••••7a8b; signature=••••2d1e"


def test_tokens_are_compared_whole_in_constant_time():
    """rchat compares secrets with Django's constant_time_compare (no helper of its own)."""
    from django.utils.crypto import constant_time_compare

    assert constant_time_compare(TOKEN, TOKEN)
    assert not constant_time_compare(TOKEN, TOKEN[:-1])
    assert not constant_time_compare(TOKEN, "")
    assert not hasattr(crypto, "secrets_equal")
