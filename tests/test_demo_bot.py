"""The demo's shop bot: ``rchat_demo_setup`` sets it up once however often it runs, and
an end user writing in the real sandbox gets the greeting, the rules' answers, the
ShopBot's size chart and the hand-over, each reply labelled by who wrote it.

The site is Django's live server; the bot's task runs in this process, as a worker
would run it (``rchat.tasks.bot_reply``, then a drain), and its replies reach the
sandbox over HTTP. Each end-user message is dated to a moment of the shop's week
(its created_at): business hours decide on that moment, not on when the test runs.
"""

import os
import socket
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from rchat import selectors, services
from rchat.models import (
    AutoReply,
    BusinessHours,
    ChatRoom,
    Credential,
    Handover,
    Holiday,
    Message,
    Shift,
)
from rchat.sandbox import Sandbox
from rchat.tasks import bot_reply, drain_outbound
from tests.processes import ROOT

BANGKOK = ZoneInfo("Asia/Bangkok")
#: A Monday morning: within the shop's first shift.
MONDAY_OPEN = datetime(2025, 6, 2, 10, 30, tzinfo=BANGKOK)
GREETING = "สวัสดีค่ะ ยินดีต้อนรับสู่ร้านเสื้อผ้าตัวอย่าง 🙏"
HANDOVER_REPLY = "รับทราบค่ะ กำลังส่งต่อให้พนักงาน"


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    """Wake-ups the webhook publishes go nowhere: this test runs the bot itself."""
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


@pytest.fixture
def shop(settings, live_server, transactional_db):
    """The demo set up against a running sandbox that posts to the live site."""
    settings.DEBUG = True
    selectors.webhook_credentials_clear()
    with Sandbox(port=0, webhook_url=f"{live_server.url}/rchat/webhook/") as sandbox:
        call_command("rchat_demo_setup", sandbox_url=sandbox.url)
        yield sandbox


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(sandbox, text, *, chat_id="shop-1", at=MONDAY_OPEN):
    """The end user writes ``text`` at ``at``; the bot answers; what reached them.

    The message is dated ``at``, and so are the replies, as if answered at once: the
    out-of-hours reply is sent once per closed spell, which it tells by their dates.
    """
    before = len(sandbox.received(chat_id))
    entry = sandbox.send_as_user(chat_id, text, channel="line", name="สมหญิง")
    assert entry["webhook"]["ok"], entry["webhook"]
    message = Message.objects.get(external_id=entry["id"])
    Message.objects.filter(pk=message.pk).update(created_at=at)
    bot_reply(message.pk)
    services.delivery_drain()
    Message.objects.filter(room_id=message.room_id, pk__gt=message.pk).update(created_at=at)
    return sandbox.received(chat_id)[before:]


def replies(received):
    """(label, text) of each message the end user received."""
    return [((r["label"] or {}).get("text"), r["message"]["data"]) for r in received]


