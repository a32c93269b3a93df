"""Who handles a chat room, the bot or people, and every change of it (``Handover``).

A room the bot handles is answered by the auto-reply rules and the site's bot
(rchat/bots/engine.py); a room people handle hears nothing from the bot. The change to
people is strict: once ``room_take_over`` (or ``room_hand_over``) has committed, no bot
message reaches R-Chat for that room. Three things make it so: the change locks the
room, cancels the bot's queued messages and marks the room's latest message id
(``bot_silenced_through``) in one transaction; ``message_send`` refuses a bot message
for a room people handle, under the same lock; a bot message already in a worker's
hands is waited for before the change commits (it was sent before, then); and the
delivery claim drops any bot message up to the mark (services/delivery.py), one a
stopped worker left behind included. When the bot itself hands over, what it queued
before (its parting words) is still sent.
"""

import logging
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext

from ..conf import get_setting
from ..exceptions import InvalidMessage
from ..models import ChatRoom, Handover, Message

logger = logging.getLogger(__name__)

#: Messages written by the bot (the site's bot or a rule), as opposed to people.
BOT_SENDERS = (Message.Sender.BOT, Message.Sender.RULE)
#: How long a take-over waits for a bot message a worker is sending (then goes ahead).
IN_FLIGHT_WAIT_SECONDS = 5.0
_IN_FLIGHT_POLL = 0.05


def room_take_over(*, room, user):
    """People handle ``room`` from now on, ``user`` first (assigned if nobody is).

    The bot's messages still queued for the room are cancelled, and one a worker is
    sending is waited for (at most ``IN_FLIGHT_WAIT_SECONDS``), so no bot message is
    sent after this returns. Raises ``InvalidMessage`` for a closed room.
    """
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    while True:
        with transaction.atomic():
            locked = _lock(room)
            if locked.status != ChatRoom.Status.OPEN:
                reason = gettext("This chat room is closed; reopen it to reply.")
                raise InvalidMessage(reason, errors={"room": reason})
            in_flight = Message.objects.filter(
                room_id=locked.pk, status=Message.Status.SENDING, sender__in=BOT_SENDERS
            ).exists()
            if not in_flight or time.monotonic() > deadline:
                if in_flight:
                    logger.warning(
                        "Chat room %s taken over while a bot message was still being sent "
                        "after %.0f s (a worker stopped?)",
                        locked.pk,
                        IN_FLIGHT_WAIT_SECONDS,
                    )
                _bot_silence(locked)
                _people_take(locked, Handover.Reason.TAKEN, "", None, user, user)
                return _copy(locked, room)
        # A worker is sending the bot's message: let it finish and record (it needs the
        # room's lock for that), then look again.
        time.sleep(_IN_FLIGHT_POLL)


def room_hand_over(*, room, reason=Handover.Reason.BOT, detail="", message=None, by=None):
    """The bot gives ``room`` to people, with why (``reason``, ``detail``).

    What the bot queued before (its parting words) is still sent. The room stays
    unassigned unless it was assigned, so it shows in the inbox's Unassigned tab. A
    room people already handle is left as it is (no second record).
    """
    with transaction.atomic():
        locked = _lock(room)
        _people_take(locked, reason, detail, message, by, None)
    return _copy(locked, room)


def room_return_to_bot(*, room, by=None, reason=Handover.Reason.RETURNED, detail=""):
    """The bot answers ``room`` again (from the end user's next message on)."""
    with transaction.atomic():
        locked = _lock(room)
        if locked.handler == ChatRoom.Handler.BOT:
            return _copy(locked, room)
        now = timezone.now()
        locked.handler = ChatRoom.Handler.BOT
        locked.handler_since = now
        locked.handover_reason = ""
        locked.save(update_fields=["handler", "handler_since", "handover_reason"])
        Handover.objects.create(
            room=locked, to=ChatRoom.Handler.BOT, reason=reason, detail=detail[:300], by=by, at=now
        )
    return _copy(locked, room)


def rooms_return_idle(*, now=None):
    """Rooms people handle with no message for RCHAT["RETURN_TO_BOT_AFTER_MINUTES"]
    go back to the bot; returns how many (beat runs it with the stale sweep)."""
    minutes = get_setting("RETURN_TO_BOT_AFTER_MINUTES")
    if not minutes:
        return 0
    now = now or timezone.now()
    idle = ChatRoom.objects.filter(
        handler=ChatRoom.Handler.PEOPLE,
        status=ChatRoom.Status.OPEN,
        credential__bot_first=True,
        last_message_at__lt=now - timedelta(minutes=float(minutes)),
    )
    returned = 0
    for room in idle.order_by("pk")[:500]:
        room_return_to_bot(
            room=room,
            reason=Handover.Reason.IDLE,
            detail=gettext("No message for %(minutes)s minutes.") % {"minutes": minutes},
        )
        returned += 1
    return returned


def room_handler_for_new(credential):
    """Who handles a new chat room of ``credential``."""
    return ChatRoom.Handler.BOT if credential.bot_first else ChatRoom.Handler.PEOPLE


# --- Internals ---------------------------------------------------------------------------


def _bot_silence(locked):
    """Cancel the bot's queued messages in ``locked`` (a locked room) and mark where the
    bot was silenced, so that none of its messages so far is ever sent."""
    now = timezone.now()
    cancelled = Message.objects.filter(
        room_id=locked.pk, status=Message.Status.QUEUED, sender__in=BOT_SENDERS
    ).update(
        status=Message.Status.CANCELLED,
        last_error=gettext("Not sent: people took the chat room over."),
        updated_at=now,
    )
    latest = Message.objects.filter(room_id=locked.pk).aggregate(latest=Max("pk"))["latest"]
    locked.bot_silenced_through = latest
    locked.save(update_fields=["bot_silenced_through"])
    if cancelled:
        logger.info(
            "Chat room %s: %d bot message(s) cancelled by a take-over", locked.pk, cancelled
        )


def _people_take(locked, reason, detail, message, by, assign):
    now = timezone.now()
    fields = []
    if assign is not None and locked.assignee_id is None:
        locked.assignee = assign
        fields.append("assignee")
    if locked.handler != ChatRoom.Handler.PEOPLE:
        locked.handler = ChatRoom.Handler.PEOPLE
        locked.handler_since = now
        locked.handover_reason = _reason_text(reason, detail)
        fields += ["handler", "handler_since", "handover_reason"]
        Handover.objects.create(
            room=locked,
            to=ChatRoom.Handler.PEOPLE,
            reason=reason,
            detail=detail[:300],
            by=by,
            message=message,
            at=now,
        )
    if fields:
        locked.save(update_fields=fields)


def _reason_text(reason, detail):
    label = str(Handover.Reason(reason).label)
    text = f"{label}: {detail}" if detail else label
    return text[:300]


def _lock(room):
    return (
        ChatRoom.objects.select_for_update(of=("self",)).select_related("assignee").get(pk=room.pk)
    )


def _copy(locked, room):
    """Bring the caller's instance up to date with the locked row."""
    for name in ("handler", "handler_since", "handover_reason", "assignee_id", "status"):
        setattr(room, name, getattr(locked, name))
    if locked.assignee_id is not None:
        room.assignee = locked.assignee
    return room
