"""What the bot does about an inbound message: ``decide`` (nothing written) and
``bot_answer`` (decide, then queue the replies and hand over).

In order, for a room the bot handles:

1. the end user asks for a person (RCHAT["HANDOVER_PHRASES"]) → RCHAT["HANDOVER_REPLY"]
   and the room goes to people;
2. out of business hours → the out-of-hours reply, once per closed spell, and the room
   goes to people if the hours say so;
3. a new chat room's first message → the greeting rule;
4. the first keyword or pattern rule that matches → its reply (and a hand-over if the
   rule says so);
5. otherwise the credential's external bot (forwarded, it answers through the API) or
   the site's bot (RCHAT["BOT"]); its exception or a reply that cannot be sent hands
   the room to people with the error as the reason.

A room people handle gets nothing. ``decide(..., dry_run=True)`` runs the same steps,
the site's bot included, and writes nothing: replay (replay.py) compares it with what
was answered then.
"""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from .. import broker, payloads
from ..conf import get_setting
from ..exceptions import InvalidMessage, RChatConfigurationError
from ..models import AutoReply, ChatRoom, ExternalBot, Handover, Message
from . import hours, rules
from .base import Bot, HandOver, Reply

logger = logging.getLogger(__name__)

FORWARD = "rchat.bots.tasks.forward_to_bot"


@dataclass
class PlannedReply:
    """A reply ``decide`` would send: its message and who writes it."""

    type: str
    data: object
    sender: str
    rule: AutoReply | None = None


@dataclass
class PlannedHandOver:
    reason: str
    detail: str = ""


@dataclass
class Decision:
    replies: list = field(default_factory=list)
    hand_over: PlannedHandOver | None = None
    forward: bool = False
    why: list = field(default_factory=list)

    @property
    def silent(self):
        return not (self.replies or self.hand_over or self.forward)


def thread_for(message):
    """The room's latest messages up to ``message`` (RCHAT["BOT_THREAD_LENGTH"]),
    oldest first."""
    length = int(get_setting("BOT_THREAD_LENGTH"))
    latest = (
        Message.objects.filter(room_id=message.room_id, id__lte=message.pk)
        .select_related("author")
        .order_by("-id")[:length]
    )
    return list(reversed(latest))


def decide(message, *, thread=None, dry_run=False):
    """What the bot would do about inbound ``message`` now (see the module's steps)."""
    room = message.room
    decision = Decision()
    if room.handler != ChatRoom.Handler.BOT:
        decision.why.append(gettext("People handle this chat room: the bot stays silent."))
        return decision
    text = message.text or ""

    phrase = rules.asks_for_person(text)
    if phrase:
        decision.why.append(
            gettext("The end user asked for a person (“%(phrase)s”).") % {"phrase": phrase}
        )
        reply = get_setting("HANDOVER_REPLY")
        if reply:
            decision.replies.append(PlannedReply(reply["type"], reply["data"], Message.Sender.RULE))
        decision.hand_over = PlannedHandOver(Handover.Reason.ASKED, f"“{phrase}”")
        return decision

    status = hours.hours_status(credential_id=room.credential_id, at=message.created_at)
    if status is not None and not status.open:
        decision.why.append(status.why)
        if status.reply and not _hours_reply_sent(message, status):
            decision.replies.append(PlannedReply(*status.reply, Message.Sender.RULE))
        if status.handler == ChatRoom.Handler.PEOPLE:
            decision.hand_over = PlannedHandOver(Handover.Reason.HOURS, status.why)
            return decision

    first = not Message.objects.filter(
        room_id=room.pk, direction=Message.Direction.IN, id__lt=message.pk
    ).exists()
    if first:
        greeting = rules.rule_for(credential_id=room.credential_id, text=text, first_message=True)
        if greeting is not None and greeting.rule.kind == AutoReply.Kind.GREETING:
            decision.why.append(greeting.why)
            decision.replies.append(_rule_reply(greeting.rule))
    match = rules.rule_for(credential_id=room.credential_id, text=text, first_message=False)
    if match is not None:
        decision.why.append(match.why)
        decision.replies.append(_rule_reply(match.rule))
        if match.rule.hand_over:
            decision.hand_over = PlannedHandOver(Handover.Reason.RULE, match.rule.name)
        return decision

    external = ExternalBot.objects.filter(credential_id=room.credential_id, active=True).first()
    if external is not None:
        decision.forward = True
        decision.why.append(
            gettext("Forwarded to the external bot at %(url)s.") % {"url": external.url}
            if not dry_run
            else gettext("Would be forwarded to the external bot at %(url)s (not called).")
            % {"url": external.url}
        )
        return decision

    bot = site_bot()
    if bot is None:
        if not decision.replies:
            decision.why.append(gettext('No rule matched and no bot is set (RCHAT["BOT"]).'))
        return decision
    try:
        answer = bot.answer(message, thread if thread is not None else thread_for(message))
        _bot_answer_add(decision, answer)
    except Exception as exc:  # a site's bot failing hands the room to people
        logger.exception("RCHAT['BOT'] failed on message %s", message.pk)
        detail = f"{type(exc).__name__}: {exc}"[:300]
        decision.why.append(gettext("The bot failed: %(error)s") % {"error": detail})
        decision.hand_over = PlannedHandOver(Handover.Reason.BOT_ERROR, detail)
    return decision


