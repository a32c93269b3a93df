"""How the bot is doing (rchat.bots.stats and the admin overview): every figure from a few
days of rooms, messages and hand-overs with known times, and the CSV export."""

import codecs
import csv
import io
import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from rchat.bots.stats import bot_stats, percentile
from rchat.models import Handover, Message
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

BANGKOK = ZoneInfo("Asia/Bangkok")
#: The days of the fixture: day 3 is today in Bangkok, days 1 and 2 the two before.
TODAY = timezone.localdate(timezone.now(), BANGKOK)
DAYS = {1: TODAY - timedelta(days=2), 2: TODAY - timedelta(days=1), 3: TODAY}


def at(day, hour, minute=0, second=0):
    """A moment of fixture day ``day`` (1, 2 or 3) in Bangkok."""
    return datetime.combine(DAYS[day], time(hour, minute, second), tzinfo=BANGKOK)


def iso(day):
    return DAYS[day].isoformat()


def message(room, when, direction="in", sender="", status=None, author=None, rule=None):
    status = status or ("received" if direction == "in" else "sent")
    made = Message.objects.create(
        room=room,
        direction=direction,
        type="text",
        data="x",
        text="x",
        status=status,
        sender=sender,
        author=author,
        rule=rule,
    )
    # created_at is auto_now_add: the moment is set afterwards.
    Message.objects.filter(pk=made.pk).update(created_at=when)
    return made


def handover(room, when, reason, to="people", by=None):
    return Handover.objects.create(room=room, to=to, reason=reason, at=when, by=by)


@pytest.fixture
def week(settings):
    """Three days of conversations, each kind once or more (see the comments)."""
    settings.TIME_ZONE = "Asia/Bangkok"
    agent = UserFactory(username="ploy", first_name="Ploy")
    credential = CredentialFactory(bot_first=True)
    room = lambda name: ChatRoomFactory(credential=credential, display_name=name)  # noqa: E731

    # Day 1. Anong: the bot answers in 2 s, then 4 s: answered by the bot alone.
    anong = room("Anong")
    message(anong, at(1, 9))
    message(anong, at(1, 9, 0, 2), "out", "bot")
    message(anong, at(1, 9, 5))
    message(anong, at(1, 9, 5, 4), "out", "rule")
    # Boon: a rule answers in 10 s, then he asks for a person (hand-over at 10:01);
    # Ploy answers 5 minutes later: handed to people.
    boon = room("Boon")
    message(boon, at(1, 10))
    message(boon, at(1, 10, 0, 10), "out", "rule")
    message(boon, at(1, 10, 1))
    handover(boon, at(1, 10, 1), "asked")
    message(boon, at(1, 10, 6), "out", "person", author=agent)
    # Chai: people have the room all day and answer: neither. His message's next answer
    # is a person's, so it is no bot response either.
    chai = room("Chai")
    message(chai, at(1, 11))
    message(chai, at(1, 11, 3), "out", "person", author=agent)

    # Day 2, just after midnight in Bangkok (still day 1 in UTC): Anong again, the
    # bot answers in 6 s; its earlier message was cancelled (no answer), so the wait
    # runs to the reply that reached her.
    message(anong, at(2, 0, 30))
    message(anong, at(2, 0, 30, 3), "out", "bot", status="cancelled")
    message(anong, at(2, 0, 30, 6), "out", "bot")
    # Dao: the bot is silent and hands over out of hours at 23:00; nobody answers yet.
    dao = room("Dao")
    message(dao, at(2, 22, 59))
    handover(dao, at(2, 23), "hours")
    # Boon, back to the bot the next morning (not a hand-over to people).
    handover(boon, at(2, 8), "returned", to="bot", by=agent)

    # Day 3. Ead: the bot answers in 8 s; Ploy takes over (no inbound after it) and
    # writes 30 s later: handed to people, the bot's answer counted all the same.
    ead = room("Ead")
    message(ead, at(3, 14))
    message(ead, at(3, 14, 0, 8), "out", "bot")
    handover(ead, at(3, 14, 2), "taken", by=agent)
    message(ead, at(3, 14, 2, 30), "out", "person", author=agent)
    # Dao's hand-over of the day before is answered today, 15 h later.
    message(dao, at(3, 14), "out", "person", author=agent)

    # Before the period (7 days asked for 3): not counted anywhere.
    old = room("Old")
    message(old, at(1, 0) - timedelta(days=20))
    message(old, at(1, 0) - timedelta(days=20, seconds=-1), "out", "bot")
    return {"agent": agent}


def test_conversations_per_day_are_told_apart(week):
    """Each day's conversations: answered by the bot alone, handed to people, neither."""
    stats = bot_stats(days=3)
    rows = [
        (d.day.isoformat(), d.conversations, d.bot_alone, d.to_people, d.neither)
        for d in stats.days
    ]
    assert rows == [
        (iso(1), 3, 1, 1, 1),
        (iso(2), 2, 1, 1, 0),
        (iso(3), 1, 0, 1, 0),
    ]
    assert (stats.conversations, stats.bot_alone, stats.to_people, stats.neither) == (6, 2, 3, 1)
    assert stats.bot_alone_rate == 33.3


def test_hand_over_reasons_are_counted_over_the_period_and_per_day(week):
    """Every reason is listed, in the model's order, with its count over the period."""
    stats = bot_stats(days=3)
    counts = {value: count for value, _label, count in stats.reasons}
    assert counts == {
        "asked": 1,
        "bot": 0,
        "taken": 1,
        "bot_error": 0,
        "hours": 1,
        "rule": 0,
        "returned": 1,
        "closed": 0,
        "idle": 0,
    }
    assert [d.handovers for d in stats.days] == [
        {"asked": 1},
        {"hours": 1, "returned": 1},
        {"taken": 1},
    ]
    labels = dict((value, str(label)) for value, label, _count in stats.reasons)
    assert labels["asked"] == "The end user asked for a person"


