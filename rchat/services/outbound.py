"""Outbound messages: queueing, retrying, and the sweep that finds lost wake-ups.

Sending itself is ``delivery.py``: a drain claims due rooms in batches, sends and
records. This module is what senders call (``message_send``, ``message_retry``) and what
keeps the queue whole when a worker or a wake-up is lost (``message_requeue_stale``).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext

from .. import broker, payloads
from ..conf import get_setting
from ..exceptions import InvalidMessage
from ..models import ChatRoom, Credential, DeliveryAttempt, Message
from . import handover
from .delivery import idempotency_key_new, rooms_mark_ready

logger = logging.getLogger(__name__)


# --- Outbound ---------------------------------------------------------------------------
#
# The Message row is the truth and the broker only a wake-up. Every step of a delivery
# is written to the rows before a drain is woken, so a lost wake-up (broker down, a
# worker killed) delays a message but never loses it: ``message_requeue_stale``, run
# by Celery beat, takes back what a stopped worker left and wakes a drain when one is
# owed. docs/delivery.md tells the whole policy.

# Rows the sweep takes back per run; the next run takes the rest.
REQUEUE_BATCH = 500


def message_send(*, room, type, data, author=None, sender=None, rule=None):
    """Queue an outbound message to ``room``; a Celery worker hands it to R-Chat.

    The one entry point for every sender (admin, inbox, API, bots, ``rchat_send``).
    ``data`` is checked for ``type`` (see ``payloads.outbound_validate``); bad input
    or a closed room raises ``InvalidMessage`` and stores nothing. The message is
    stored ``queued`` and a drain is woken once the caller's transaction commits, so a
    rolled-back caller sends nothing. Never waits on the broker for long: when it is
    down the message stays queued and the stale sweep has it sent later.

    ``sender`` says who wrote it (``Message.Sender``): "person" by default when an
    ``author`` is given. A person writing to a room the bot handles takes it over
    (``room_take_over``); the bot (or a ``rule``) writing to a room people handle is
    refused with ``InvalidMessage`` (errors["sender"]): the bot stays silent there.
    """
    if sender is None:
        sender = Message.Sender.PERSON if author is not None else Message.Sender.NONE
    if sender not in Message.Sender.values:
        reason = gettext("Unknown sender %(sender)r.") % {"sender": sender}
        raise InvalidMessage(reason, errors={"sender": reason})
    data = payloads.outbound_validate(type, data)
    preview = payloads.outbound_preview(type, data)
    if sender == Message.Sender.PERSON:
        # Who handles the room now, not when the caller loaded it (a page open for a
        # while). Outside the transaction below: the take-over waits for a bot message
        # a worker may be sending, which needs the room's lock to record.
        handler = ChatRoom.objects.filter(pk=room.pk).values_list("handler", flat=True)
        if handler.first() == ChatRoom.Handler.BOT:
            handover.room_take_over(room=room, user=author)
    with transaction.atomic():
        now = timezone.now()
        # Updating the room first locks it (the delivery record takes the same lock)
        # and tells in the same statement whether it is open.
        if not ChatRoom.objects.filter(pk=room.pk, status=ChatRoom.Status.OPEN).update(
            last_message_at=now, last_message_preview=preview
        ):
            raise _room_closed()
        if sender in handover.BOT_SENDERS:
            handler = ChatRoom.objects.filter(pk=room.pk).values_list("handler", flat=True)
            if handler.get() != ChatRoom.Handler.BOT:
                reason = gettext("People handle this chat room now; the bot stays silent.")
                raise InvalidMessage(reason, errors={"sender": reason})
        message = Message.objects.create(
            room=room,
            direction=Message.Direction.OUT,
            type=type,
            data=data,
            text=preview,
            status=Message.Status.QUEUED,
            author=author,
            sender=sender,
            rule=rule,
            next_attempt_at=now,
            dedup_key=idempotency_key_new(),
        )
        rooms_mark_ready(room_ids=[room.pk], now=now)
        transaction.on_commit(broker.drain_wake, robust=True)
    room.last_message_at = now
    room.last_message_preview = preview
    return message


def _room_closed():
    """``InvalidMessage`` for a closed room (nothing is sent to a closed room: it is
    reopened first, by an agent or by the end user writing)."""
    reason = gettext("This chat room is closed; reopen it to reply.")
    return InvalidMessage(reason, errors={"room": reason})


def message_retry(*, message):
    """Send a failed outbound message again.

    It goes back to ``queued`` with its attempt count reset to 0, so it gets a full
    ``RCHAT["DELIVERY_MAX_ATTEMPTS"]`` tries; its DeliveryAttempt rows are kept. It
    keeps its place in the room: newer messages still queued wait for it.
    Raises ``InvalidMessage`` for a message that has not failed or a closed room.
    """
    now = timezone.now()
    with transaction.atomic():
        open_room = (
            ChatRoom.objects.select_for_update()
            .filter(pk=message.room_id, status=ChatRoom.Status.OPEN)
            .values_list("pk", flat=True)
        )
        if not list(open_room):
            raise _room_closed()
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
        rooms_mark_ready(room_ids=[message.room_id], now=now)
        transaction.on_commit(broker.drain_wake, robust=True)
    message.refresh_from_db()
    return message


def message_requeue_stale():
    """Repair what lost wake-ups and stopped workers left; return how many rooms are due.

    ``sending`` rows a dead worker left behind (untouched for
    ``RCHAT["STALE_AFTER_SECONDS"]`` plus the R-Chat time-outs) go back to ``queued``
    with an attempt row saying so; rooms with a queued message but out of the queue
    (a bug, or rows written by hand) are put back in it; and when rooms are due, a drain
    is woken (the "drain on its way" flag cleared first when they have been due for
    STALE_AFTER_SECONDS: its wake-up was lost). Rooms of an invalid credential are left
    alone. Run it every 30-60 s (``rchat.tasks.requeue_stale`` in Celery beat).
    """
    now = timezone.now()
    stale = timedelta(seconds=get_setting("STALE_AFTER_SECONDS"))
    # A live worker records R-Chat's answer at the latest after both time-outs (plus
    # its rate-limit wait); older than that, nobody is working on the row.
    http_budget = timedelta(
        seconds=float(get_setting("CONNECT_TIMEOUT")) + float(get_setting("READ_TIMEOUT"))
    )
    woken = 0
    abandoned = Message.objects.filter(
        direction=Message.Direction.OUT,
        status=Message.Status.SENDING,
        updated_at__lt=now - stale - http_budget,
    ).values_list("pk", "room_id", "attempts", "updated_at")
    for message_id, room_id, attempts, updated_at in abandoned[:REQUEUE_BATCH]:
        with transaction.atomic():
            list(ChatRoom.objects.select_for_update().filter(pk=room_id).values_list("pk"))
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
                ChatRoom.objects.filter(pk=room_id).update(send_after=now)
                woken += 1
    # Rooms out of the queue although a message of theirs has been queued for long and
    # none is in a worker's hands.
    sending = Message.objects.filter(room_id=OuterRef("pk"), status=Message.Status.SENDING)
    stuck = Message.objects.filter(
        status=Message.Status.QUEUED, next_attempt_at__lt=now - stale
    ).values("room_id")
    woken += (
        ChatRoom.objects.filter(pk__in=stuck, send_after__isnull=True)
        .exclude(Exists(sending))
        .update(send_after=now)
    )
    due = ChatRoom.objects.filter(send_after__lte=now).exclude(
        credential__status=Credential.Status.INVALID
    )
    overdue = due.filter(send_after__lt=now - stale).exists()
    if overdue:
        # Due for long and no drain took them: the flag may belong to a wake-up that
        # was lost. Clear it, so the wake-up below is published.
        broker.drain_flag_clear()
    ready = due.count()
    if ready:
        # A drain is woken for due rooms even if none is overdue: when the broker was
        # down as they were queued, nobody else will (the flag keeps this to one).
        broker.drain_wake()
        logger.info(
            "Stale sweep: %d room(s) put back in the queue, %d due; woke a drain.", woken, ready
        )
    return ready