def bot_answer(message_id):
    """Decide about inbound message ``message_id`` and do it; the ``Decision``.

    Replies go through ``services.message_send`` (in order, with everything else sent
    to that end user); a reply the bot wrote that cannot be sent (bad data) hands the
    room to people with the reason. Replies stop as soon as people hold the room.
    """
    from .. import services

    message = Message.objects.select_related("room", "room__credential").filter(pk=message_id)
    message = message.filter(direction=Message.Direction.IN).first()
    if message is None:
        return None
    decision = decide(message)
    room = message.room
    for reply in decision.replies:
        try:
            services.message_send(
                room=room, type=reply.type, data=reply.data, sender=reply.sender, rule=reply.rule
            )
        except InvalidMessage as exc:
            if "sender" in (exc.errors or {}):
                decision.why.append(gettext("People took the chat room over: replies not sent."))
                return decision
            if reply.sender == Message.Sender.BOT:
                detail = gettext("The bot's reply cannot be sent: %(reason)s") % {
                    "reason": exc.message
                }
                decision.hand_over = PlannedHandOver(Handover.Reason.BOT_ERROR, detail[:300])
                break
            logger.error("A rule's reply to message %s cannot be sent: %s", message_id, exc)
    if decision.hand_over is not None:
        room.refresh_from_db(fields=["handler", "status"])
        if room.handler == ChatRoom.Handler.BOT:
            services.room_hand_over(
                room=room,
                reason=decision.hand_over.reason,
                detail=decision.hand_over.detail,
                message=message,
            )
    if decision.forward:
        transaction.on_commit(lambda: broker.publish(FORWARD, message.pk), robust=True)
    return decision


def site_bot():
    """An instance of RCHAT["BOT"], or None when it is not set."""
    path = get_setting("BOT")
    if not path:
        return None
    return _bot_class(path)()


def _bot_class(path):
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise RChatConfigurationError(f'RCHAT["BOT"] = {path!r} cannot be imported: {exc}') from exc
    if not (isinstance(cls, type) and issubclass(cls, Bot)):
        raise RChatConfigurationError(
            f'RCHAT["BOT"] = {path!r} is not a subclass of rchat.bots.Bot.'
        )
    return cls


def _rule_reply(rule):
    return PlannedReply(rule.reply_type, rule.reply_data, Message.Sender.RULE, rule)


def _bot_answer_add(decision, answer):
    if answer is None:
        decision.why.append(gettext("The bot said nothing."))
        return
    items = answer if isinstance(answer, list | tuple) else [answer]
    for item in items:
        if isinstance(item, Reply):
            data = payloads.outbound_validate(item.type, item.data)
            decision.replies.append(PlannedReply(item.type, data, Message.Sender.BOT))
        elif isinstance(item, HandOver):
            decision.hand_over = PlannedHandOver(Handover.Reason.BOT, str(item.reason)[:300])
        else:
            raise TypeError(
                f"Bot.answer returned {type(item).__name__}; expected Reply, HandOver or None."
            )
    decision.why.append(
        gettext("The bot answered (%(replies)d replies%(handover)s).")
        % {
            "replies": len([i for i in items if isinstance(i, Reply)]),
            "handover": gettext(", then a hand-over") if decision.hand_over else "",
        }
    )


def _hours_reply_sent(message, status):
    """Whether the out-of-hours reply went to this room in the current closed spell."""
    sent = Message.objects.filter(
        room_id=message.room_id,
        direction=Message.Direction.OUT,
        sender=Message.Sender.RULE,
        rule__isnull=True,
        type=status.reply[0],
        id__lt=message.pk,
    ).exclude(status=Message.Status.CANCELLED)
    if status.closed_since is not None:
        sent = sent.filter(created_at__gte=status.closed_since)
    return any(m.data == status.reply[1] for m in sent.only("data")[:20])
