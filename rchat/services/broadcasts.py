"""Broadcasts: one message to many chat rooms, each room getting a Message of its own.

A broadcast is queued, not sent: ``broadcast_create`` writes one ``queued`` Message per
open chat room, a batch of rooms per transaction, and the batched drain
(``delivery.py``) sends them like any reply. So a broadcast keeps each room's order
(its message goes after what the room already has queued), respects each credential's
shared rate limit (``Credential.send_rate`` / ``RCHAT["SEND_RATE"]``) and is retried,
held and recorded exactly like a single message. Nothing here waits for R-Chat.

The Broadcast row holds what was asked (the message, how many rooms) and which rooms
got no message, with why (``skipped_reasons``). How far sending has got is read from
the messages themselves (``selectors.broadcast_progress``); ``broadcasts_settle``
turns a broadcast ``done`` once none of its messages is pending. It is one cheap
statement called by those who look (admin, the API, ``rchat_broadcast --wait``) and by
the periodic sweep, not by the drain: a receiver of ``message_sent`` would cost every
batch of every message a query, broadcast or not.

docs/broadcasts.md tells the whole policy.
"""

import logging

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import broker, payloads
from ..exceptions import InvalidMessage
from ..models import Broadcast, ChatRoom, Message
from .delivery import PENDING, idempotency_key_new, rooms_mark_ready

logger = logging.getLogger(__name__)

#: Chat rooms queued (or cancelled) per transaction: the rooms' row locks are held
#: this long, so a reply to one of them waits at most one batch.
BATCH_ROOMS = 500
#: Room ids kept per reason in ``Broadcast.skipped_reasons`` (the count is always whole).
SKIPPED_IDS_KEPT = 100

# Why a chat room got no message of a broadcast (the keys of skipped_reasons).
CLOSED = "closed"
NOT_FOUND = "not_found"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"

#: Each reason in words, for admin, the API and the command.
SKIP_REASONS = {
    CLOSED: _("the chat room is closed"),
    NOT_FOUND: _("no such chat room"),
    CANCELLED: _("the broadcast was cancelled before it reached the chat room"),
    INTERRUPTED: _("queueing stopped before it reached the chat room"),
}

NAME_MAX = Broadcast._meta.get_field("name").max_length


def broadcast_create(*, rooms, type, data, author=None, name="", progress=None):
    """Queue one message to each open chat room of ``rooms``; return the Broadcast.

    ``rooms`` is a queryset of chat rooms or an iterable of chat rooms or their ids
    (duplicates count once). ``type`` and ``data`` are checked once, as
    ``message_send`` checks them; bad input, or no room at all, raises
    ``InvalidMessage`` and stores nothing.

    Rooms are queued ``BATCH_ROOMS`` per transaction, in the order given (a queryset:
    by id): each batch locks its rooms, writes their messages in one insert, updates
    their last message in one statement, makes them due for the drain and wakes it
    on commit. A closed room, or an id that matches no room, gets no message and is
    counted in ``skipped_reasons``. A room whose credential R-Chat refused is queued
    all the same: its message is held, like any other, until the credential is
    registered again (``broadcast_progress`` counts it as held).

    ``progress(broadcast, done, total)``, if given, is called once the Broadcast row
    exists (``done`` 0) and after each committed batch, with the number of rooms
    handled so far. Call this outside a transaction, so each batch commits (and starts
    sending) as it goes; inside one, nothing is sent before the caller commits. If it
    is interrupted (an error, Ctrl-C), what was committed is sent, the rest is counted
    as skipped, and the error is raised again. If the broadcast is cancelled
    meanwhile, queueing stops at the next batch.
    """
    data = payloads.outbound_validate(type, data)
    preview = payloads.outbound_preview(type, data)
    name = (name or "").strip()
    if len(name) > NAME_MAX:
        reason = gettext("A broadcast's name has at most %(n)d characters.") % {"n": NAME_MAX}
        raise InvalidMessage(reason, errors={"name": reason})
    room_ids = _room_ids(rooms)
    if not room_ids:
        reason = gettext("No chat room to send the broadcast to.")
        raise InvalidMessage(reason, errors={"rooms": reason})

    broadcast = Broadcast.objects.create(
        name=name,
        type=type,
        data=data,
        text=preview,
        author=author,
        rooms_total=len(room_ids),
    )
    run = _Queueing(broadcast, type=type, data=data, preview=preview, author=author)
    done = 0
    try:
        if progress is not None:
            progress(broadcast, 0, len(room_ids))
        for start in range(0, len(room_ids), BATCH_ROOMS):
            chunk = room_ids[start : start + BATCH_ROOMS]
            if not run.batch(chunk):
                break  # cancelled meanwhile
            done = start + len(chunk)
            if progress is not None:
                progress(broadcast, done, len(room_ids))
    except BaseException:
        # KeyboardInterrupt too: the batches committed so far are sent, the rest is
        # recorded as not reached, and the broadcast does not stay "queueing".
        logger.warning("Broadcast #%s: queueing stopped after %d room(s).", broadcast.pk, done)
        try:
            run.finish(room_ids[done:], INTERRUPTED)
        except Exception:
            # The database itself may be what failed (or the caller's transaction is
            # broken): the first error is the one to raise.
            logger.exception("Broadcast #%s: could not record the interruption.", broadcast.pk)
        raise
    run.finish(room_ids[done:], CANCELLED)
    broadcast.refresh_from_db()
    return broadcast


