"""Everything that changes rchat's state goes through here.

Admin, views, the API, tasks and management commands parse their input, call one of
these functions and answer; they do not write rows themselves. Functions are named
``<thing>_<action>`` and take keyword arguments only.
"""

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Q, Value, When
from django.db.models.sql import UpdateQuery
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from . import crypto, payloads, signals
from .client import RChatClient
from .conf import get_setting
from .exceptions import (
    InvalidMessage,
    RChatAPIError,
    RChatAuthError,
    RChatConfigurationError,
    RChatError,
)
from .models import ChatRoom, Credential, DeliveryAttempt, Message, WebhookEvent

logger = logging.getLogger(__name__)


# --- Credentials ----------------------------------------------------------------------


def credential_save(*, name, token, base_url=""):
    """Create the credential ``name``, or update its token and base URL.

    A changed Chatday-Token makes the credential "not registered" again: its
    signature token belonged to the old one.
    """
    name, token, base_url = _credential_clean(name=name, token=token, base_url=base_url)
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


def _credential_clean(*, name, token, base_url):
    name = (name or "").strip()
    token = (token or "").strip()
    base_url = (base_url or "").strip()
    if not name:
        raise ValueError(gettext("A credential needs a name."))
    if len(name) > Credential._meta.get_field("name").max_length:
        raise ValueError(gettext("A credential's name is at most 100 characters."))
    if not token:
        raise ValueError(gettext("A credential needs a Chatday-Token."))
    if any(char.isspace() for char in token):
        raise ValueError(gettext("A Chatday-Token has no spaces in it: check what was pasted."))
    if len(base_url) > Credential._meta.get_field("base_url").max_length or (
        base_url and not _is_http_url(base_url)
    ):
        raise ValueError(gettext("The base URL %(url)r is not an http(s) URL.") % {"url": base_url})
    return name, token, base_url


def _is_http_url(value):
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def credential_connect(*, name, token, base_url="", rotate=False):
    """Create or update the credential ``name`` and register its Chatday-Token.

    What ``manage.py rchat_register`` and similar entry points call. A new credential
    is stored first (so a failed Register is recorded on it). For an existing one the
    new token and base URL are adopted only once R-Chat accepts them: a failed attempt
    leaves it working as before. Raises ``ValueError`` for bad input, and what
    ``credential_register`` raises.
    """
    name, token, base_url = _credential_clean(name=name, token=token, base_url=base_url)
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
    new_token = token if token and not crypto.secrets_equal(token, credential.token) else None
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
    message_release_held(credential=credential)
    return credential


def credential_mark_invalid(*, credential, error):
    """Flag a credential whose token R-Chat refused; outbound messages wait for it."""
    _credential_record_error(credential, RChatAuthError(str(error)))


def _credential_record_error(credential, exc, *, token_is_stored=True, secrets=()):
    error = crypto.redact(str(exc), credential.token, *secrets)
    if not token_is_stored:
        error = gettext("New Chatday-Token not saved: %(error)s") % {"error": error}
    update = {"last_error": error[:2000], "last_error_at": timezone.now()}
    # A refused replacement token says nothing about the stored one, still in use.
    if isinstance(exc, RChatAuthError) and token_is_stored:
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
    # Reading decrypts with any key; saving encrypts with the first one. The row is
    # re-read under a lock so a Register finishing meanwhile is not overwritten.
    with transaction.atomic():
        fresh = Credential.objects.select_for_update().get(pk=credential.pk)
        fresh.save(update_fields=["token", "signature_token", "previous_signature_token"])
    _refresh(credential, fresh)


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


# --- Outbound ---------------------------------------------------------------------------
#
# The Message row is the truth and the broker only a wake-up. Every step of a delivery
# is written to the row before a task is enqueued, so a lost wake-up (broker down, a
# worker killed) delays a message but never loses it: ``message_requeue_stale``, run
# by Celery beat, wakes every row whose wake-up went missing. docs/delivery.md tells
# the whole policy.

# Seconds a sender waits for the broker before giving up on the wake-up: a reply must
# not hang on a broker outage, and the sweep delivers the message once it is back.
WAKE_UP_CONNECT_TIMEOUT = 1.0

