"""Who handles a chat room, as the inbox's header and admin's conversation show it."""

from django.utils.translation import gettext

from ..models import ChatRoom


def room_handler_parts(room):
    """A dict for the templates: ``handler`` ("bot" or "people"), ``label`` ("Bot" /
    "People"), ``since`` (a datetime or None), ``reason`` (why people have it, "" while
    the bot does), and which button applies: ``can_take_over`` / ``can_return``."""
    by_bot = room.handler == ChatRoom.Handler.BOT
    is_open = room.status == ChatRoom.Status.OPEN
    return {
        "handler": room.handler,
        "label": gettext("Bot") if by_bot else gettext("People"),
        "since": room.handler_since,
        "reason": "" if by_bot else room.handover_reason,
        # A closed room cannot be taken over (the service refuses it); closing one
        # already gave it back to the bot.
        "can_take_over": by_bot and is_open,
        "can_return": not by_bot,
    }
