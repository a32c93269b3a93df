"""Credentials: saving, registering with R-Chat, testing and re-encrypting them."""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext

from .. import broker, crypto, payloads
from ..client import RChatClient
from ..conf import get_setting
from ..exceptions import (
    RChatAPIError,
    RChatAuthError,
    RChatConfigurationError,
    RChatRejectedError,
)
from ..models import ChatRoom, Credential

logger = logging.getLogger(__name__)


# --- Credentials ----------------------------------------------------------------------


_KEEP = object()


def credential_save(
    *, name, token=None, base_url=None, credential=None, send_rate=_KEEP, bot_first=None
):
    """Create the credential ``name``, or update one and return it.

    Without ``credential`` the one called ``name`` is updated (or created); with it,
    that one is, and ``name`` may rename it. ``token`` None keeps the stored
    Chatday-Token (a new credential needs one); a changed token makes the credential
    "not registered" again: its signature token belonged to the old one. ``base_url``
    None keeps the one stored; "" clears it (the credential then follows
    ``RCHAT["API_BASE_URL"]``). ``send_rate``, messages per second shared by every
    worker (None: ``RCHAT["SEND_RATE"]``), is kept unless given; so is ``bot_first``
    (whether new chat rooms start with the bot) when None. Raises ``ValueError`` with
    the reason for bad input.
    """
    if send_rate is not _KEEP and send_rate is not None and not send_rate > 0:
        raise ValueError(gettext("The send rate must be a number of messages per second above 0."))
    keep_base_url = base_url is None
    name, token, base_url = credential_check(
        name=name, token=token, base_url=base_url or "", new=credential is None
    )
    with transaction.atomic():
        found = Credential.objects.select_for_update()
        found = found.filter(pk=credential.pk) if credential else found.filter(name=name)
        fresh = found.first()
        if fresh is None:
            if credential is not None:
                raise Credential.DoesNotExist(f"Credential {credential.pk} was deleted.")
            rate = None if send_rate is _KEEP else send_rate
            return Credential.objects.create(
                name=name,
                token=token,
                base_url=base_url or "",
                send_rate=rate,
                bot_first=bool(bot_first),
            )
        if name != fresh.name and Credential.objects.filter(name=name).exists():
            raise ValueError(gettext("Another credential is called %(name)s.") % {"name": name})
        fresh.name = name
        if token and not constant_time_compare(fresh.token, token):
            fresh.token = token
            fresh.status = Credential.Status.NEW
            fresh.signature_token = ""
            fresh.signature_digest = ""
        if not keep_base_url:
            fresh.base_url = base_url
        if send_rate is not _KEEP:
            fresh.send_rate = send_rate
        if bot_first is not None:
            fresh.bot_first = bool(bot_first)
        fresh.save()
    if credential is not None:
        _refresh(credential, fresh)
        return credential
    return fresh


def credential_check(*, name, token, base_url, new=True):
    """``(name, token, base_url)`` stripped, or ``ValueError`` saying what is wrong.

    What every way of saving a credential checks (admin's form included). ``token``
    may be empty only for an existing credential (``new`` False), which keeps its own.
    """
    name = (name or "").strip()
    token = (token or "").strip()
    base_url = (base_url or "").strip()
    if not name:
        raise ValueError(gettext("A credential needs a name."))
    if len(name) > Credential._meta.get_field("name").max_length:
        raise ValueError(gettext("A credential's name is at most 100 characters."))
    if not token and new:
        raise ValueError(gettext("A credential needs a Chatday-Token."))
    if any(char.isspace() for char in token):
        raise ValueError(gettext("A Chatday-Token has no spaces in it: check what was pasted."))
    if len(base_url) > Credential._meta.get_field("base_url").max_length or (
        base_url and not payloads.is_http_url(base_url)
    ):
        raise ValueError(gettext("The base URL %(url)r is not an http(s) URL.") % {"url": base_url})
    return name, token, base_url


def credential_connect(*, name, token, base_url="", rotate=False):
    """Create or update the credential ``name`` and register its Chatday-Token.

    What ``manage.py rchat_register`` and similar entry points call. A new credential
    is stored first (so a failed Register is recorded on it). For an existing one the
    new token and base URL are adopted only once R-Chat accepts them: a failed attempt
    leaves it working as before. Raises ``ValueError`` for bad input, and what
    ``credential_register`` raises.
    """
    name, token, base_url = credential_check(name=name, token=token, base_url=base_url)
    credential = Credential.objects.filter(name=name).first()
    if credential is None:
        credential = credential_save(name=name, token=token, base_url=base_url)
    return credential_register(credential=credential, rotate=rotate, token=token, base_url=base_url)


