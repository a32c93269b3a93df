"""How the bot is doing, per day: conversations it answered alone, conversations handed
to people and why, and how long end users waited for a first answer.

Definitions (each day is a calendar day in the current time zone: the site's
``TIME_ZONE`` unless the site activates another, as for the overview's other charts):

- A **conversation** of a day is a chat room with an inbound message that day.
- It was **handed to people** that day if the room has a ``Handover`` to people that
  day (whatever the reason: the end user asked, a rule, the bot, hours, a take-over).
- It was **answered by the bot alone** if it got a reply from the bot or a rule that
  day and was not handed to people that day. The rest are **neither** (people had
  the room all day, or the bot said nothing).
- The **bot's first response** to an inbound message is the time until the room's
  next outbound message, counted when that message was written by the bot or a rule
  (a room the bot handled then). It belongs to the day of the inbound message.
- **People's first response** to a hand-over to people is the time until the room's
  first outbound message written by a person from then on (hand-overs nobody has
  answered yet are left out). It belongs to the day of the hand-over.

Replies that never reached the end user (cancelled, failed) are no answer. Medians and
90th percentiles interpolate as PostgreSQL's ``percentile_cont`` does; on PostgreSQL it
computes them, on other databases the waiting times of the period are read (one
column) and computed here. Every figure comes from a fixed number of queries,
whatever the number of rooms and messages.
"""

import dataclasses
import math
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import ChatRoom, Handover, Message

#: Outbound messages written by the bot: the site's bot, or an auto-reply rule.
BOT_SENDERS = (Message.Sender.BOT, Message.Sender.RULE)
#: Outbound messages that did not reach the end user, and so answered nothing.
NOT_ANSWERS = (Message.Status.CANCELLED, Message.Status.FAILED)
#: The percentiles reported for waiting times.
MEDIAN, P90 = 0.5, 0.9


