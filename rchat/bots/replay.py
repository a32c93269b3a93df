"""Replay the bot over stored conversations: what it did then against what it would do now.

For each inbound message of the chat rooms chosen (oldest first in each room), *then*
is what the bot and the rules wrote after it and before the room's next inbound message
(outbound messages written by "bot" or "rule"), and whether the room was handed to
people in that span; *now* is ``engine.decide(message, thread=…, dry_run=True)`` with
the rules and the site's bot as they are today. Staff use it after changing rules, to
see which answers change before an end user does.

Nothing is sent and nothing is written: ``dry_run`` asks the engine for that, and each
room is replayed inside a transaction that is rolled back whatever happens (so even a
bot that writes to the database leaves no trace).
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .. import payloads
from ..conf import get_setting
from ..exceptions import InvalidMessage
from ..models import BotForward, ChatRoom, Handover, Message

logger = logging.getLogger(__name__)

#: Who wrote an outbound message the bot is answerable for.
BOT_SENDERS = (Message.Sender.BOT, Message.Sender.RULE)
#: Hand-overs that are not the bot's doing: a person taking a room is not a decision of
#: the bot's, and is not compared.
NOT_THE_BOTS = (Handover.Reason.TAKEN,)
#: How much of a message a report quotes.
QUOTE_LENGTH = 80


@dataclass(frozen=True)
class Outcome:
    """What the bot did (or would do) about one inbound message."""

    #: (type, data) of each reply, in order, data as it is (or would be) sent.
    replies: tuple = ()
    hand_over: bool = False
    #: The hand-over's reason and detail in words ("" without one).
    hand_over_why: str = ""
    #: Who handled the chat room when the message came (then only: "bot" / "people").
    handler: str = ""
    #: Forwarded to the credential's external bot (then: a BotForward row exists).
    forwarded: bool = False

    def key(self):
        """What two outcomes are compared by: the replies and hand-over yes/no. An
        external bot's answers cannot be replayed (it is not called): a message
        forwarded then and now is the same, whatever the bot answered then."""
        if self.forwarded:
            return ("forwarded",)
        return (list(self.replies), self.hand_over)

    def shown(self):
        """The outcome in one line of words."""
        parts = [_reply_preview(type, data) for type, data in self.replies]
        if self.forwarded:
            parts.append(_("forwarded to the external bot"))
        if self.hand_over:
            parts.append(
                _("hand-over to people (%(why)s)") % {"why": self.hand_over_why}
                if self.hand_over_why
                else _("hand-over to people")
            )
        if not parts:
            return _("nothing")
        return " · ".join(parts)


@dataclass(frozen=True)
class ReplayedMessage:
    """One inbound message replayed."""

    room_id: int
    room: str
    message_id: int
    at: datetime
    text: str
    then: Outcome
    now: Outcome
    #: Why the engine decided as it did now (its ``Decision.why``), or the error.
    why: tuple = ()
    #: The error the engine raised for this message ("" when it decided).
    error: str = ""

    @property
    def same(self):
        return not self.error and self.then.key() == self.now.key()


@dataclass
class ReplayReport:
    """Counts over a replay, and the messages replayed (with ``keep_same`` false, only
    those whose outcome differs)."""

    rooms: int = 0
    messages: int = 0
    same: int = 0
    different: int = 0
    #: Of ``different``: messages the engine raised an error for.
    failed: int = 0
    #: The replay stopped at ``limit`` messages.
    truncated: bool = False
    results: list = field(default_factory=list)

    @property
    def differences(self):
        return [result for result in self.results if not result.same]

    def summary(self):
        """One line: "Replayed 1,234 messages in 56 chat rooms: 1,200 the same, 34 different."."""
        line = _(
            "Replayed %(messages)s in %(rooms)s: %(same)s the same, %(different)s different"
        ) % {
            "messages": ngettext("%(n)s message", "%(n)s messages", self.messages)
            % {"n": f"{self.messages:,}"},
            "rooms": ngettext("%(n)s chat room", "%(n)s chat rooms", self.rooms)
            % {"n": f"{self.rooms:,}"},
            "same": f"{self.same:,}",
            "different": f"{self.different:,}",
        }
        if self.failed:
            line += " " + _("(%(failed)s of them failed)") % {"failed": f"{self.failed:,}"}
        if self.truncated:
            line += "; " + _("stopped at the limit")
        return line + "."


def replay(
    *, rooms=None, credential_id=None, since=None, limit=None, progress=None, keep_same=True
):
    """Replay the bot over stored conversations; returns a ``ReplayReport``.

    ``rooms``: chat rooms (a queryset, instances or ids; default every room);
    ``credential_id``: only that credential's rooms; ``since``: only inbound messages
    written at or after this aware datetime (earlier ones still make up the thread);
    ``limit``: stop after this many inbound messages; ``progress``: called with the
    report after each room; ``keep_same``: keep the messages whose outcome is the same
    in ``report.results`` (false: only the differences, for long replays).

    Needs ``rchat.bots.engine`` (ImportError without it).
    """
    from . import engine

    report = ReplayReport()
    for room_id in _room_ids(rooms, credential_id, since):
        if limit is not None and report.messages >= limit:
            report.truncated = True
            break
        with transaction.atomic():
            try:
                _replay_room(engine, room_id, report, since, limit, keep_same)
            finally:
                # Belt and braces: whatever the engine or the site's bot wrote goes.
                transaction.set_rollback(True)
        if progress is not None:
            progress(report)
    return report


def _room_ids(rooms, credential_id, since):
    if rooms is None:
        chosen = ChatRoom.objects.all()
    elif isinstance(rooms, QuerySet):
        chosen = rooms
    else:
        ids = [room.pk if isinstance(room, ChatRoom) else int(room) for room in rooms]
        chosen = ChatRoom.objects.filter(pk__in=ids)
    if credential_id is not None:
        chosen = chosen.filter(credential_id=credential_id)
    if since is not None:
        chosen = chosen.filter(
            Exists(
                Message.objects.filter(
                    room=OuterRef("pk"), direction=Message.Direction.IN, created_at__gte=since
                )
            )
        )
    # Ids first, each room read in its own transaction: a long replay holds no cursor.
    return list(chosen.order_by("pk").values_list("pk", flat=True))


def _replay_room(engine, room_id, report, since, limit, keep_same):
    room = ChatRoom.objects.select_related("credential").filter(pk=room_id).first()
    if room is None:  # deleted since the ids were read
        return
    thread_length = get_setting("BOT_THREAD_LENGTH")
    messages = list(Message.objects.filter(room_id=room_id).order_by("id"))
    for message in messages:
        message.room = room  # the engine reads message.room: no query per message
    handovers = list(Handover.objects.filter(room_id=room_id).order_by("at", "id"))
    forwarded = set(
        BotForward.objects.filter(message__room_id=room_id).values_list("message_id", flat=True)
    )
    inbound = [n for n, message in enumerate(messages) if message.direction == Message.Direction.IN]
    replayed = 0
    for k, n in enumerate(inbound):
        message = messages[n]
        if since is not None and message.created_at < since:
            continue
        if limit is not None and report.messages >= limit:
            report.truncated = True
            break
        following = inbound[k + 1] if k + 1 < len(inbound) else len(messages)
        next_inbound = messages[following] if following < len(messages) else None
        then = _then(message, messages[n + 1 : following], next_inbound, handovers, room)
        if message.pk in forwarded:
            then = dataclasses.replace(then, forwarded=True)
        thread = messages[max(0, n + 1 - thread_length) : n + 1]
        # What the bot would do if it handled the room: in memory only (and rolled back).
        room.handler = ChatRoom.Handler.BOT
        now, why, error = _now(engine, message, thread)
        result = ReplayedMessage(
            room_id=room.pk,
            room=str(room),
            message_id=message.pk,
            at=message.created_at,
            text=payloads.short(" ".join((message.text or "").split()), QUOTE_LENGTH),
            then=then,
            now=now,
            why=why,
            error=error,
        )
        report.messages += 1
        replayed += 1
        if result.same:
            report.same += 1
        else:
            report.different += 1
            report.failed += bool(error)
        if keep_same or not result.same:
            report.results.append(result)
    if replayed:
        report.rooms += 1


def _then(message, span, next_inbound, handovers, room):
    replies = tuple(
        _canonical(reply.type, reply.data)
        for reply in span
        if reply.direction == Message.Direction.OUT and reply.sender in BOT_SENDERS
    )
    until = next_inbound.created_at if next_inbound is not None else None
    handed = [
        handover
        for handover in handovers
        if handover.to == ChatRoom.Handler.PEOPLE
        and handover.reason not in NOT_THE_BOTS
        and (
            handover.message_id == message.pk
            if handover.message_id is not None
            else handover.at >= message.created_at and (until is None or handover.at < until)
        )
    ]
    why = ""
    if handed:
        why = _reason_shown(handed[0].reason, handed[0].detail)
    return Outcome(
        replies=replies,
        hand_over=bool(handed),
        hand_over_why=why,
        handler=_handler_at(message, handovers, room),
    )


def _handler_at(message, handovers, room):
    """Who handled ``room`` when ``message`` came, from its hand-over records."""
    before = [
        handover
        for handover in handovers
        if handover.at <= message.created_at and handover.message_id != message.pk
    ]
    if before:
        return before[-1].to
    later = [handover for handover in handovers if handover not in before]
    if later:
        # The first change went to one side: the room was on the other before it.
        first = later[0].to
        return ChatRoom.Handler.BOT if first == ChatRoom.Handler.PEOPLE else ChatRoom.Handler.PEOPLE
    return room.handler


def _now(engine, message, thread):
    try:
        # A savepoint: a database error in one decision leaves the room's others to run.
        with transaction.atomic():
            decision = engine.decide(message, thread=thread, dry_run=True)
    except Exception as exc:  # a replay reports a failing message and goes on
        logger.exception("Replay: the engine failed on message #%s", message.pk)
        error = _("the engine failed: %(error)s") % {"error": f"{type(exc).__name__}: {exc}"}
        return Outcome(), (error,), error
    replies = tuple(_canonical(reply.type, reply.data) for reply in decision.replies or ())
    hand_over = decision.hand_over
    why = ""
    if hand_over is not None:
        why = _reason_shown(getattr(hand_over, "reason", ""), getattr(hand_over, "detail", ""))
    return (
        Outcome(
            replies=replies,
            hand_over=hand_over is not None,
            hand_over_why=why,
            forwarded=bool(getattr(decision, "forward", False)),
        ),
        tuple(str(line) for line in (decision.why or ())),
        "",
    )


def _canonical(type, data):
    # Compared as sent: message_send stores text stripped, a rule's reply may not be.
    try:
        return type, payloads.outbound_validate(type, data)
    except InvalidMessage:
        return type, data


def _reason_shown(reason, detail):
    try:
        label = str(Handover.Reason(reason).label)
    except ValueError:
        label = str(reason or "")
    return f"{label}: {detail}" if detail else label


def _reply_preview(type, data):
    try:
        return (
            f"“{payloads.outbound_preview(type, data)}”"
            if type == "text"
            else (payloads.outbound_preview(type, data))
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return f"[{type}]"