def broadcast_cancel(*, broadcast):
    """Cancel what of ``broadcast`` has not been handed to R-Chat yet; return how many.

    Its ``queued`` messages (waiting for their turn, for a retry, or held) become
    ``cancelled``; a message already ``sending`` is in a worker's hands and ends as
    R-Chat answers it; sent and failed ones stay as they are. A broadcast still being
    queued stops at its next batch. Its rooms leave the delivery queue when they have
    nothing else pending, and later messages to them are sent as usual.

    Cancelling a cancelled broadcast again returns 0. A broadcast with nothing left to
    cancel (``done``) raises ``InvalidMessage``.
    """
    now = timezone.now()
    pending = Message.objects.filter(broadcast=OuterRef("pk"), status__in=PENDING)
    with transaction.atomic():
        # The row lock waits for a batch being queued: once this commits, no batch of
        # this broadcast is queued any more, and every queued one is seen below.
        row = (
            Broadcast.objects.select_for_update()
            .filter(pk=broadcast.pk)
            .annotate(pending=Exists(pending))
            .values_list("status", "pending")
            .first()
        )
        if row is None:
            raise Broadcast.DoesNotExist(f"Broadcast #{broadcast.pk} no longer exists.")
        status, has_pending = row
        if status == Broadcast.Status.CANCELLED:
            return 0
        if status == Broadcast.Status.DONE or (
            status == Broadcast.Status.SENDING and not has_pending
        ):
            finished = None
        else:
            Broadcast.objects.filter(pk=broadcast.pk).update(
                status=Broadcast.Status.CANCELLED, finished_at=now
            )
            finished = now
    if finished is None:
        broadcasts_settle(broadcasts=[broadcast.pk])
        broadcast.refresh_from_db()
        reason = gettext("This broadcast has finished: nothing is left to cancel.")
        raise InvalidMessage(reason, errors={"status": reason})
    broadcast.status, broadcast.finished_at = Broadcast.Status.CANCELLED, finished

    room_ids = list(
        Message.objects.filter(broadcast=broadcast, status=Message.Status.QUEUED)
        .order_by("room_id")
        .values_list("room_id", flat=True)
        .distinct()
    )
    cancelled = 0
    room_pending = Message.objects.filter(room_id=OuterRef("pk"), status__in=PENDING)
    for start in range(0, len(room_ids), BATCH_ROOMS):
        chunk = room_ids[start : start + BATCH_ROOMS]
        with transaction.atomic():
            # Lock the rooms first (the drain's claim skips locked rooms, its record
            # waits for them), then change the messages in a later statement, which
            # sees any claim that committed before the lock was granted.
            _lock_rooms(chunk)
            cancelled += Message.objects.filter(
                broadcast=broadcast, room_id__in=chunk, status=Message.Status.QUEUED
            ).update(status=Message.Status.CANCELLED, next_attempt_at=None, updated_at=now)
            # A room with nothing else pending leaves the queue; one with a later
            # message keeps its place, and the claim takes that message next.
            ChatRoom.objects.filter(pk__in=chunk, send_after__isnull=False).exclude(
                Exists(room_pending)
            ).update(send_after=None)
    logger.info("Broadcast #%s cancelled: %d message(s) not sent.", broadcast.pk, cancelled)
    return cancelled


def broadcasts_settle(*, broadcasts=None):
    """Mark ``sending`` broadcasts ``done`` when none of their messages is pending.

    ``broadcasts``: Broadcast rows or ids; None for all. One UPDATE, whatever the
    number; returns how many turned done. Cheap enough to call whenever someone looks
    at a broadcast (admin, the API, ``rchat_broadcast``) and from the periodic sweep.
    A message of a done broadcast sent again later (``message_retry``) shows in its
    progress; the broadcast stays done.
    """
    pending = Message.objects.filter(broadcast=OuterRef("pk"), status__in=PENDING)
    rows = Broadcast.objects.filter(status=Broadcast.Status.SENDING)
    if broadcasts is not None:
        rows = rows.filter(pk__in=[getattr(b, "pk", b) for b in broadcasts])
    return rows.exclude(Exists(pending)).update(
        status=Broadcast.Status.DONE, finished_at=timezone.now()
    )


