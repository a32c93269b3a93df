"""One way to show dates and times (rchat.ui.when), in English and Thai, everywhere.

The rules at fixed "now"s (today, yesterday, this year, before, around midnight in
Bangkok and in UTC, across New Year), the Buddhist era in Thai, then the pages: the
inbox's list, a thread's divider and bubble, admin's conversation, columns and fields
show the same text; and the sandbox's chat page shows times in the site's zone.
"""

import datetime
import re
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone, translation

from rchat.models import ChatRoom, Message
from rchat.sandbox import Sandbox, chat_url
from rchat.sandbox import server as sandbox_server
from rchat.ui import when
from tests.factories import ChatRoomFactory, MessageFactory, user_with

UTC = datetime.UTC
BANGKOK = ZoneInfo("Asia/Bangkok")


def utc(*args):
    return datetime.datetime(*args, tzinfo=UTC)


#: 14:05 on 3 December 2026 in Bangkok.
NOW = utc(2026, 12, 3, 7, 5)
#: 00:30 on 4 December 2026 in Bangkok, while it is still the 3rd in UTC.
AFTER_MIDNIGHT = utc(2026, 12, 3, 17, 30)
#: 00:30 on 1 January 2027 in Bangkok, still 2026 in UTC.
NEW_YEAR = utc(2026, 12, 31, 17, 30)
#: 11:21 on 2 December 2025 in Bangkok: a message from last year.
OLD = utc(2025, 12, 2, 4, 21)


@pytest.fixture
def bangkok():
    with timezone.override(BANGKOK):
        yield


def _thai_catalogue_has(msgid):
    with translation.override("th"):
        return translation.gettext(msgid) != msgid


def _needs_thai(msgid):
    # rchat/locale is filled in after the code (make messages): until then the Thai of
    # a new string cannot be checked, and tests/test_i18n.py says it is missing.
    if not _thai_catalogue_has(msgid):
        pytest.skip(f"rchat's Thai catalogue has no {msgid!r} yet")


# --- The rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (utc(2026, 12, 3, 6, 0), "13:00"),  # today
        (utc(2026, 12, 2, 7, 5), "Yesterday 14:05"),
        (utc(2026, 3, 5, 1, 2), "5 Mar 08:02"),  # this year
        (utc(2025, 12, 3, 7, 5), "3 Dec 2025"),  # before this year: the date only
        (utc(2026, 12, 5, 2, 0), "5 Dec 09:00"),  # ahead (a retry's time): with its date
    ],
)
def test_a_list_shows_the_time_today_yesterday_the_date_this_year_the_year_before(
    bangkok, value, shown
):
    """Relative for recent, the date for old, in the site's zone (Bangkok, UTC+7)."""
    with translation.override("en"):
        assert when.when_text(value, now=NOW) == shown


@pytest.mark.parametrize(
    ("value", "day"),
    [
        (utc(2026, 12, 3, 6, 0), "Today"),
        (utc(2026, 12, 2, 7, 5), "Yesterday"),
        (utc(2026, 3, 5, 1, 2), "5 March 2026"),
        (OLD, "2 December 2025"),
    ],
)
def test_a_day_divider_says_today_yesterday_or_the_full_date(bangkok, value, day):
    with translation.override("en"):
        assert when.day_text(value, now=NOW) == day


def test_a_bubble_always_shows_its_time_and_the_title_the_full_date_and_time(bangkok):
    with translation.override("en"):
        assert when.clock_text(OLD) == "11:21"
        assert when.full_text(OLD) == "2 December 2025 11:21:00"
        assert when.iso(OLD) == "2025-12-02T11:21:00+07:00"
        assert when.when_html(OLD, now=NOW) == (
            '<time datetime="2025-12-02T11:21:00+07:00" title="2 December 2025 11:21:00">'
            "2 Dec 2025</time>"
        )