# Rows the sweep wakes per run; the next run takes the rest.
REQUEUE_BATCH = 500

_PENDING = (Message.Status.QUEUED, Message.Status.SENDING)


class Delivery:
    """What ``message_deliver`` did with a message (the task returns it, for logs)."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    HELD = "held"
    DEFERRED = "deferred"  # an older message of the room is still pending
    NOT_DUE = "not-due"  # woken before its back-off ended; its own wake-up is scheduled
    SKIPPED = "skipped"  # already sent or failed, or in another worker's hands


def message_send(*, room, type, data, author=None):
    """Queue an outbound message to ``room``; a Celery worker hands it to R-Chat.

    The one entry point for every sender (admin, inbox, API, bots, ``rchat_send``).
    ``data`` is checked for ``type`` (see ``payloads.outbound_validate``); bad input
    or a closed room raises ``InvalidMessage`` and stores nothing. The message is
    stored ``queued`` and the worker is woken once the caller's transaction commits,
    so a rolled-back caller sends nothing. Never waits on the broker for long: when
    it is down the message stays queued and ``requeue_stale`` sends it later.
    """
    data = payloads.outbound_validate(type, data)
    preview = payloads.outbound_preview(type, data)
    with transaction.atomic():
        status = ChatRoom.objects.filter(pk=room.pk).values_list("status", flat=True).first()
        if status != ChatRoom.Status.OPEN:
            reason = gettext("This chat room is closed; reopen it to reply.")
            raise InvalidMessage(reason, errors={"room": reason})
        now = timezone.now()
        message = Message.objects.create(
            room=room,
            direction=Message.Direction.OUT,
            type=type,
            data=data,
            text=preview,
            status=Message.Status.QUEUED,
            author=author,
            next_attempt_at=now,
        )
        ChatRoom.objects.filter(pk=room.pk).update(
            last_message_at=now, last_message_preview=preview[:200]
        )
        transaction.on_commit(partial(_message_wake, message.pk), robust=True)
    room.last_message_at = now
    room.last_message_preview = preview[:200]
    return message


def message_deliver(*, message_id):
    """Try once to hand a queued message to R-Chat; return a ``Delivery`` value.

    Safe to run twice and in parallel: the row is claimed (queued -> sending) in a
    short transaction, and a message already sent, failed or claimed elsewhere is
    left alone. No transaction is open during the HTTP call. Each try leaves a
    DeliveryAttempt row; the outcome follows docs/delivery.md (retry with back-off,
    wait for Retry-After, hold for an invalid credential, or fail).
    """
    claimed = _message_claim(message_id)
    if isinstance(claimed, str):
        return claimed
    message, credential = claimed
    started = timezone.now()
    clock = time.monotonic()
    answer, error = None, None
    try:
        client = RChatClient.for_credential(credential)
        answer = client.send_message(message.room.chat_id, message.type, message.data)
    except Exception as exc:  # every failure is recorded, none escapes
        error = exc
    duration_ms = int((time.monotonic() - clock) * 1000)
    return _message_finish(message, credential, started, duration_ms, answer, error)


def message_retry(*, message):
    """Send a failed outbound message again.

    It goes back to ``queued`` with its attempt count reset to 0, so it gets a full
    ``RCHAT["DELIVERY_MAX_ATTEMPTS"]`` tries; its DeliveryAttempt rows are kept. It
    keeps its place in the room: newer messages still queued wait for it.
    Raises ``InvalidMessage`` for a message that has not failed or a closed room.
    """
    now = timezone.now()
    with transaction.atomic():
        room_status = (
            ChatRoom.objects.filter(pk=message.room_id).values_list("status", flat=True).first()
        )
        if room_status != ChatRoom.Status.OPEN:
            reason = gettext("This chat room is closed; reopen it to reply.")
            raise InvalidMessage(reason, errors={"room": reason})
        updated = Message.objects.filter(
            pk=message.pk, direction=Message.Direction.OUT, status=Message.Status.FAILED
        ).update(
            status=Message.Status.QUEUED,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            updated_at=now,
        )
        if not updated:
            reason = gettext("Only a failed outbound message can be sent again.")
            raise InvalidMessage(reason, errors={"status": reason})
        transaction.on_commit(partial(_message_wake, message.pk), robust=True)
    message.refresh_from_db()
    return message


def message_release_held(*, credential):
    """Wake the messages that waited for ``credential`` to be registered again.

    Only the oldest queued message of each room is woken; each one wakes the next
    when it is done, so the rooms keep their order. Returns how many were woken.
    """
    heads = list(
        _queued_heads()
        .filter(room__credential=credential)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for message_id in heads:
        transaction.on_commit(partial(_message_wake, message_id), robust=True)
    if heads:
        logger.info(
            "Credential %s is active again: %d room(s) resume sending.", credential.name, len(heads)
        )
    return len(heads)


def message_requeue_stale():
    """Wake every outbound message whose wake-up was lost; return how many were woken.

    Two kinds: ``queued`` rows never handed to the broker, or whose time came more
    than ``RCHAT["STALE_AFTER_SECONDS"]`` ago; and ``sending`` rows a dead worker left
    behind (untouched for STALE_AFTER_SECONDS plus the R-Chat time-outs). Messages
    waiting for an invalid credential, or behind an older message of their room, are
    left alone. Run it every 30-60 s (``rchat.tasks.requeue_stale`` in Celery beat).
    """
    now = timezone.now()
    stale = timedelta(seconds=get_setting("STALE_AFTER_SECONDS"))
    # A live worker updates the row when R-Chat answers, at the latest after both
    # time-outs; older than that, nobody is working on it.
    http_budget = timedelta(
        seconds=float(get_setting("CONNECT_TIMEOUT")) + float(get_setting("READ_TIMEOUT"))
    )
    woken = []
    abandoned = Message.objects.filter(
        direction=Message.Direction.OUT,
        status=Message.Status.SENDING,
        updated_at__lt=now - stale - http_budget,
    ).values_list("pk", "room_id", "attempts", "updated_at")
    for message_id, room_id, attempts, updated_at in abandoned[:REQUEUE_BATCH]:
        with transaction.atomic():
            _room_lock(room_id)
            taken_back = Message.objects.filter(
                pk=message_id, status=Message.Status.SENDING, attempts=attempts
            ).update(
                status=Message.Status.QUEUED,
                next_attempt_at=now,
                last_error=gettext("The worker stopped before R-Chat's answer was recorded."),
                updated_at=now,
            )
            if taken_back:
                DeliveryAttempt.objects.create(
                    message_id=message_id,
                    started_at=updated_at,
                    outcome=DeliveryAttempt.Outcome.RETRY,
                    error_type="WorkerLost",
                    error="No answer recorded: the worker stopped during this attempt "
                    "(R-Chat may or may not have received the message).",
                )
                woken.append(message_id)
    lost = (
        _queued_heads()
        .exclude(room__credential__status=Credential.Status.INVALID)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now - stale))
        .exclude(pk__in=woken)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    lost = list(lost[:REQUEUE_BATCH])
    # Their next wake-up is now; should it be lost too, the next sweep after
    # STALE_AFTER_SECONDS tries again (and not every run, flooding a slow queue).
    Message.objects.filter(pk__in=lost, status=Message.Status.QUEUED).update(next_attempt_at=now)
    woken.extend(lost)
    for message_id in woken:
        _message_wake(message_id)
    if woken:
        logger.info("Woke %d outbound message(s) whose wake-up was lost.", len(woken))
    return len(woken)


def _older_pending(room_id, message_id):
    return Message.objects.filter(
        room_id=room_id, direction=Message.Direction.OUT, status__in=_PENDING, pk__lt=message_id
    )


def _queued_heads():
    """Queued outbound messages with no older pending message in their room."""
    older = Message.objects.filter(
        room_id=OuterRef("room_id"),
        direction=Message.Direction.OUT,
        status__in=_PENDING,
        pk__lt=OuterRef("pk"),
    )
    return Message.objects.filter(
        direction=Message.Direction.OUT, status=Message.Status.QUEUED
    ).filter(~Exists(older))


def _room_lock(room_id):
    # Claims and finishes of one room take this lock, so "is an older message still
    # pending?" and "done, wake the next one" cannot cross: without it a message could
    # defer to one that finishes a moment later and wait for the sweep.
    list(ChatRoom.objects.select_for_update().filter(pk=room_id).values_list("pk"))


def _message_claim(message_id):
    """Lock and mark the message ``sending``; or say (a ``Delivery`` value) why not."""
    room_id = (
        Message.objects.filter(pk=message_id, direction=Message.Direction.OUT)
        .values_list("room_id", flat=True)
        .first()
    )
    if room_id is None:
        return Delivery.SKIPPED
    now = timezone.now()
    with transaction.atomic():
        _room_lock(room_id)
        message = (
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("room__credential")
            .filter(pk=message_id, status=Message.Status.QUEUED)
            .first()
        )
        if message is None:
            return Delivery.SKIPPED
        if message.next_attempt_at and message.next_attempt_at > now:
            return Delivery.NOT_DUE
        credential = message.room.credential
        if credential.status == Credential.Status.INVALID:
            # No call: R-Chat refused this token already. message_release_held wakes
            # the message when the credential is registered again.
            Message.objects.filter(pk=message.pk).update(
                last_error=_held_reason(credential), updated_at=now
            )
            return Delivery.HELD
        if _older_pending(room_id, message.pk).exists():
            # The older message wakes this one when it is sent or fails.
            return Delivery.DEFERRED
        message.status = Message.Status.SENDING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "updated_at"])
    return message, credential


def _held_reason(credential):
    return gettext(
        "Waiting: R-Chat refused the Chatday-Token of credential %(name)s; "
        "register it again to send."
    ) % {"name": credential.name}


def _retry_delay(attempts, error):
    """Seconds before the next try: Retry-After for a 429, else exponential back-off."""
    longest = float(get_setting("RETRY_MAX_DELAY"))
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return min(float(retry_after), longest)
    # Full jitter (a random delay up to the exponential cap) spreads out the retries
    # of many messages that failed together, so they do not return in one wave.
    cap = min(longest, float(get_setting("RETRY_BASE_DELAY")) * 2 ** max(attempts - 1, 0))
    return _random.uniform(0, cap)


_random = random.SystemRandom()


def _message_finish(message, credential, started, duration_ms, answer, error):
    """Record the try and move the message on: sent, retry, held or failed."""
    now = timezone.now()
    error_text = ""
    if error is not None:
        error_text = crypto.redact(
            " ".join(str(error).split()), credential.token, credential.signature_token
        )[:4000]
    update = {"updated_at": now}
    delay = None
    if error is None:
        outcome = DeliveryAttempt.Outcome.SENT
        update.update(
            status=Message.Status.SENT,
            sent_at=now,
            external_id=payloads.sent_message_id(answer),
            last_error="",
            next_attempt_at=None,
        )
    elif isinstance(error, RChatAuthError):
        # The token, not the message, is at fault: keep it queued until the
        # credential is registered again (message_release_held wakes it).
        outcome = DeliveryAttempt.Outcome.HELD
        update.update(status=Message.Status.QUEUED, last_error=error_text)
    elif _is_transient(error) and message.attempts < get_setting("DELIVERY_MAX_ATTEMPTS"):
        outcome = DeliveryAttempt.Outcome.RETRY
        delay = _retry_delay(message.attempts, error)
        update.update(
            status=Message.Status.QUEUED,
            last_error=error_text,
            next_attempt_at=now + timedelta(seconds=delay),
        )
    else:
        outcome = DeliveryAttempt.Outcome.FAILED
        update.update(status=Message.Status.FAILED, last_error=error_text, next_attempt_at=None)

    with transaction.atomic():
        _room_lock(message.room_id)
        DeliveryAttempt.objects.create(
            message_id=message.pk,
            started_at=started,
            duration_ms=duration_ms,
            # The client hands back only the body of a 2xx answer: recorded as 200.
            http_status=getattr(error, "status", None) if error is not None else 200,
            outcome=outcome,
            error_type=type(error).__name__ if error is not None else "",
            error=error_text,
        )
        # The attempt count fences out a worker the sweep gave up on: if the row was
        # taken back and tried again meanwhile, this late result changes nothing.
        current = Message.objects.filter(
            pk=message.pk, status=Message.Status.SENDING, attempts=message.attempts
        ).update(**update)
        if outcome == DeliveryAttempt.Outcome.HELD:
            credential_mark_invalid(credential=credential, error=error_text)
        if current:
            _message_after_finish(message, outcome, delay, error_text)
    return outcome if current else Delivery.SKIPPED


def _message_after_finish(message, outcome, delay, error_text):
    """What follows a finished try, once it is committed: signals and wake-ups."""
    if outcome == DeliveryAttempt.Outcome.RETRY:
        transaction.on_commit(partial(_message_wake, message.pk, countdown=delay), robust=True)
        return
    if outcome == DeliveryAttempt.Outcome.HELD:
        return
    following = (
        Message.objects.filter(
            room_id=message.room_id, direction=Message.Direction.OUT, status=Message.Status.QUEUED
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        transaction.on_commit(partial(_message_wake, following), robust=True)
    if outcome == DeliveryAttempt.Outcome.SENT:
        transaction.on_commit(partial(_message_signal, message.pk, None), robust=True)
    else:
        transaction.on_commit(partial(_message_signal, message.pk, error_text), robust=True)


def _message_signal(message_id, error):
    message = Message.objects.select_related("room").get(pk=message_id)
    if error is None:
        signals.message_sent.send(sender=Message, message=message)
    else:
        signals.message_failed.send(sender=Message, message=message, error=error)


def _is_transient(error):
    if isinstance(error, RChatAPIError):
        return error.transient
    # A configuration or decryption problem does not mend itself; fail with the reason.
    # Anything else unexpected is retried (and fails after the last attempt).
    return not isinstance(error, RChatError | RChatConfigurationError)


def _message_wake(message_id, *, countdown=None):
    """Enqueue ``deliver_message(message_id)``; never raises, never waits long.

    When the broker cannot be reached the row stays queued (marked never woken, so the
    next sweep picks it up at once) and the caller carries on.
    """
    from .tasks import deliver_message

    try:
        _publish(deliver_message, message_id, countdown)
    except Exception as exc:  # a lost wake-up is what the sweep is for
        logger.warning(
            "Could not enqueue delivery of message %s (%s: %s); the stale sweep will.",
            message_id,
            type(exc).__name__,
            exc,
        )
        if countdown is None:
            try:
                Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
                    next_attempt_at=None
                )
            except Exception:  # the row is still queued; the sweep finds it
                logger.exception("Could not mark message %s for the stale sweep", message_id)


def _publish(task, message_id, countdown):
    app = task.app
    if app.conf.task_always_eager:
        task.apply_async((message_id,), countdown=countdown)
        return
    # A connection of our own with a short connect time-out and no reconnect loop:
    # Celery's pooled one would retry for broker_connection_timeout (and more).
    options = {**(app.conf.broker_transport_options or {}), "max_retries": 0}
    with app.connection_for_write(
        connect_timeout=WAKE_UP_CONNECT_TIMEOUT, transport_options=options
    ) as connection:
        task.apply_async((message_id,), countdown=countdown, connection=connection, retry=False)


def room_get_or_create(*, credential, chat_id):
    """The chat room ``chat_id`` of ``credential``, created (open) if rchat has not seen it.

    For senders that start a conversation by R-Chat's chat id (``rchat_send``).
    """
    chat_id = (chat_id or "").strip()
    if not chat_id:
        reason = gettext("A chat id is required.")
        raise InvalidMessage(reason, errors={"chat_id": reason})
    room, _created = ChatRoom.objects.get_or_create(credential=credential, chat_id=chat_id)
    return room


# --- Inbound ----------------------------------------------------------------------------
# R-Chat's webhook lands here (docs/webhooks.md). The view has checked the signature
# token and the size; everything after that is data: the call is kept as a
# WebhookEvent whatever happens, and the message it carries is stored exactly once.

# Longest dedup key (Message.dedup_key); longer external ids are hashed.
DEDUP_KEY_MAX = 100
# Credential.last_webhook_at is written at most this often per process: it tells an
# operator that R-Chat reaches the site, which does not need one write per message.
LAST_WEBHOOK_WRITE_SECONDS = 60.0
_last_webhook_written = {}


@dataclass(frozen=True)
class InboundResult:
    """What became of one webhook call.

    ``event.outcome`` is "processed", "duplicate", "ping" or "failed"; ``message`` the
    stored message (the earlier one for a duplicate); ``retryable`` is True when the
    failure was ours, not the body's, so the same call sent again may succeed.
    """

    event: WebhookEvent
    message: Message | None = None
    created: bool = False
    retryable: bool = False

    @property
    def outcome(self):
        return self.event.outcome


class _Redelivery(Exception):
    # Control flow inside _inbound_store: an earlier message with the same body.
    def __init__(self, message):
        super().__init__()
        self.message = message


def webhook_receive(*, credential_id, body, headers, remote_addr=None):
    """Keep an authenticated webhook call and store the message it carries.

    ``headers`` must already have the signature token redacted. Writes, in one
    transaction, the WebhookEvent, the chat room (created on its first message) and
    the Message; a redelivery stores no second message (outcome "duplicate"). A body
    that is not a message is kept with outcome "failed" and the reason in ``error``.

    After the commit, ``signals.message_received`` is sent and RCHAT["ON_MESSAGE"]
    queued (new messages only). Raises only when not even the failed event could be
    written (the database is down): then nothing is kept and R-Chat must send again.
    """
    event = WebhookEvent(
        credential_id=credential_id,
        remote_addr=remote_addr,
        headers=payloads.inbound_clean(headers or {}),
        body=bytes(body),
    )
    result = _webhook_process(event, received_at=timezone.now(), live=True)
    _credential_touch(credential_id, force=result.outcome == WebhookEvent.Outcome.PING)
    return result


def webhook_refuse(*, credential_id, headers, remote_addr=None, error):
    """Keep an authenticated call that was refused before its body was read (too large).

    The event has no body and outcome "failed"; it cannot be re-processed.
    """
    event = WebhookEvent(
        credential_id=credential_id,
        remote_addr=remote_addr,
        headers=payloads.inbound_clean(headers or {}),
        body=b"",
    )
    return _event_finish(event, WebhookEvent.Outcome.FAILED, error=error)


def webhook_event_reprocess(*, event):
    """Process a failed webhook event again (after a fix), as if it arrived now.

    The message keeps the time the call was received: it takes its place in the
    thread then, and the dedup window is measured from then, so a call R-Chat also
    sent again in the meantime is recognised as the same message.

    Raises ``ValueError`` for an event that was not a failure, or kept no body.
    """
    if event.outcome not in (WebhookEvent.Outcome.FAILED, WebhookEvent.Outcome.RECEIVED):
        raise ValueError(
            gettext("Webhook event %(id)s is %(outcome)s; only failed events are re-processed.")
            % {"id": event.pk, "outcome": event.get_outcome_display()}
        )
    if not bytes(event.body) and event.error:
        raise ValueError(
            gettext("Webhook event %(id)s kept no body (%(error)s); nothing to re-process.")
            % {"id": event.pk, "error": event.error}
        )
    if event.credential_id is None:
        return _event_finish(
            event,
            WebhookEvent.Outcome.FAILED,
            error=gettext("The credential this call came for has been deleted."),
        )
    return _webhook_process(event, received_at=event.received_at, live=False)


def message_hook_run(*, message_id):
    """Run RCHAT["ON_MESSAGE"] for inbound message ``message_id`` (see tasks.py).

    The hook is a callable taking the message id; its return value is ignored and
    its errors are the worker's to log. Nothing happens when the setting is empty.
    """
    path = get_setting("ON_MESSAGE")
    if not path:
        return None
    try:
        hook = import_string(path)
    except ImportError as exc:
        raise RChatConfigurationError(
            f'RCHAT["ON_MESSAGE"] = {path!r} cannot be imported: {exc}'
        ) from exc
    return hook(message_id)


def _webhook_process(event, *, received_at, live):
    try:
        inbound = payloads.inbound_parse(payloads.inbound_load(event.body))
    except payloads.InvalidPayload as exc:
        return _event_finish(event, WebhookEvent.Outcome.FAILED, error=str(exc))
    if inbound is None:
        return _event_finish(event, WebhookEvent.Outcome.PING)
    try:
        return _inbound_store(event, inbound, received_at=received_at, live=live)
    except Exception as exc:
        # Our failure, not the body's (a database error, a bug): keep the call as
        # failed so it can be re-processed, and let the caller ask R-Chat to retry.
        logger.exception("Webhook event for chat %s could not be stored", inbound.chat_id)
        _event_forget_rollback(event, live=live)
        result = _event_finish(
            event, WebhookEvent.Outcome.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        return InboundResult(event=result.event, retryable=True)


def _inbound_store(event, inbound, *, received_at, live):
    key, same_body_keys = _dedup_keys(inbound, event.body, received_at)
    try:
        with transaction.atomic():
            # Updating the room first locks its row: every inbound message of one room
            # is stored one after the other, which makes the same-body check below
            # race-free. The unique (room, dedup_key) guards ids without needing it.
            room = _room_touch(event.credential_id, inbound, received_at)
            if same_body_keys:
                earlier = _earlier_same_body(room.pk, same_body_keys, received_at)
                if earlier is not None:
                    raise _Redelivery(earlier)
            message = Message.objects.create(
                room=room,
                direction=Message.Direction.IN,
                type=inbound.type,
                data=inbound.data,
                text=inbound.text,
                status=Message.Status.RECEIVED,
                external_id=inbound.external_id,
                dedup_key=key,
                extra=inbound.extra,
                sent_by_user_at=inbound.sent_at,
            )
            if not live:
                Message.objects.filter(pk=message.pk).update(created_at=received_at)
                message.created_at = received_at
            _event_save(event, WebhookEvent.Outcome.PROCESSED, message=message)
            transaction.on_commit(partial(_message_received, message, room, True), robust=True)
        return InboundResult(event=event, message=message, created=True)
    except _Redelivery as redelivery:
        earlier = redelivery.message
    except IntegrityError:
        # A message with this dedup key was stored first: this call is a redelivery.
        earlier = key and (
            Message.objects.filter(
                room__credential_id=event.credential_id,
                room__chat_id=inbound.chat_id,
                dedup_key=key,
            ).first()
        )
        if not earlier:
            raise
    _event_forget_rollback(event, live=live)
    earlier = Message.objects.select_related("room").get(pk=earlier.pk)
    _event_save(event, WebhookEvent.Outcome.DUPLICATE, message=earlier)
    transaction.on_commit(partial(_message_received, earlier, earlier.room, False), robust=True)
    return InboundResult(event=event, message=earlier, created=False)


def _dedup_keys(inbound, body, received_at):
    """The new message's dedup key, and the keys an earlier same-body message may have.

    With R-Chat's message id the key is that id: a redelivery collides on the unique
    (room, dedup_key). Without one, the key is the body's SHA-256 and the number of
    the DEDUP_WINDOW_SECONDS-long period the call came in; an earlier identical body
    can sit in the period before or after (a re-processed call), so all three are
    looked up and the exact distance in time decides.
    """
    if inbound.external_id:
        key = f"id:{inbound.external_id}"
        if len(key) > DEDUP_KEY_MAX:
            key = "id#" + hashlib.sha256(inbound.external_id.encode()).hexdigest()
        return key, ()
    window = get_setting("DEDUP_WINDOW_SECONDS") or 0
    if window <= 0:
        return "", ()
    digest = hashlib.sha256(bytes(body)).hexdigest()
    period = int(received_at.timestamp() // window)
    keys = tuple(f"body:{digest}:{n}" for n in (period - 1, period, period + 1))
    return keys[1], keys


def _earlier_same_body(room_id, keys, received_at):
    window = timedelta(seconds=get_setting("DEDUP_WINDOW_SECONDS"))
    for earlier in Message.objects.filter(room_id=room_id, dedup_key__in=keys):
        if abs(earlier.created_at - received_at) < window:
            return earlier
    return None


def _room_touch(credential_id, inbound, at):
    """Lock the chat room of ``inbound`` (creating it) and record the new message on it.

    Returns the room as it is after the update. An older message (re-processed)
    does not replace a newer last message.
    """
    newer = Q(last_message_at__isnull=True) | Q(last_message_at__lte=at)
    changes = {
        "last_message_at": Case(
            When(newer, then=Value(at, output_field=DateTimeField())),
            default=F("last_message_at"),
        ),
        "last_message_preview": Case(
            When(newer, then=Value(payloads.inbound_preview(inbound.text))),
            default=F("last_message_preview"),
        ),
        "unread_count": F("unread_count") + 1,
        # The end user wrote again: the conversation is open again.
        "status": ChatRoom.Status.OPEN,
    }
    # What R-Chat tells about the end user is the latest word on them.
    for name in ("channel", "display_name", "avatar_url"):
        if getattr(inbound, name):
            changes[name] = getattr(inbound, name)
    rooms = ChatRoom.objects.filter(credential_id=credential_id, chat_id=inbound.chat_id)
    room = _update_returning(rooms, changes)
    if room is None:
        # The first message of a chat room. Concurrent first messages all insert;
        # the unique (credential, chat_id) keeps one row and the others wait for it
        # and do nothing, then lock and update that row like any later message.
        ChatRoom.objects.bulk_create(
            [
                ChatRoom(
                    credential_id=credential_id,
                    chat_id=inbound.chat_id,
                    channel=inbound.channel,
                    display_name=inbound.display_name,
                    avatar_url=inbound.avatar_url,
                )
            ],
            ignore_conflicts=True,
        )
        room = _update_returning(rooms, changes)
    if room is None:
        raise RuntimeError(f"Chat room {inbound.chat_id!r} disappeared while being created.")
    return room


def _update_returning(queryset, changes):
    """Apply ``changes`` to the single row of ``queryset``; return it updated, or None.

    One statement (UPDATE … RETURNING, built by the ORM) both locks the row and reads
    it back, where a SELECT … FOR UPDATE and an UPDATE would take two round trips.
    """
    connection = connections[queryset.db]
    if connection.vendor not in ("postgresql", "sqlite"):
        row = queryset.select_for_update().first()
        if row is None:
            return None
        queryset.filter(pk=row.pk).update(**changes)
        row.refresh_from_db()
        return row
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(changes)
    statement, params = query.get_compiler(queryset.db).as_sql()
    rows = list(
        queryset.model.objects.db_manager(queryset.db).raw(f"{statement} RETURNING *", params)
    )
    return rows[0] if rows else None


def _event_save(event, outcome, *, message=None, error=""):
    event.outcome = outcome
    event.message = message
    event.error = payloads.inbound_clean(str(error))[:4000]
    event.processed_at = None if outcome == WebhookEvent.Outcome.FAILED else timezone.now()
    event.save()


def _event_finish(event, outcome, *, error=""):
    _event_save(event, outcome, error=error)
    if outcome == WebhookEvent.Outcome.FAILED:
        logger.warning("Webhook event %s failed: %s", event.pk, event.error)
    return InboundResult(event=event)


def _event_forget_rollback(event, *, live):
    # A rolled-back transaction leaves the Python object as if its writes had stuck:
    # a new event gets a primary key that no longer exists.
    if live:
        event.pk = None
        event._state.adding = True
    event.message = None


def _message_received(message, room, created):
    """After the commit: tell the site, and queue the bot hook for a new message."""
    for receiver, response in signals.message_received.send_robust(
        sender=Message, message=message, room=room, created=created
    ):
        if isinstance(response, Exception):
            logger.error(
                "message_received receiver %r failed for message %s",
                receiver,
                message.pk,
                exc_info=response,
            )
    if created and get_setting("ON_MESSAGE"):
        from .tasks import run_message_hook

        try:
            _publish(run_message_hook, message.pk, None)
        except Exception as exc:  # the message is stored; only the hook is lost
            logger.error(
                "Could not queue RCHAT['ON_MESSAGE'] for message %s (%s: %s)",
                message.pk,
                type(exc).__name__,
                exc,
            )


def _credential_touch(credential_id, *, force=False):
    """Record that a webhook came for the credential (at most once a minute per process)."""
    now = time.monotonic()
    last = _last_webhook_written.get(credential_id)
    if not force and last is not None and now - last < LAST_WEBHOOK_WRITE_SECONDS:
        return
    _last_webhook_written[credential_id] = now
    try:
        # update(), not save(): no signal, so the credential cache is not dropped.
        Credential.objects.filter(pk=credential_id).update(last_webhook_at=timezone.now())
    except DatabaseError:
        logger.warning("Could not record last_webhook_at for credential %s", credential_id)
