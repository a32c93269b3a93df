"""Everything that changes rchat's state goes through here.

Admin, views, the API, tasks and management commands parse their input, call one of
these functions and answer; they do not write rows themselves. Functions are named
``<thing>_<action>`` and take keyword arguments only.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import crypto
from .client import RChatClient
from .conf import get_setting
from .exceptions import RChatAPIError, RChatAuthError
from .models import ChatRoom, Credential

logger = logging.getLogger(__name__)


# --- Credentials ----------------------------------------------------------------------


def credential_save(*, name, token, base_url=""):
    """Create the credential ``name``, or update its token and base URL.

    A changed Chatday-Token makes the credential "not registered" again: its
    signature token belonged to the old one.
    """
    name = (name or "").strip()
    token = (token or "").strip()
    if not name:
        raise ValueError("A credential needs a name.")
    if not token:
        raise ValueError("A credential needs a Chatday-Token.")
    with transaction.atomic():
        credential = Credential.objects.select_for_update().filter(name=name).first()
        if credential is None:
            return Credential.objects.create(name=name, token=token, base_url=base_url or "")
        if not crypto.secrets_equal(credential.token, token):
            credential.token = token
            credential.status = Credential.Status.NEW
            credential.signature_token = ""
            credential.signature_digest = ""
        if base_url:
            credential.base_url = base_url
        credential.save()
        return credential


def credential_register(*, credential, rotate=False):
    """Call R-Chat's Register for ``credential`` and store the signature token it issues.

    On success the credential is active and its last error cleared. With ``rotate``,
    the signature token it had stays valid for ``RCHAT["SIGNATURE_GRACE_SECONDS"]``
    so webhooks already on their way are not refused.

    On failure the credential keeps its signature token, records the error (a refused
    token also marks it invalid) and the ``RChatAPIError`` is raised again.
    """
    client = RChatClient.for_credential(credential)
    try:
        signature = client.register()
    except RChatAPIError as exc:
        _credential_record_error(credential, exc)
        raise

    now = timezone.now()
    with transaction.atomic():
        fresh = Credential.objects.select_for_update().get(pk=credential.pk)
        old = fresh.signature_token
        if rotate and old and not crypto.secrets_equal(old, signature):
            grace = timedelta(seconds=get_setting("SIGNATURE_GRACE_SECONDS"))
            fresh.previous_signature_token = old
            fresh.previous_signature_digest = fresh.signature_digest
            fresh.previous_valid_until = now + grace
        fresh.signature_token = signature
        fresh.signature_digest = crypto.digest(signature)
        fresh.status = Credential.Status.ACTIVE
        fresh.registered_at = now
        fresh.last_error = ""
        fresh.last_error_at = None
        fresh.save()
    logger.info(
        "Registered credential %s; signature token %s", fresh.name, fresh.masked_signature_token
    )
    _refresh(credential, fresh)
    return credential


def credential_mark_invalid(*, credential, error):
    """Flag a credential whose token R-Chat refused; outbound messages wait for it."""
    _credential_record_error(credential, RChatAuthError(str(error)))


def _credential_record_error(credential, exc):
    update = {"last_error": str(exc)[:2000], "last_error_at": timezone.now()}
    if isinstance(exc, RChatAuthError):
        update["status"] = Credential.Status.INVALID
    Credential.objects.filter(pk=credential.pk).update(**update, updated_at=timezone.now())
    for field, value in update.items():
        setattr(credential, field, value)
    logger.warning("R-Chat credential %s: %s", credential.name, update["last_error"])


def _refresh(target, source):
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def credential_reencrypt(*, credential):
    """Re-save the credential's secrets under the first encryption key."""
    # Reading decrypts with any key; saving encrypts with the first one.
    credential.save(update_fields=["token", "signature_token", "previous_signature_token"])


# --- Chat rooms -------------------------------------------------------------------------


def room_assign(*, room, user):
    """Give ``room`` to ``user`` (None leaves it unassigned)."""
    room.assignee = user
    room.save(update_fields=["assignee"])
    return room


def room_close(*, room):
    """Close a conversation; new messages from the end user reopen it."""
    room.status = ChatRoom.Status.CLOSED
    room.save(update_fields=["status"])
    return room


def room_reopen(*, room):
    room.status = ChatRoom.Status.OPEN
    room.save(update_fields=["status"])
    return room


def room_mark_read(*, room):
    """An agent has seen the room: its unread count goes back to zero."""
    if room.unread_count:
        ChatRoom.objects.filter(pk=room.pk).update(unread_count=0)
        room.unread_count = 0
    return room


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
    from .exceptions import RChatRejectedError

    client = RChatClient.for_credential(credential)
    try:
        client.send_message("", "text", "")
    except RChatRejectedError as exc:
        if exc.status not in TOKEN_ACCEPTED_STATUSES:
            _credential_record_last_error(credential, exc)
            raise
        status = exc.status
    except RChatAPIError as exc:
        _credential_record_last_error(credential, exc)
        raise
    else:
        status = 200
    if credential.last_error or credential.last_error_at:
        Credential.objects.filter(pk=credential.pk).update(last_error="", last_error_at=None)
        credential.last_error, credential.last_error_at = "", None
    return status


def _credential_record_last_error(credential, exc):
    # Unlike _credential_record_error, a refused token does not flag the credential:
    # a test must not stop deliveries that a later Register would have resumed.
    now, error = timezone.now(), str(exc)[:2000]
    Credential.objects.filter(pk=credential.pk).update(last_error=error, last_error_at=now)
    credential.last_error, credential.last_error_at = error, now