def test_today_is_today_in_the_site_s_zone_not_in_utc():
    """At 00:30 in Bangkok, 23:50 the evening before is yesterday there, though it is
    the same day in UTC; 00:10 is today in both."""
    evening, just_after = utc(2026, 12, 3, 16, 50), utc(2026, 12, 3, 17, 10)
    with translation.override("en"):
        with timezone.override(BANGKOK):
            assert when.when_text(evening, now=AFTER_MIDNIGHT) == "Yesterday 23:50"
            assert when.day_text(evening, now=AFTER_MIDNIGHT) == "Yesterday"
            assert when.when_text(just_after, now=AFTER_MIDNIGHT) == "00:10"
            assert when.day_text(just_after, now=AFTER_MIDNIGHT) == "Today"
        with timezone.override(UTC):
            assert when.when_text(evening, now=AFTER_MIDNIGHT) == "16:50"
            assert when.day_text(evening, now=AFTER_MIDNIGHT) == "Today"
            assert when.when_text(just_after, now=AFTER_MIDNIGHT) == "17:10"


def test_new_year_comes_at_bangkok_s_midnight(bangkok):
    """On 1 January in Bangkok, 31 December is yesterday and the 30th last year; in UTC
    it is still the 31st."""
    with translation.override("en"):
        assert when.when_text(utc(2026, 12, 31, 10, 0), now=NEW_YEAR) == "Yesterday 17:00"
        assert when.when_text(utc(2026, 12, 30, 10, 0), now=NEW_YEAR) == "30 Dec 2026"
    with timezone.override(UTC), translation.override("en"):
        assert when.when_text(utc(2026, 12, 30, 10, 0), now=NEW_YEAR) == "Yesterday 10:00"


def test_thai_has_thai_month_names_and_years_in_the_buddhist_era(bangkok):
    """2569 for 2026 wherever a year is shown; the ISO value stays Gregorian."""
    with translation.override("th"):
        assert when.when_text(utc(2026, 3, 5, 1, 2), now=NOW) == "5 มี.ค. 08:02"
        assert when.when_text(OLD, now=NOW) == "2 ธ.ค. 2568"
        assert when.day_text(OLD, now=NOW) == "2 ธันวาคม 2568"
        assert when.day_text(utc(2026, 12, 3, 6, 0), now=NOW) == "วันนี้"
        assert when.full_text(OLD) == "2 ธันวาคม 2568 11:21:00"
        assert when.date_text(NOW) == "3 ธันวาคม 2569"
        assert when.iso(OLD) == "2025-12-02T11:21:00+07:00"
        assert when.clock_text(OLD) == "11:21"
        assert when.day_label(NOW) == "3 ธ.ค."
        assert when.when_text(utc(2026, 12, 30, 10, 0), now=NEW_YEAR) == "30 ธ.ค. 2569"
        assert when.buddhist_era()
    with translation.override("en"):
        assert when.full_text(OLD) == "2 December 2025 11:21:00"
        assert when.day_label(NOW, weekday=True) == "Thu 3 Dec"
        assert not when.buddhist_era()


def test_thai_says_yesterday_in_thai(bangkok):
    _needs_thai("Yesterday %(time)s")
    with translation.override("th"):
        assert when.when_text(utc(2026, 12, 2, 7, 5), now=NOW) == "เมื่อวาน 14:05"
        assert when.day_text(utc(2026, 12, 2, 7, 5), now=NOW) == "เมื่อวาน"


def test_a_date_alone_is_shown_by_the_same_rules(bangkok):
    with translation.override("en"):
        assert when.day_text(datetime.date(2026, 12, 2), now=NOW) == "Yesterday"
        assert when.when_text(datetime.date(2025, 12, 2), now=NOW) == "2 Dec 2025"
        assert when.full_text(datetime.date(2025, 12, 2)) == "2 December 2025"


def test_something_that_is_not_a_date_is_refused_by_the_code_and_blank_in_a_template():
    with pytest.raises(TypeError, match="expects a date or a datetime, not str"):
        when.when_text("2026-12-03")
    page = Template(
        "{% load rchat_time %}[{{ a|rchat_when }}|{{ b|rchat_day }}|{{ c|rchat_full }}]"
    ).render(Context({"a": None, "b": "yesterday", "c": ""}))
    assert page == "[||]"


# --- The pages -----------------------------------------------------------------------------

