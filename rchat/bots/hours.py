"""Business hours: is a credential's team at work now, and since when has it not been?

A credential's ``BusinessHours`` has shifts (a weekday, from, until: several on one day
make split shifts; one whose end is not after its start runs past midnight into the
next day) and holidays, in its own time zone. Without a BusinessHours row a credential
is always open.

A holiday closes its whole local date, and a shift that starts on a holiday is not
worked at all, even the part of it past midnight: "closed that day" is what staff mean
when they enter one.
"""

import logging
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import BusinessHours, Shift

logger = logging.getLogger(__name__)

#: How far back ``closed_since`` looks for the end of the last shift.
LOOKBACK_DAYS = 14


@dataclass(frozen=True)
class HoursStatus:
    """Whether a credential is open at a moment, and what to do when it is not.

    ``why``: one translated sentence. ``closed_since``: while closed, when the closed
    spell began (the end of the last shift, or the start of the holiday that cut it;
    None when no shift ended in the last ``LOOKBACK_DAYS`` days): the out-of-hours reply
    is sent once per closed spell. ``reply``: the out-of-hours reply as (type, data),
    None when none is set (given whether open or not). ``handler``: who gets chats out
    of hours (a ``ChatRoom.Handler`` value).
    """

    open: bool
    why: str
    closed_since: datetime | None
    reply: tuple[str, object] | None
    handler: str


def time_zone_valid(name):
    """Whether ``name`` is an IANA time zone this machine knows (e.g. "Asia/Bangkok")."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of the tz database ("Asia"), not a zone.
        return False
    return True


def hours_status(*, credential_id, at):
    """The business-hours state of ``credential_id`` at ``at`` (an aware datetime; a naive
    one is read in Django's current time zone), or None when it has no business hours
    (always open). Three queries: the hours, their shifts, holidays near ``at``."""
    hours = BusinessHours.objects.filter(credential_id=credential_id).first()
    if hours is None:
        return None
    at = _aware(at)
    return status_of(
        hours,
        at=at,
        shifts=list(hours.shifts.all()),
        holidays=_holidays_near(hours, at),
    )


def status_of(hours, *, at, shifts=None, holidays=None):
    """``hours_status`` for a ``BusinessHours`` already read (admin lists prefetch its
    shifts and holidays; without them given, they are read)."""
    at = _aware(at)
    reply = (hours.reply_type, hours.reply_data) if _has_reply(hours.reply_data) else None
    handler = hours.out_of_hours_handler
    try:
        zone = zoneinfo.ZoneInfo(hours.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # Admin refuses such a name; one stored another way must not stop the bot.
        logger.warning("Business hours #%s: unknown time zone %r", hours.pk, hours.time_zone)
        why = _("The time zone “%(zone)s” is unknown: treated as always open.") % {
            "zone": hours.time_zone
        }
        return HoursStatus(True, why, None, reply, handler)
    if shifts is None:
        shifts = list(hours.shifts.all())
    if holidays is None:
        holidays = list(hours.holidays.all())
    local = at.astimezone(zone)
    today = local.date()
    closed_days = {holiday.date: holiday for holiday in holidays}
    spells = _open_spells(shifts, closed_days, zone, today)
    now = at.astimezone(UTC)
    place = _("%(day)s %(time)s in %(zone)s") % {
        "day": Shift.Weekday(today.weekday()).label,
        "time": local.strftime("%H:%M"),
        "zone": hours.time_zone,
    }
    for start, end, shift in spells:
        if start <= now < end:
            why = _("Open: %(place)s is within the shift %(shift)s.") % {
                "place": place,
                "shift": shift,
            }
            return HoursStatus(True, why, None, reply, handler)
    ended = [end for _start, end, _shift in spells if end <= now]
    closed_since = max(ended) if ended else None
    if closed_since is not None and closed_since < now - timedelta(days=LOOKBACK_DAYS):
        closed_since = None
    holiday = closed_days.get(today)
    if holiday is not None:
        why = _("Closed: %(date)s is a holiday (%(name)s).") % {
            "date": today.isoformat(),
            "name": holiday.name or _("no name"),
        }
    elif not shifts:
        why = _("Closed: no shifts are set.")
    else:
        why = _("Closed: %(place)s is outside every shift.") % {"place": place}
    return HoursStatus(False, why, closed_since, reply, handler)


def _aware(at):
    return timezone.make_aware(at) if timezone.is_naive(at) else at


def _has_reply(data):
    return data not in (None, "", {}, [])


def _holidays_near(hours, at):
    # Local dates differ from UTC ones by at most a day: a day's margin either side.
    day = at.astimezone(UTC).date()
    return list(
        hours.holidays.filter(
            date__gte=day - timedelta(days=LOOKBACK_DAYS + 2), date__lte=day + timedelta(days=1)
        )
    )


def _open_spells(shifts, closed_days, zone, today):
    """The shifts worked from ``LOOKBACK_DAYS`` (and one) days before ``today`` to
    ``today``, as (start, end, shift) in UTC, holidays cut out. Closed at a moment no
    spell contains, the closed spell began at the latest end before it (shifts that
    touch or overlap need no merging for that)."""
    spells = []
    for offset in range(LOOKBACK_DAYS + 1, -1, -1):
        day = today - timedelta(days=offset)
        if day in closed_days:
            continue
        for shift in shifts:
            if shift.weekday != day.weekday():
                continue
            last_day = day if shift.end > shift.start else day + timedelta(days=1)
            start = _moment(day, shift.start, zone)
            end = _moment(last_day, shift.end, zone)
            if last_day != day and last_day in closed_days:
                # Past midnight into a holiday: the shift stops when the holiday starts.
                end = _moment(last_day, time(0), zone)
            if start < end:
                spells.append((start, end, shift))
    return spells


def _moment(day, clock, zone):
    """A local wall-clock time as UTC (a time skipped by a DST change reads as after it)."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