# --- Setting it up -------------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_setup_sets_up_the_shop_bot_once_and_says_so_the_second_time(settings, capsys):
    """Bot first, five rules, split-shift hours and a holiday; a second run adds nothing,
    keeps what staff edited, and says nothing changed."""
    settings.DEBUG = True
    sandbox_url = f"http://127.0.0.1:{free_port()}"

    call_command("rchat_demo_setup", sandbox_url=sandbox_url)
    first = capsys.readouterr().out

    credential = Credential.objects.get(name="demo")
    assert credential.bot_first
    rules = list(AutoReply.objects.filter(credential=credential).order_by("position"))
    assert [(r.name, r.kind, r.hand_over) for r in rules] == [
        ("Greeting", "greeting", False),
        ("Price", "keyword", False),
        ("Shipping", "keyword", False),
        ("Opening hours", "keyword", False),
        ("Order number", "pattern", True),
    ]
    assert rules[0].reply_data.startswith(GREETING) and "\nHello!" in rules[0].reply_data
    hours = BusinessHours.objects.get(credential=credential)
    assert (hours.time_zone, hours.out_of_hours_handler) == ("Asia/Bangkok", "bot")
    assert "นอกเวลาทำการ" in hours.reply_data
    shifts = {(s.weekday, f"{s.start:%H:%M}-{s.end:%H:%M}") for s in hours.shifts.all()}
    assert shifts == {(day, span) for day in range(6) for span in ("10:00-12:00", "13:00-20:00")}
    assert hours.holidays.count() == 1
    for line in (
        "bot first: turned on",
        "rule 'Greeting' (greeting): created",
        "rule 'Price' (keywords: ราคา, price, how much): created",
        "rule 'Order number' (pattern: #\\d{5}, then people): created",
        "business hours: Asia/Bangkok, Mon-Sat 10:00-12:00 and 13:00-20:00: created",
        'site bot: RCHAT["BOT"] = project.shopbot.ShopBot',
        "Shop bot: set up (5 rule(s) added, business hours added, bot first turned on).",
    ):
        assert line in first, line

    AutoReply.objects.filter(name="Price").update(reply_data="ราคาพิเศษ 199 บาท")
    call_command("rchat_demo_setup", sandbox_url=sandbox_url)
    second = capsys.readouterr().out

    assert "Shop bot: already set up, nothing changed." in second
    assert "rule 'Price' (keywords: ราคา, price, how much): kept as it is" in second
    assert "created" not in second
    assert AutoReply.objects.count() == 5
    assert AutoReply.objects.get(name="Price").reply_data == "ราคาพิเศษ 199 บาท"
    assert (BusinessHours.objects.count(), Shift.objects.count(), Holiday.objects.count()) == (
        1,
        12,
        1,
    )


@pytest.mark.django_db
def test_demo_setup_says_when_no_site_bot_is_set(settings, capsys):
    """RCHAT["BOT"] empty: the demo says the rules answer alone."""
    settings.DEBUG = True
    with override_settings(RCHAT={**settings.RCHAT, "BOT": ""}):
        call_command("rchat_demo_setup", sandbox_url=f"http://127.0.0.1:{free_port()}")
    assert 'site bot: none (RCHAT["BOT"] is empty' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variable", "bot"),
    [(None, "project.shopbot.ShopBot"), ("", ""), ("myshop.bots.Bot", "myshop.bots.Bot")],
)
def test_rchat_bot_in_the_environment_names_or_empties_the_projects_bot(variable, bot):
    """The project's RCHAT["BOT"] is the ShopBot unless RCHAT_BOT says otherwise."""
    env = {k: v for k, v in os.environ.items() if k != "RCHAT_BOT"}
    if variable is not None:
        env["RCHAT_BOT"] = variable
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import project.settings as s; print(repr(s.RCHAT['BOT']), s.RCHAT['SENDER_FIELD'],"
            " s.RCHAT['RETURN_TO_BOT_AFTER_MINUTES'])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert shown == f"{bot!r} sender 30"


# --- The ShopBot on its own --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("ไซส์ M", "ไซส์ M: รอบอก 38 นิ้ว ยาว 27 นิ้วค่ะ"),
        ("มี ไซส์ xl ไหมคะ", "ไซส์ XL: รอบอก 42 นิ้ว"),
        ("What SIZE is L?", "Size L: chest 40 in"),
        ("ขอตารางไซส์หน่อยค่ะ", "ตารางไซส์เสื้อ"),
        ("I'm asking about sizes", "ตารางไซส์เสื้อ"),
    ],
)
def test_the_shop_bot_answers_size_questions_with_the_chart(text, answer):
    from project.shopbot import ShopBot

    reply = ShopBot().answer(Message(text=text), [])
    assert reply.type == "text" and answer in reply.data
    assert "S  36 / 26" in reply.data


@pytest.mark.parametrize("text", ["สวัสดี", "ขอบคุณค่ะ", "I'm here", ""])
def test_the_shop_bot_says_nothing_to_anything_else(text):
    from project.shopbot import ShopBot

    assert ShopBot().answer(Message(text=text), []) is None


# --- An end user in the sandbox -------------------------------------------------------------