@dataclasses.dataclass(frozen=True)
class ResponseTimes:
    """Waiting times for a first answer: how many, their median and 90th percentile
    (in seconds; None when there were none)."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


@dataclasses.dataclass(frozen=True)
class BotDay:
    """One day's figures (see the module's docstring for what each counts)."""

    day: date
    conversations: int = 0
    bot_alone: int = 0
    to_people: int = 0
    bot_response: ResponseTimes = ResponseTimes()
    people_response: ResponseTimes = ResponseTimes()
    #: Hand-overs of the day by ``Handover.Reason`` value (reasons with none left out).
    handovers: dict = dataclasses.field(default_factory=dict)

    @property
    def neither(self):
        return self.conversations - self.bot_alone - self.to_people


@dataclasses.dataclass(frozen=True)
class BotStats:
    """The last days' figures, oldest day first, and the period's totals."""

    days: list
    #: Every ``Handover.Reason`` in its declared order: ``(value, label, count)``.
    reasons: list
    bot_response: ResponseTimes
    people_response: ResponseTimes

    @property
    def conversations(self):
        return sum(day.conversations for day in self.days)

    @property
    def bot_alone(self):
        return sum(day.bot_alone for day in self.days)

    @property
    def to_people(self):
        return sum(day.to_people for day in self.days)

    @property
    def neither(self):
        return sum(day.neither for day in self.days)

    @property
    def bot_alone_rate(self):
        """Conversations the bot answered alone, in percent (None without any)."""
        return round(100 * self.bot_alone / self.conversations, 1) if self.conversations else None


def bot_stats(*, days=14, now=None):
    """The bot's figures for the last ``days`` days, today included (a ``BotStats``).

    Six queries on PostgreSQL, four elsewhere, whatever the volume.
    """
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now or timezone.now(), tz)
    dates = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    since = timezone.make_aware(datetime.combine(dates[0], time.min), tz)
    until = timezone.make_aware(datetime.combine(today + timedelta(days=1), time.min), tz)

    conversations = _conversations(since, until, tz)
    handovers = _handovers(since, until, tz)
    bot_daily, bot_total = _percentiles(_bot_waits(since, until, tz))
    people_daily, people_total = _percentiles(_people_waits(since, until, tz))

    per_day = [
        BotDay(
            day=day,
            **conversations.get(day, {}),
            bot_response=bot_daily.get(day, ResponseTimes()),
            people_response=people_daily.get(day, ResponseTimes()),
            handovers=handovers.get(day, {}),
        )
        for day in dates
    ]
    totals = {}
    for counts in handovers.values():
        for reason, count in counts.items():
            totals[reason] = totals.get(reason, 0) + count
    reasons = [
        (reason.value, reason.label, totals.get(reason.value, 0)) for reason in Handover.Reason
    ]
    return BotStats(
        days=per_day, reasons=reasons, bot_response=bot_total, people_response=people_total
    )


# --- Queries -----------------------------------------------------------------------------


def _inbound(since, until, tz):
    return Message.objects.filter(
        direction=Message.Direction.IN, created_at__gte=since, created_at__lt=until
    ).annotate(day=TruncDate("created_at", tzinfo=tz))


def _answers():
    return Message.objects.filter(direction=Message.Direction.OUT).exclude(status__in=NOT_ANSWERS)


def _conversations(since, until, tz):
    """{day: {conversations, bot_alone, to_people}}, in one query: each inbound message
    of the period, with whether its room had a bot reply / a hand-over to people that
    same day, counted by distinct room per day."""
    # The period's bounds as well as the day: the index on created_at / at narrows the
    # rows before the day of each is worked out.
    bot_reply = (
        _answers()
        .filter(
            room=OuterRef("room_id"),
            sender__in=BOT_SENDERS,
            created_at__gte=since,
            created_at__lt=until,
        )
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .filter(day=OuterRef("day"))
    )
    to_people = (
        Handover.objects.filter(
            room=OuterRef("room_id"), to=ChatRoom.Handler.PEOPLE, at__gte=since, at__lt=until
        )
        .annotate(day=TruncDate("at", tzinfo=tz))
        .filter(day=OuterRef("day"))
    )
    rows = (
        _inbound(since, until, tz)
        .annotate(bot_replied=Exists(bot_reply), handed=Exists(to_people))
        .values("day")
        .annotate(
            conversations=Count("room_id", distinct=True),
            to_people=Count("room_id", distinct=True, filter=Q(handed=True)),
            bot_alone=Count("room_id", distinct=True, filter=Q(bot_replied=True, handed=False)),
        )
        .order_by()
    )
    return {row.pop("day"): row for row in rows}


def _handovers(since, until, tz):
    """{day: {reason: count}} for every hand-over of the period (either way), one query."""
    rows = (
        Handover.objects.filter(at__gte=since, at__lt=until)
        .annotate(day=TruncDate("at", tzinfo=tz))
        .values("day", "reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    found = {}
    for row in rows:
        found.setdefault(row["day"], {})[row["reason"]] = row["n"]
    return found


def _bot_waits(since, until, tz):
    """Inbound messages of the period whose room's next answer came from the bot, each
    with ``day`` and ``wait`` (until that answer)."""
    # "Next" in the thread's order (ids), which the (room, id) index serves directly.
    next_answer = _answers().filter(room=OuterRef("room_id"), id__gt=OuterRef("pk")).order_by("id")
    return (
        _inbound(since, until, tz)
        .annotate(
            answer_sender=Subquery(next_answer.values("sender")[:1]),
            answer_at=Subquery(next_answer.values("created_at")[:1]),
        )
        .filter(answer_sender__in=BOT_SENDERS)
        .annotate(wait=_wait("answer_at", "created_at"))
    )


def _people_waits(since, until, tz):
    """Hand-overs to people of the period that a person answered, each with ``day`` and
    ``wait`` (until the first answer a person wrote from the hand-over on)."""
    first_person = (
        _answers()
        .filter(
            room=OuterRef("room_id"), sender=Message.Sender.PERSON, created_at__gte=OuterRef("at")
        )
        .order_by("created_at", "id")
    )
    return (
        Handover.objects.filter(to=ChatRoom.Handler.PEOPLE, at__gte=since, at__lt=until)
        .annotate(
            day=TruncDate("at", tzinfo=tz),
            answer_at=Subquery(first_person.values("created_at")[:1]),
        )
        .filter(answer_at__isnull=False)
        .annotate(wait=_wait("answer_at", "at"))
    )


def _wait(later, earlier):
    return ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())


# --- Percentiles -------------------------------------------------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction, **extra):
        # A number of ours, never user input: written into the SQL as it is.
        super().__init__(expression, fraction=float(fraction), **extra)


def _percentiles(waits):
    """({day: ResponseTimes}, ResponseTimes of the whole period) for ``waits``."""
    if connection.vendor == "postgresql":
        figures = {
            "n": Count("pk"),
            "median": PercentileCont("wait", MEDIAN, output_field=DurationField()),
            "p90": PercentileCont("wait", P90, output_field=DurationField()),
        }
        daily = {
            row["day"]: _times(row["n"], row["median"], row["p90"])
            for row in waits.values("day").annotate(**figures).order_by()
        }
        total = waits.aggregate(**figures)
        return daily, _times(total["n"], total["median"], total["p90"])
    # Elsewhere: the period's waiting times, sorted by the database, computed here.
    by_day, every = {}, []
    for day, wait in waits.order_by("wait").values_list("day", "wait"):
        seconds = wait.total_seconds()
        by_day.setdefault(day, []).append(seconds)
        every.append(seconds)
    daily = {day: _times_of(seconds) for day, seconds in by_day.items()}
    return daily, _times_of(every)


def _times(count, median, p90):
    if not count:
        return ResponseTimes()
    return ResponseTimes(count=count, median=median.total_seconds(), p90=p90.total_seconds())


def _times_of(ordered):
    if not ordered:
        return ResponseTimes()
    return ResponseTimes(
        count=len(ordered), median=percentile(ordered, MEDIAN), p90=percentile(ordered, P90)
    )


def percentile(ordered, fraction):
    """``percentile_cont``: the value at ``fraction`` of sorted ``ordered``, interpolated
    linearly between the two nearest values."""
    position = fraction * (len(ordered) - 1)
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
