"""Outbound messages: queueing, delivering to R-Chat with retries, in order, none lost."""

import logging
import random
import time
import uuid
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext

from .. import broker, crypto, payloads, signals
from ..client import RChatClient, sent_message_id
from ..conf import get_setting
from ..exceptions import (
    InvalidMessage,
    RChatAPIError,
    RChatAuthError,
    RChatConfigurationError,
    RChatError,
)
from ..models import ChatRoom, Credential, DeliveryAttempt, Message
from . import credentials

EXTERNAL_ID_MAX = Message._meta.get_field("external_id").max_length

logger = logging.getLogger(__name__)


# --- Outbound ---------------------------------------------------------------------------
#
# The Message row is the truth and the broker only a wake-up. Every step of a delivery
# is written to the row before a task is enqueued, so a lost wake-up (broker down, a
# worker killed) delays a message but never loses it: ``message_requeue_stale``, run
# by Celery beat, wakes every row whose wake-up went missing. docs/delivery.md tells
# the whole policy.

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
        _room_check_open(room.pk)
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
            dedup_key=idempotency_key_new(),
        )
        ChatRoom.objects.filter(pk=room.pk).update(
            last_message_at=now, last_message_preview=preview
        )
        transaction.on_commit(partial(_message_wake, message.pk), robust=True)
    room.last_message_at = now
    room.last_message_preview = preview
    return message


def _room_check_open(room_id):
    """Raise ``InvalidMessage`` unless chat room ``room_id`` is open (nothing is sent to
    a closed room: it is reopened first, by an agent or by the end user writing)."""
    status = ChatRoom.objects.filter(pk=room_id).values_list("status", flat=True).first()
    if status != ChatRoom.Status.OPEN:
        reason = gettext("This chat room is closed; reopen it to reply.")
        raise InvalidMessage(reason, errors={"room": reason})


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
        answer = client.send_message(
            message.room.chat_id, message.type, message.data, idempotency_key=message.dedup_key
        )
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
        _room_check_open(message.room_id)
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
        fields = ["status", "attempts", "updated_at"]
        if not message.dedup_key:
            # Queued before keys were given (rchat 0.1): it gets one for all its tries.
            message.dedup_key = idempotency_key_new()
            fields.append("dedup_key")
        message.save(update_fields=fields)
    return message, credential


def idempotency_key_new():
    """A new message's idempotency key, the same in every try of that message.

    Random (not the row's id), so that two sites sending through one R-Chat account,
    such as staging and production, never share a key.
    """
    return f"rchat-{uuid.uuid4().hex}"


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
    # "Equal jitter": half the exponential step for sure, the other half at random.
    # The random half spreads out the retries of messages that failed together; the
    # sure half makes the tries of one message really span the back-off (with full
    # jitter a few unlucky messages spent all their attempts in a short outage).
    cap = min(longest, float(get_setting("RETRY_BASE_DELAY")) * 2 ** max(attempts - 1, 0))
    return cap / 2 + _random.uniform(0, cap / 2)


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
            external_id=sent_message_id(answer)[:EXTERNAL_ID_MAX],
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
            credentials.credential_mark_invalid(credential=credential, error=error_text)
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
    signal = signals.message_sent if error is None else signals.message_failed
    if not signal.has_listeners(Message):
        return  # no receiver: spare every delivery a query
    message = Message.objects.select_related("room").get(pk=message_id)
    if error is None:
        signal.send(sender=Message, message=message)
    else:
        signal.send(sender=Message, message=message, error=error)


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
    try:
        broker.publish(broker.DELIVER, message_id, countdown=countdown)
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