#: What each language shows for OLD (11:21 on 2 December 2025 in Bangkok).
SHOWN = {
    "en": {"list": "2 Dec 2025", "day": "2 December 2025", "full": "2 December 2025 11:21:00"},
    "th": {"list": "2 ธ.ค. 2568", "day": "2 ธันวาคม 2568", "full": "2 ธันวาคม 2568 11:21:00"},
}
TODAY = {"en": "Today", "th": "วันนี้"}


def _old_and_new_room():
    """A room whose last message is OLD, and one with a message from last year and
    one written now."""
    old_room = ChatRoomFactory(display_name="Old Customer", last_message_at=OLD)
    old = MessageFactory(room=old_room, data="old question")
    room = ChatRoomFactory(display_name="Somchai")
    earlier = MessageFactory(room=room, data="last year")
    recent = MessageFactory(room=room, data="just now")
    Message.objects.filter(pk__in=[old.pk, earlier.pk]).update(created_at=OLD)
    recent.refresh_from_db()
    ChatRoom.objects.filter(pk=room.pk).update(last_message_at=recent.created_at)
    return old_room, room, recent


def _time(page, text):
    """The ``<time>`` elements showing ``text``: their (datetime, title) attributes."""
    return re.findall(
        rf'<time[^>]*datetime="([^"]+)"[^>]*title="([^"]*)"[^>]*>{re.escape(text)}</time>', page
    )


