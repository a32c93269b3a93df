"""Business hours: open within a shift of the local weekday (split shifts, past midnight),
closed on holidays, in the credential's own time zone, and since when it is closed."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from rchat.bots.hours import hours_status, time_zone_valid
from rchat.models import ChatRoom, Shift
from tests.factories import BusinessHoursFactory, CredentialFactory, HolidayFactory, ShiftFactory

pytestmark = pytest.mark.django_db

BANGKOK = ZoneInfo("Asia/Bangkok")
MON, FRI, SAT = Shift.Weekday.MONDAY, Shift.Weekday.FRIDAY, Shift.Weekday.SATURDAY


def bkk(day, hour, minute=0):
    """A moment in Bangkok; 2025-01-06 is a Monday."""
    return datetime(2025, 1, day, hour, minute, tzinfo=BANGKOK)


def status(hours, at):
    return hours_status(credential_id=hours.credential_id, at=at)


@pytest.fixture
def hours():
    return BusinessHoursFactory()


def test_a_credential_without_business_hours_is_always_open():
    assert hours_status(credential_id=CredentialFactory().pk, at=bkk(6, 3)) is None


def test_open_within_a_shift_and_closed_outside_it(hours):
    ShiftFactory(hours=hours, weekday=MON, start=time(9), end=time(17))
    opened = status(hours, bkk(6, 10))
    assert opened.open
    assert "Monday 10:00" in opened.why and "Monday 09:00" in opened.why
    assert opened.closed_since is None
    assert not status(hours, bkk(6, 8, 59)).open
    closed = status(hours, bkk(6, 17))  # the end is not part of the shift
    assert not closed.open
    assert closed.closed_since == bkk(6, 17)
    assert "outside every shift" in closed.why
    assert not status(hours, bkk(7, 10)).open  # Tuesday


def test_split_shifts_close_between_them(hours):
    ShiftFactory(hours=hours, weekday=MON, start=time(9), end=time(12))
    ShiftFactory(hours=hours, weekday=MON, start=time(13), end=time(17))
    assert status(hours, bkk(6, 11, 59)).open
    lunch = status(hours, bkk(6, 12, 30))
    assert not lunch.open and lunch.closed_since == bkk(6, 12)
    assert status(hours, bkk(6, 13)).open
    evening = status(hours, bkk(6, 20))
    assert evening.closed_since == bkk(6, 17)


def test_a_shift_past_midnight_runs_into_the_next_day(hours):
    ShiftFactory(hours=hours, weekday=FRI, start=time(22), end=time(2))  # 2025-01-10
    assert not status(hours, bkk(10, 21)).open
    assert status(hours, bkk(10, 23)).open
    after_midnight = status(hours, bkk(11, 1, 30))
    assert after_midnight.open and "Saturday 01:30" in after_midnight.why
    closed = status(hours, bkk(11, 2))
    assert not closed.open and closed.closed_since == bkk(11, 2)


def test_a_holiday_closes_the_whole_day(hours):
    ShiftFactory(hours=hours, weekday=FRI, start=time(9), end=time(17))
    ShiftFactory(hours=hours, weekday=MON, start=time(9), end=time(17))
    HolidayFactory(hours=hours, date=date(2025, 1, 13), name="Teacher's Day")  # a Monday
    holiday = status(hours, bkk(13, 10))
    assert not holiday.open
    assert "holiday" in holiday.why and "Teacher's Day" in holiday.why
    # Closed since Friday's shift ended: the weekend and the holiday are one spell.
    assert holiday.closed_since == bkk(10, 17)
    assert status(hours, bkk(6, 10)).open  # the Monday before


def test_a_holiday_cuts_a_shift_that_runs_into_it(hours):
    ShiftFactory(hours=hours, weekday=FRI, start=time(22), end=time(2))
    HolidayFactory(hours=hours, date=date(2025, 1, 11), name="")  # the Saturday
    assert status(hours, bkk(10, 23)).open
    cut = status(hours, bkk(11, 1))
    assert not cut.open
    assert cut.closed_since == bkk(11, 0)


def test_a_shift_that_starts_on_a_holiday_is_not_worked_past_midnight(hours):
    ShiftFactory(hours=hours, weekday=FRI, start=time(22), end=time(2))
    HolidayFactory(hours=hours, date=date(2025, 1, 10))  # the Friday
    assert not status(hours, bkk(10, 23)).open
    saturday = status(hours, bkk(11, 1))
    assert not saturday.open
    assert saturday.closed_since == bkk(4, 2)  # the shift of the Friday before


def test_the_credentials_time_zone_decides_the_weekday_and_the_hour():
    bangkok = BusinessHoursFactory(time_zone="Asia/Bangkok")
    utc = BusinessHoursFactory(time_zone="UTC")
    for hours in (bangkok, utc):
        ShiftFactory(hours=hours, weekday=MON, start=time(9), end=time(17))
    morning = datetime(2025, 1, 6, 3, tzinfo=UTC)  # Monday 10:00 in Bangkok
    assert status(bangkok, morning).open
    assert not status(utc, morning).open
    late = datetime(2025, 1, 6, 10, tzinfo=UTC)  # Monday 17:00 in Bangkok
    assert not status(bangkok, late).open
    assert status(utc, late).open
    sunday_evening = datetime(2025, 1, 5, 22, tzinfo=UTC)  # already Monday 05:00 in Bangkok
    assert "Monday 05:00 in Asia/Bangkok" in status(bangkok, sunday_evening).why


def test_a_holiday_is_a_local_date(hours):
    ShiftFactory(hours=hours, weekday=MON, start=time(0), end=time(23, 59))
    HolidayFactory(hours=hours, date=date(2025, 1, 6))
    # 2025-01-05 18:00 UTC is already the holiday's 01:00 in Bangkok.
    assert not status(hours, datetime(2025, 1, 5, 18, tzinfo=UTC)).open


def test_summer_time_is_followed():
    london = BusinessHoursFactory(time_zone="Europe/London")
    ShiftFactory(hours=london, weekday=MON, start=time(9), end=time(17))
    summer = datetime(2025, 7, 7, 8, 30, tzinfo=UTC)  # 09:30 British Summer Time
    winter = datetime(2025, 1, 6, 8, 30, tzinfo=UTC)  # 08:30 Greenwich Mean Time
    assert status(london, summer).open
    assert not status(london, winter).open


def test_closed_since_is_unknown_without_a_shift_in_the_last_two_weeks(hours):
    none = status(hours, bkk(6, 10))
    assert not none.open and none.closed_since is None
    assert "no shifts" in none.why
    ShiftFactory(hours=hours, weekday=MON, start=time(9), end=time(17))
    for day in range(8, 24):
        HolidayFactory(hours=hours, date=date(2024, 12, day), name=f"closed {day}")
    # Mondays 2024-12-09, 16 and 23 were holidays; 2024-12-30 and 2025-01-06 were not.
    assert status(hours, bkk(6, 20)).closed_since == bkk(6, 17)
    HolidayFactory(hours=hours, date=date(2024, 12, 30))
    HolidayFactory(hours=hours, date=date(2025, 1, 6))
    assert status(hours, bkk(6, 20)).closed_since is None


def test_the_reply_and_the_handler_come_from_the_hours():
    hours = BusinessHoursFactory(
        reply_type="text", reply_data="ปิดแล้วค่ะ", out_of_hours_handler=ChatRoom.Handler.PEOPLE
    )
    closed = status(hours, bkk(6, 10))
    assert closed.reply == ("text", "ปิดแล้วค่ะ")
    assert closed.handler == ChatRoom.Handler.PEOPLE
    silent = BusinessHoursFactory(reply_data={})
    assert status(silent, bkk(6, 10)).reply is None
    assert status(silent, bkk(6, 10)).handler == ChatRoom.Handler.BOT


def test_an_unknown_time_zone_stored_anyway_counts_as_open():
    hours = BusinessHoursFactory(time_zone="Mars/Olympus_Mons")
    state = status(hours, bkk(6, 10))
    assert state.open and "Mars/Olympus_Mons" in state.why


def test_hours_status_reads_three_queries(hours, django_assert_num_queries):
    ShiftFactory(hours=hours, weekday=MON)
    HolidayFactory(hours=hours, date=date(2025, 1, 1))
    with django_assert_num_queries(3):
        hours_status(credential_id=hours.credential_id, at=bkk(6, 10))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Asia/Bangkok", True),
        ("UTC", True),
        ("Europe/London", True),
        ("Mars/Olympus_Mons", False),
        ("", False),
        ("Asia", False),
        ("../../etc/passwd", False),
        ("Asia/Bangkok\x00", False),
        (None, False),
    ],
)
def test_time_zone_valid(name, valid):
    assert time_zone_valid(name) is valid