def test_an_end_user_meets_the_bot_then_a_person_each_reply_labelled(shop):
    """Greeting, a rule, the ShopBot, the hand-over; then the bot is silent and a person
    answers. The sandbox shows who wrote each reply."""
    [(label, greeting)] = replies(write(shop, "สวัสดี"))
    assert label == "⚙ Rule: Greeting" and greeting.startswith(GREETING)
    assert shop.received("shop-1")[0]["sender"] == {"kind": "rule", "name": "Greeting"}

    price = write(shop, "ราคา เท่าไหร่")
    assert replies(price) == [
        (
            "⚙ Rule: Price",
            "เสื้อยืด 290 บาท เสื้อเชิ้ต 590 บาท กางเกง 790 บาทค่ะ\n"
            "T-shirts 290 THB, shirts 590 THB, trousers 790 THB.",
        )
    ]

    [(label, size)] = replies(write(shop, "ไซส์ M"))
    assert label == "🤖 Bot" and size.startswith("ไซส์ M: รอบอก 38 นิ้ว")

    room = ChatRoom.objects.get(chat_id="shop-1")
    assert room.handler == ChatRoom.Handler.BOT
    [(label, handover)] = replies(write(shop, "คุยกับพนักงาน"))
    assert label == "⚙ Rule" and handover.startswith(HANDOVER_REPLY)
    room.refresh_from_db()
    assert room.handler == ChatRoom.Handler.PEOPLE
    assert Handover.objects.get(room=room).reason == Handover.Reason.ASKED

    assert write(shop, "ราคา") == []  # people handle the room: the bot stays silent

    admin = get_user_model().objects.get(username="admin")
    services.message_send(room=room, type="text", data="สวัสดีค่ะ แอดมินเองค่ะ", author=admin)
    services.delivery_drain()
    assert replies(shop.received("shop-1")[-1:]) == [("👤 admin", "สวัสดีค่ะ แอดมินเองค่ะ")]

    page = requests.get(f"{shop.url}/chat/shop-1", timeout=5).text
    for label, kind in (
        ("⚙ Rule: Greeting", "rule"),
        ("⚙ Rule: Price", "rule"),
        ("🤖 Bot", "bot"),
        ("👤 admin", "person"),
    ):
        assert f'<li class="site sender-{kind}"><div class="sender">{label}</div>' in page
    assert page.count('<li class="user">') == 5


def test_an_order_number_gets_the_pattern_rules_answer_and_goes_to_people(shop):
    write(shop, "สวัสดีค่ะ", chat_id="shop-2")
    [(label, text)] = replies(write(shop, "สั่งไปแล้วค่ะ #12345", chat_id="shop-2"))
    assert label == "⚙ Rule: Order number" and text.startswith("ขอบคุณค่ะ กำลังตรวจสอบคำสั่งซื้อ")
    room = ChatRoom.objects.get(chat_id="shop-2")
    assert room.handler == ChatRoom.Handler.PEOPLE and "Order number" in room.handover_reason


def test_out_of_hours_the_end_user_is_told_once_and_the_bot_keeps_answering(shop):
    """Sunday, the lunch break of the split shift, the holiday: the out-of-hours reply
    (once), the greeting, and the rules and the ShopBot still answer."""
    holiday = Holiday.objects.get().date
    closed = {
        "sunday": datetime(2025, 6, 1, 11, 0, tzinfo=BANGKOK),
        "lunch": datetime(2025, 6, 2, 12, 30, tzinfo=BANGKOK),
        "holiday": datetime(holiday.year, holiday.month, holiday.day, 11, 0, tzinfo=BANGKOK),
    }
    for chat_id, at in closed.items():
        first = replies(write(shop, "สวัสดี", chat_id=chat_id, at=at))
        assert [label for label, _text in first] == ["⚙ Rule", "⚙ Rule: Greeting"], chat_id
        assert first[0][1].startswith("ขณะนี้อยู่นอกเวลาทำการค่ะ")
        later = replies(write(shop, "size L", chat_id=chat_id, at=at))
        assert [label for label, _text in later] == ["🤖 Bot"], chat_id
        assert ChatRoom.objects.get(chat_id=chat_id).handler == ChatRoom.Handler.BOT