def test_the_bot_s_first_response_times(week):
    """From an inbound message to the next answer, when the bot or a rule gave it."""
    stats = bot_stats(days=3)
    day1, day2, day3 = (d.bot_response for d in stats.days)
    # Day 1: 2, 4 and 10 s (Chai's message was answered by a person; Boon's second
    # message was answered by a person too).
    assert (day1.count, day1.median, day1.p90) == (3, 4.0, pytest.approx(8.8))
    assert (day2.count, day2.median, day2.p90) == (1, 6.0, 6.0)
    assert (day3.count, day3.median, day3.p90) == (1, 8.0, 8.0)
    total = stats.bot_response
    # 2, 4, 6, 8, 10 s.
    assert (total.count, total.median, total.p90) == (5, 6.0, pytest.approx(9.2))


def test_people_s_first_response_times(week):
    """From a hand-over to people to the first answer a person wrote after it."""
    stats = bot_stats(days=3)
    day1, day2, day3 = (d.people_response for d in stats.days)
    assert (day1.count, day1.median, day1.p90) == (1, 300.0, 300.0)
    assert (day2.count, day2.median) == (1, 15 * 3600.0)
    assert (day3.count, day3.median) == (1, 30.0)
    total = stats.people_response
    assert total.count == 3
    assert total.median == 300.0
    # Between 300 s and 54,000 s at 0.8 of the way.
    assert total.p90 == pytest.approx(300 + 0.8 * (54_000 - 300))


def test_days_without_anything_are_zero_and_empty(settings):
    """A quiet period gives zeros and no response times, not an error."""
    settings.TIME_ZONE = "Asia/Bangkok"
    stats = bot_stats(days=14)
    assert len(stats.days) == 14 and stats.days[-1].day == TODAY
    assert all(d.conversations == 0 and d.bot_response.median is None for d in stats.days)
    assert stats.bot_alone_rate is None
    assert stats.people_response.count == 0


def test_the_figures_cost_the_same_queries_for_few_and_many_rooms(week):
    """The figures come from a fixed number of queries, whatever the volume."""
    with CaptureQueriesContext(connection) as few:
        bot_stats(days=3)
    credential = CredentialFactory()
    for n in range(20):
        room = ChatRoomFactory(credential=credential)
        message(room, at(2, 10, n))
        message(room, at(2, 10, n, 5), "out", "bot")
        handover(room, at(2, 10, n, 30), "bot")
    with CaptureQueriesContext(connection) as many:
        stats = bot_stats(days=3)
    assert len(many) == len(few) <= 6
    assert stats.days[1].to_people == 21


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([1], 0.9, 1), ([1, 2], 0.5, 1.5), ([1, 2, 3, 4], 0.9, 3.7), ([0, 10], 0.25, 2.5)],
)
def test_percentiles_interpolate_like_percentile_cont(values, fraction, expected):
    """The Python fallback gives what PostgreSQL's percentile_cont gives."""
    assert percentile(values, fraction) == pytest.approx(expected)


# --- The admin overview and its CSV ------------------------------------------------------


def test_overview_draws_the_bot_s_figures(client, operator, week):
    """The overview shows the bot's charts and table for the chosen period."""
    page = client.get(reverse("admin:rchat_overview"), {"days": "14"}).content.decode()
    assert "How the bot is doing" in page
    for series in ("Answered by the bot alone", "Handed to people", "Neither"):
        assert f'data-series="{series}"' in page
    day1 = re.escape(date_format(DAYS[1], "j M"))
    assert re.search(
        rf'data-label="{day1}"[^>]*data-series="Handed to people"[^>]*data-value="1"', page
    )
    assert re.search(r'data-label="The end user asked for a person"[^>]*data-value="1"', page)
    assert 'id="rchat-bot-table"' in page
    assert reverse("admin:rchat_overview_bot_csv") + "?days=14" in page


def test_csv_has_one_row_per_day_with_every_figure(client, operator, week):
    """The CSV: UTF-8 with a BOM (Excel reads Thai), an attachment, a row per day."""
    response = client.get(reverse("admin:rchat_overview_bot_csv"), {"days": "14"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response.content.startswith(codecs.BOM_UTF8)
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[:10] == [
        "date",
        "conversations",
        "answered by the bot alone",
        "handed to people",
        "neither",
        "bot first response, median (s)",
        "bot first response, p90 (s)",
        "people first response, median (s)",
        "people first response, p90 (s)",
        "hand-over: The end user asked for a person",
    ]
    assert len(header) == 9 + len(Handover.Reason)
    assert len(body) == 14
    by_day = {row[0]: row for row in body}
    assert by_day[iso(1)][:10] == [iso(1), "3", "1", "1", "1", "4", "8.8", "300", "300", "1"]
    assert by_day[iso(3)][:9] == [iso(3), "1", "0", "1", "0", "8", "8", "30", "30"]
    # A day without answers has empty times, not zeros.
    quiet = (DAYS[1] - timedelta(days=5)).isoformat()
    assert by_day[quiet][1:9] == ["0", "0", "0", "0", "", "", "", ""]


def test_csv_needs_the_view_permission(client):
    """Staff who may not see chat rooms get no CSV."""
    client.force_login(UserFactory(username="nobody"))
    assert client.get(reverse("admin:rchat_overview_bot_csv")).status_code == 403