def credential_register(*, credential, rotate=False, token=None, base_url=None):
    """Call R-Chat's Register for ``credential`` and store the signature token it issues.

    On success the credential is active and its last error cleared. With ``rotate``,
    the signature token it had stays valid for ``RCHAT["SIGNATURE_GRACE_SECONDS"]``
    so webhooks already on their way are not refused.

    ``token`` / ``base_url`` register a new Chatday-Token or R-Chat address instead
    of the stored ones; they are saved together with the signature token, and only
    if Register succeeds.

    On failure nothing but the error is saved: the credential keeps its tokens,
    records the error (R-Chat refusing the stored token also marks it invalid) and
    the ``RChatAPIError`` (or ``RChatConfigurationError``) is raised again.
    """
    new_token = token if token and not constant_time_compare(token, credential.token) else None
    try:
        client = RChatClient(
            base_url=base_url or credential.api_base_url, token=new_token or credential.token
        )
        signature = client.register()
    except (RChatAPIError, RChatConfigurationError) as exc:
        _credential_record_error(
            credential, exc, token_is_stored=new_token is None, secrets=[new_token]
        )
        raise

    now = timezone.now()
    with transaction.atomic():
        fresh = Credential.objects.select_for_update().get(pk=credential.pk)
        if new_token:
            fresh.token = new_token
        if base_url:
            fresh.base_url = base_url
        old = fresh.signature_token
        if rotate and old and not constant_time_compare(old, signature):
            grace = timedelta(seconds=get_setting("SIGNATURE_GRACE_SECONDS"))
            fresh.previous_signature_token = old
            fresh.previous_signature_digest = fresh.signature_digest
            fresh.previous_valid_until = now + grace
        fresh.signature_token = signature
        fresh.signature_digest = crypto.digest(signature)
        fresh.status = Credential.Status.ACTIVE
        fresh.registered_at = now
        fresh.last_error = ""
        fresh.last_error_kind = ""
        fresh.last_error_at = None
        fresh.save()
    logger.info(
        "Registered credential %s; signature token %s", fresh.name, fresh.masked_signature_token
    )
    _refresh(credential, fresh)
    _credential_release_held(credential)
    return credential


def _credential_release_held(credential):
    """Wake a drain for the messages that waited for ``credential`` to be registered.

    Their rooms stayed due; the delivery claim skipped them while it was invalid.
    """
    rooms = ChatRoom.objects.filter(credential=credential, send_after__isnull=False).count()
    if rooms:
        transaction.on_commit(broker.drain_wake, robust=True)
        logger.info(
            "Credential %s is active again: %d room(s) resume sending.", credential.name, rooms
        )


def credential_mark_invalid(*, credential, error):
    """Flag a credential whose token R-Chat refused; outbound messages wait for it."""
    _credential_record_error(credential, RChatAuthError(str(error)))


def _credential_record_error(
    credential, exc, *, token_is_stored=True, secrets=(), flag_invalid=True
):
    """Keep ``exc`` as the credential's last error (its text redacted, and its kind).

    R-Chat refusing the stored token also marks the credential invalid, unless
    ``flag_invalid`` is False (a test of the connection must not stop deliveries that a
    later Register would have resumed).
    """
    error = crypto.redact(str(exc), credential.token, *secrets)
    if not token_is_stored:
        error = gettext("New Chatday-Token not saved: %(error)s") % {"error": error}
    update = {
        "last_error": error[:2000],
        "last_error_kind": getattr(exc, "kind", ""),
        "last_error_at": timezone.now(),
    }
    # A refused replacement token says nothing about the stored one, still in use.
    if flag_invalid and isinstance(exc, RChatAuthError) and token_is_stored:
        update["status"] = Credential.Status.INVALID
    _credential_update(credential, **update)
    logger.warning("R-Chat credential %s: %s", credential.name, update["last_error"])


def _credential_update(credential, **fields):
    """Write ``fields`` to the credential's row alone (no read first) and to ``credential``."""
    Credential.objects.filter(pk=credential.pk).update(**fields, updated_at=timezone.now())
    for field, value in fields.items():
        setattr(credential, field, value)


def _refresh(target, source):
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def credential_reencrypt(*, credential):
    """Re-save the credential's secrets under the first encryption key."""
    # Reading decrypts with any key; saving encrypts with the first one. The row is
    # re-read under a lock so a Register finishing meanwhile is not overwritten.
    with transaction.atomic():
        fresh = Credential.objects.select_for_update().get(pk=credential.pk)
        fresh.save(update_fields=["token", "signature_token", "previous_signature_token"])
    _refresh(credential, fresh)


# --- Credentials: test connection (admin) -----------------------------------------------

# R-Chat's answers to a Send Message without a chat room that show the token was
# accepted: it got past authentication and was judged on its body.
TOKEN_ACCEPTED_STATUSES = (400, 422)


def credential_test_connection(*, credential):
    """Prove that R-Chat accepts ``credential``'s Chatday-Token, changing nothing there.

    R-Chat has no ping endpoint, and calling Register again is not known to be
    harmless: the source does not say it is idempotent, and a new signature token
    would make webhooks signed with it fail until it is stored. So this posts a Send
    Message with no chat room and no content, which no end user can ever receive:
    R-Chat answering 400/422 (or 2xx) means the token passed, 401/403 that it was
    refused; 404/405 that the base URL or path is wrong.

    The only state it changes is the credential's ``last_error`` (set on failure,
    cleared on success); its status is left to Register and delivery. Returns the
    HTTP status R-Chat answered; raises the ``RChatAPIError`` on failure.
    """
    client = RChatClient.for_credential(credential)
    try:
        client.send_message("", "text", "")
    except RChatRejectedError as exc:
        if exc.status not in TOKEN_ACCEPTED_STATUSES:
            _credential_record_error(credential, exc, flag_invalid=False)
            raise
        status = exc.status
    except RChatAPIError as exc:
        _credential_record_error(credential, exc, flag_invalid=False)
        raise
    else:
        status = 200
    if credential.last_error or credential.last_error_at:
        _credential_update(credential, last_error="", last_error_kind="", last_error_at=None)
    return status