def _clock_now(moment):
    return timezone.localtime(moment).strftime("%H:%M")


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "th"])
def test_the_inbox_list_divider_and_bubble_show_one_format(agent_client, language):
    """The room list shows last year's date ("2 Dec 2025" / "2 ธ.ค. 2568") and today's
    time; the thread divides by "2 December 2025" and "Today", and each bubble its time,
    with the full date and time in the title."""
    _old_room, room, recent = _old_and_new_room()
    shown = SHOWN[language]

    listing = agent_client.get(reverse("rchat:inbox"), HTTP_ACCEPT_LANGUAGE=language)
    page = listing.content.decode()
    assert _time(page, shown["list"]) == [("2025-12-02T11:21:00+07:00", shown["full"])]
    assert len(_time(page, _clock_now(recent.created_at))) == 1

    thread = agent_client.get(
        reverse("rchat:inbox-room", args=[room.pk]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    assert _time(thread, shown["day"]) == [("2025-12-02", shown["day"])]
    assert len(_time(thread, TODAY[language])) == 1
    assert thread.index(shown["day"]) < thread.index("last year") < thread.index(TODAY[language])
    assert ("2025-12-02T11:21:00+07:00", shown["full"]) in _time(thread, "11:21")
    assert len(_time(thread, _clock_now(recent.created_at))) >= 1
    # Nothing is shown Django's way any more (month first, "a.m.").
    assert "a.m." not in thread and "p.m." not in thread and "Dec. 2" not in thread


@pytest.mark.django_db
def test_the_divider_changes_at_midnight_in_the_site_s_zone(agent_client):
    """23:30 and 00:30 in Bangkok are one UTC day (16:30 and 17:30) but two days on
    the page, each under its own divider."""
    room = ChatRoomFactory(last_message_at=utc(2025, 6, 10, 17, 30))
    late = MessageFactory(room=room, data="late evening")
    early = MessageFactory(room=room, data="after midnight")
    Message.objects.filter(pk=late.pk).update(created_at=utc(2025, 6, 10, 16, 30))
    Message.objects.filter(pk=early.pk).update(created_at=utc(2025, 6, 10, 17, 30))

    page = agent_client.get(reverse("rchat:inbox-room", args=[room.pk])).content.decode()
    order = [
        page.index(text)
        for text in (
            ">10 June 2025<",
            "late evening",
            ">23:30<",
            ">11 June 2025<",
            "after midnight",
            ">00:30<",
        )
    ]
    assert order == sorted(order)
    assert page.count('class="rchat-day"') == 2


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "th"])
def test_admin_s_conversation_columns_and_fields_show_the_inbox_s_format(
    client, operator, language
):
    """Admin's bubbles and divider are the inbox's; its "last message" and "created at"
    columns and its read-only fields say "2 Dec 2025" ("2 ธ.ค. 2568"), still sortable."""
    old_room, room, _recent = _old_and_new_room()
    ChatRoom.objects.filter(pk=old_room.pk).update(created_at=OLD)
    shown = SHOWN[language]

    change = client.get(
        reverse("admin:rchat_chatroom_change", args=[room.pk]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    assert _time(change, shown["day"]) == [("2025-12-02", shown["day"])]
    assert ("2025-12-02T11:21:00+07:00", shown["full"]) in _time(change, "11:21")
    assert len(_time(change, TODAY[language])) == 1

    rooms = client.get(
        reverse("admin:rchat_chatroom_changelist"), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    assert re.search(
        rf'<td class="field-last_message_at"><time datetime="2025-12-02T11:21:00\+07:00" '
        rf'title="{shown["full"]}">{shown["list"]}</time></td>',
        rooms,
    )
    assert re.search(r'<th scope="col" class="sortable column-last_message_at', rooms)

    messages = client.get(
        reverse("admin:rchat_message_changelist"), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    assert _time(messages, shown["list"]) and "a.m." not in messages

    fields = client.get(
        reverse("admin:rchat_chatroom_change", args=[old_room.pk]), HTTP_ACCEPT_LANGUAGE=language
    ).content.decode()
    # "last message" and "created at", both OLD.
    assert _time(fields, shown["list"]) == [("2025-12-02T11:21:00+07:00", shown["full"])] * 2


@pytest.mark.django_db
def test_admin_s_columns_sort_by_the_field(client, operator):
    """The swapped column still orders the list by the date-time itself."""
    ChatRoomFactory(display_name="Newer", last_message_at=utc(2026, 1, 2, 3, 0))
    ChatRoomFactory(display_name="Older", last_message_at=OLD)
    changelist = reverse("admin:rchat_chatroom_changelist")
    page = client.get(changelist).content.decode()
    # Django 6.1 gives the header's link role="button": any attributes around href.
    header = re.search(r'<a [^>]*href="\?o=(-?\d+)"[^>]*>[^<]*last message', page, re.IGNORECASE)
    assert header, "the last-message column can be sorted"
    ascending = client.get(changelist, {"o": header[1].lstrip("-")}).content.decode()
    assert ascending.index("Older") < ascending.index("Newer")


@pytest.mark.django_db
def test_a_view_only_operator_sees_the_same_times(client):
    """Admin shows every field read-only to someone who may only view: same format."""
    viewer = user_with("view_chatroom", username="viewer")
    client.force_login(viewer)
    room = ChatRoomFactory(last_message_at=OLD)
    page = client.get(reverse("admin:rchat_chatroom_change", args=[room.pk])).content.decode()
    assert _time(page, "2 Dec 2025") == [("2025-12-02T11:21:00+07:00", "2 December 2025 11:21:00")]


# --- The sandbox ---------------------------------------------------------------------------


def test_the_sandbox_takes_the_site_s_time_zone_and_refuses_an_unknown_one(settings):
    settings.TIME_ZONE = "Asia/Bangkok"
    assert Sandbox().time_zone == "Asia/Bangkok"
    assert Sandbox(time_zone="Europe/London").info()["time_zone"] == "Europe/London"
    with pytest.raises(sandbox_server.SandboxInputError, match="Unknown time zone 'Mars/Base'"):
        Sandbox(time_zone="Mars/Base")


#: (at, now, what the chat page shows, the title), in Bangkok.
SANDBOX_CASES = [
    ("2026-12-03T06:00:00.000Z", NOW, "13:00", "3 December 2026 13:00:00"),
    ("2026-12-02T07:05:09.000Z", NOW, "Yesterday 14:05", "2 December 2026 14:05:09"),
    ("2026-09-05T01:02:00.000Z", NOW, "5 Sep 08:02", "5 September 2026 08:02:00"),
    ("2025-12-02T04:21:00.000Z", NOW, "2 Dec 2025", "2 December 2025 11:21:00"),
    ("2026-12-03T16:50:00.000Z", AFTER_MIDNIGHT, "Yesterday 23:50", "3 December 2026 23:50:00"),
    ("2026-12-30T10:00:00.000Z", NEW_YEAR, "30 Dec 2026", "30 December 2026 17:00:00"),
]


@pytest.mark.parametrize(("at", "now", "shown", "title"), SANDBOX_CASES)
def test_the_sandbox_shows_times_in_the_site_s_style(at, now, shown, title):
    moment = sandbox_server._parse_at(at)
    assert sandbox_server.when_text(moment, BANGKOK, now) == shown
    assert sandbox_server.full_text(moment, BANGKOK) == title


@pytest.mark.slow
def test_the_sandbox_page_shows_message_times_in_the_site_s_zone(chromium, settings):
    """A Chromium set to New York's time shows the chat page's times in the site's zone
    (Bangkok), on the page as served and as sandbox.js redraws it, and sandbox.js
    writes every case as server.py does."""
    settings.TIME_ZONE = "Asia/Bangkok"
    with Sandbox(port=0) as sb:
        first = sb.send_as_user("time-1", "สวัสดีค่ะ")
        context = chromium.new_context(timezone_id="America/New_York")
        try:
            page = context.new_page()
            page.goto(chat_url(sb.url, "time-1"))
            assert page.locator("body").get_attribute("data-time-zone") == "Asia/Bangkok"
            second = sb.send_as_user("time-1", "ยังอยู่ไหมคะ")
            page.locator("#thread li").nth(1).wait_for(timeout=15_000)
            for entry, index in ((first, 0), (second, 1)):
                at = sandbox_server._parse_at(entry["at"])
                stamp = page.locator("#thread li").nth(index).locator(".meta time")
                assert stamp.inner_text() == at.astimezone(BANGKOK).strftime("%H:%M")
                assert stamp.get_attribute("datetime") == entry["at"]
                assert stamp.get_attribute("title") == sandbox_server.full_text(at, BANGKOK)
                assert stamp.inner_text() != at.strftime("%H:%M")  # not UTC
            for at, now, shown, title in SANDBOX_CASES:
                assert page.evaluate(
                    "([at, now]) => [whenText(at, 'Asia/Bangkok', new Date(now)),"
                    " fullText(at, 'Asia/Bangkok')]",
                    [at, now.isoformat()],
                ) == [shown, title]
        finally:
            context.close()


# --- The inbox in Chromium, in English and Thai --------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("language", "locale"), [("en", "en-US"), ("th", "th-TH")])
def test_an_agent_sees_one_format_in_the_inbox(browser, live_server, language, locale):
    """In a browser speaking English or Thai: last year's conversation says its date
    in the list, the thread divides by the full date and "Today", a bubble its time."""
    from tests.test_browser import WAIT_MS, log_in, make_agent

    _old_room, room, recent = _old_and_new_room()
    shown = SHOWN[language]
    agent = make_agent("when-" + language)
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server, agent)

    old_item = page.locator(".rchat-room-item", has_text="Old Customer")
    stamp = old_item.locator(".rchat-room-time")
    stamp.wait_for(timeout=WAIT_MS)
    assert stamp.inner_text() == shown["list"]
    assert stamp.get_attribute("title") == shown["full"]
    new_stamp = page.locator(".rchat-room-item", has_text="Somchai").locator(".rchat-room-time")
    assert new_stamp.inner_text() == _clock_now(recent.created_at)

    page.locator(".rchat-room-item", has_text="Somchai").locator("a").click()
    page.wait_for_url(f"**/rchat/inbox/{room.pk}/**")
    days = page.locator(".rchat-day")
    days.first.wait_for(timeout=WAIT_MS)
    assert days.all_inner_texts() == [shown["day"], TODAY[language]]
    old_bubble = page.locator(".rchat-msg", has_text="last year").locator(".rchat-msg-meta time")
    assert old_bubble.inner_text() == "11:21"
    assert old_bubble.get_attribute("title") == shown["full"]
    new_bubble = page.locator(".rchat-msg", has_text="just now").locator(".rchat-msg-meta time")
    assert new_bubble.inner_text() == _clock_now(recent.created_at)
