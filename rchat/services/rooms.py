"""Chat rooms: assigning, closing, reopening, marking read, finding by chat id."""

import logging

from django.utils.translation import gettext

from .. import payloads
from ..exceptions import (
    InvalidMessage,
)
from ..models import ChatRoom, Handover
from . import handover

logger = logging.getLogger(__name__)


# --- Chat rooms -------------------------------------------------------------------------


def room_assign(*, room, user):
    """Give ``room`` to ``user`` (None leaves it unassigned)."""
    room.assignee = user
    room.save(update_fields=["assignee"])
    return room


def room_close(*, room, by=None):
    """Close a conversation; new messages from the end user reopen it.

    A room people handled goes back to the bot when its credential starts rooms with
    the bot (``Credential.bot_first``): the next conversation starts like a new one.
    """
    room.status = ChatRoom.Status.CLOSED
    room.save(update_fields=["status"])
    if room.handler == ChatRoom.Handler.PEOPLE and room.credential.bot_first:
        handover.room_return_to_bot(room=room, by=by, reason=Handover.Reason.CLOSED)
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


def room_get_or_create(*, credential, chat_id):
    """The chat room ``chat_id`` of ``credential``, created (open) if rchat has not seen it.

    For senders that start a conversation by R-Chat's chat id (``rchat_send``).
    """
    chat_id = (chat_id or "").strip()
    longest = ChatRoom._meta.get_field("chat_id").max_length
    reason = ""
    if not chat_id:
        reason = gettext("A chat id is required.")
    elif len(chat_id) > longest:
        reason = gettext("A chat id has at most %(n)d characters.") % {"n": longest}
    elif payloads.inbound_clean(chat_id) != chat_id:
        reason = gettext("A chat id cannot hold a NUL character or an unpaired surrogate.")
    if reason:
        raise InvalidMessage(reason, errors={"chat_id": reason})
    room, _created = ChatRoom.objects.get_or_create(
        credential=credential,
        chat_id=chat_id,
        defaults={"handler": handover.room_handler_for_new(credential)},
    )
    return room