# --- Queueing -----------------------------------------------------------------------------


def _room_ids(rooms):
    """The distinct room ids of ``rooms``, in order (a queryset: by id)."""
    if isinstance(rooms, QuerySet):
        # A search over messages can list a room twice; values_list drops the
        # queryset's joins for display (select_related, annotations stay harmless).
        rooms = rooms.order_by("pk").values_list("pk", flat=True)
    ids = []
    for room in rooms:
        value = getattr(room, "pk", room)
        if isinstance(value, bool) or not isinstance(value, int | str):
            value = None
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            reason = gettext(
                "Chat rooms are given by their ids (whole numbers), not %(value)s."
            ) % {"value": payloads.short(repr(room), 40)}
            raise InvalidMessage(reason, errors={"rooms": reason}) from None
    return list(dict.fromkeys(ids))


def _lock_rooms(room_ids):
    """Lock the rooms' rows, in id order like the drain's record (no deadlock between
    them); return {id: status} of those that exist."""
    return dict(
        ChatRoom.objects.select_for_update()
        .filter(pk__in=room_ids)
        .order_by("pk")
        .values_list("pk", "status")
    )


class _Queueing:
    """One broadcast being queued: its batches and the skip counts so far."""

    def __init__(self, broadcast, *, type, data, preview, author):
        self.broadcast = broadcast
        self.type, self.data, self.preview, self.author = type, data, preview, author
        self.queued = 0
        self.skipped = {}

    def skip(self, reason, room_ids):
        if not room_ids:
            return
        entry = self.skipped.setdefault(reason, {"count": 0, "room_ids": []})
        entry["count"] += len(room_ids)
        space = SKIPPED_IDS_KEPT - len(entry["room_ids"])
        entry["room_ids"].extend(room_ids[: max(space, 0)])

    def _save_skipped(self):
        Broadcast.objects.filter(pk=self.broadcast.pk).update(
            skipped=sum(entry["count"] for entry in self.skipped.values()),
            skipped_reasons=self.skipped,
        )

    def _lock_status(self):
        """Lock the broadcast's row (a cancel waits, and is seen); its status, or None."""
        return (
            Broadcast.objects.select_for_update()
            .filter(pk=self.broadcast.pk)
            .values_list("status", flat=True)
            .first()
        )

    def batch(self, room_ids):
        """Queue one batch in one transaction; False when the broadcast was cancelled."""
        with transaction.atomic():
            status = self._lock_status()
            if status != Broadcast.Status.QUEUEING:
                return False
            now = timezone.now()
            found = _lock_rooms(room_ids)
            open_ids = {pk for pk in room_ids if found.get(pk) == ChatRoom.Status.OPEN}
            # In the order given, so that skipped_reasons lists them as they were asked.
            self.skip(CLOSED, [pk for pk in room_ids if pk in found and pk not in open_ids])
            self.skip(NOT_FOUND, [pk for pk in room_ids if pk not in found])
            if open_ids:
                Message.objects.bulk_create(
                    Message(
                        room_id=pk,
                        direction=Message.Direction.OUT,
                        type=self.type,
                        data=self.data,
                        text=self.preview,
                        status=Message.Status.QUEUED,
                        author=self.author,
                        sender=Message.Sender.PERSON if self.author else "",
                        broadcast=self.broadcast,
                        next_attempt_at=now,
                        dedup_key=idempotency_key_new(),
                    )
                    for pk in sorted(open_ids)
                )
                ChatRoom.objects.filter(pk__in=list(open_ids)).update(
                    last_message_at=now, last_message_preview=self.preview
                )
                rooms_mark_ready(room_ids=open_ids, now=now)
                transaction.on_commit(broker.drain_wake, robust=True)
                self.queued += len(open_ids)
            if len(open_ids) < len(room_ids):
                self._save_skipped()
        return True

    def finish(self, rest, reason):
        """Record the rooms not reached and end the queueing: ``sending``, or ``done``
        when nothing was queued (a cancelled broadcast stays cancelled)."""
        now = timezone.now()
        with transaction.atomic():
            status = self._lock_status()
            if status is None:
                return
            if rest:
                self.skip(reason, list(rest))
                self._save_skipped()
            if status == Broadcast.Status.QUEUEING:
                if self.queued:
                    update = {"status": Broadcast.Status.SENDING}
                else:
                    update = {"status": Broadcast.Status.DONE, "finished_at": now}
                Broadcast.objects.filter(pk=self.broadcast.pk).update(**update)
