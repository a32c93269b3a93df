"""The bot answers first: webhooks into a room the bot handles, through the engine's
steps (hand-over phrases, business hours, greeting, rules, the site's bot), to the
replies R-Chat receives (pytest-httpserver) and the hand-overs people see."""

import json
from datetime import time as clock

import pytest
from django.test import override_settings
from werkzeug import Response

from rchat import bots, services
from rchat.bots import engine
from rchat.models import AutoReply, BusinessHours, ChatRoom, Handover, Message, Shift
from rchat.tasks import bot_reply, drain_outbound
from tests.factories import CredentialFactory, UserFactory

SEND_PATH = "/api/v1/external/send-message"

pytestmark = pytest.mark.django_db


class ShopBot(bots.Bot):
    """A site's bot: answers prices, hands over on complaints, fails on "crash"."""

    def answer(self, message, thread):
        if "crash" in message.text:
            raise RuntimeError("the shop's stock service is down")
        if "ร้องเรียน" in message.text:
            return [bots.Reply.text("ขออภัยค่ะ"), bots.HandOver("complaint")]
        if "bad" in message.text:
            return bots.Reply("location", {"latitude": "north"})
        if "ราคา" in message.text:
            return bots.Reply.text(f"ราคา 290 บาทค่ะ ({len(thread)} in thread)")
        return None


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


@pytest.fixture
def received(httpserver):
    bodies = []

    def handle(request):
        bodies.append(json.loads(request.data))
        return Response(json.dumps({"message_id": f"rc-{len(bodies)}"}), 200)

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(handle)
    return bodies


@pytest.fixture
def credential(httpserver):
    return CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"), bot_first=True)


@pytest.fixture
def end_user(client, credential, received):
    """Send a webhook as the end user, run the bot task as a worker would, deliver."""
    counter = iter(range(1, 10_000))

    def write(text, chat_id="u-1"):
        number = next(counter)
        body = {"chat_id": chat_id, "message": {"id": f"m-{number}", "type": "text", "data": text}}
        answer = client.post(
            "/rchat/webhook/",
            json.dumps(body, ensure_ascii=False),
            content_type="application/json; charset=utf-8",
            HTTP_X_CHATDAY_SIGNATURE_TOKEN=credential.signature_token,
        )
        assert answer.status_code == 200, answer.content
        message = Message.objects.get(external_id=f"m-{number}")
        result = bot_reply(message.pk)
        services.delivery_drain()
        return result

    return write


def said(received):
    return [body["message"]["data"] for body in received]


def rule(credential, name, match, reply, kind=AutoReply.Kind.KEYWORD, **fields):
    return AutoReply.objects.create(
        credential=credential, name=name, kind=kind, match=match, reply_data=reply, **fields
    )


def test_greeting_then_keyword_rules_answer_in_order(end_user, credential, received):
    rule(credential, "hello", "", "สวัสดีค่ะ ร้านยินดีต้อนรับ", kind=AutoReply.Kind.GREETING)
    rule(credential, "hours", "เปิดกี่โมง\nopening hours", "เปิด 10 โมงค่ะ", position=1)

    end_user("ร้าน เปิด กี่โมง คะ")  # spaces between Thai words do not matter
    end_user("เปิดกี่โมง")

    assert said(received) == ["สวัสดีค่ะ ร้านยินดีต้อนรับ", "เปิด 10 โมงค่ะ", "เปิด 10 โมงค่ะ"]
    rules = list(Message.objects.filter(direction="out").values_list("sender", "rule__name"))
    assert rules == [("rule", "hello"), ("rule", "hours"), ("rule", "hours")]


def test_asking_for_a_person_hands_over_and_the_bot_falls_silent(end_user, received):
    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        end_user("ขอ คุย กับ พนักงาน หน่อยค่ะ")
        end_user("ราคาเท่าไหร่")  # people handle it now: no bot answer

    room = ChatRoom.objects.get()
    assert room.handler == "people" and room.assignee is None
    assert Handover.objects.get().reason == Handover.Reason.ASKED
    assert len(received) == 1 and "พนักงาน" in received[0]["message"]["data"]


def test_the_sites_bot_answers_with_the_thread(end_user, received):
    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        end_user("สวัสดี")
        end_user("ราคาเท่าไหร่")

    assert said(received) == ["ราคา 290 บาทค่ะ (2 in thread)"]
    assert Message.objects.get(direction="out").sender == "bot"


def test_the_bot_hands_over_with_its_reason_after_its_reply(end_user, received):
    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        end_user("ขอร้องเรียนค่ะ")

    room = ChatRoom.objects.get()
    assert room.handler == "people" and "complaint" in room.handover_reason
    assert said(received) == ["ขออภัยค่ะ"]


@pytest.mark.parametrize(
    ("text", "in_reason"),
    [("crash", "RuntimeError: the shop's stock service is down"), ("bad", "latitude")],
)
def test_a_failing_bot_hands_the_room_to_people_with_the_error(end_user, received, text, in_reason):
    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        end_user(text)

    room = ChatRoom.objects.get()
    change = Handover.objects.get()
    assert room.handler == "people" and change.reason == Handover.Reason.BOT_ERROR
    assert in_reason in change.detail and in_reason in room.handover_reason
    assert received == []
    assert Message.objects.filter(direction="in").count() == 1  # the message is kept


def test_out_of_hours_reply_once_then_people_take_the_chat(end_user, credential, received):
    hours = BusinessHours.objects.create(
        credential=credential,
        time_zone="Asia/Bangkok",
        reply_data="ตอนนี้นอกเวลาทำการค่ะ",
        out_of_hours_handler=ChatRoom.Handler.BOT,
    )
    # Open one minute a week: closed now, all but certainly.
    Shift.objects.create(hours=hours, weekday=6, start=clock(3, 0), end=clock(3, 1))
    rule(credential, "price", "ราคา", "290 บาท")

    end_user("ราคา")
    end_user("ราคา อีกที")

    assert said(received) == ["ตอนนี้นอกเวลาทำการค่ะ", "290 บาท", "290 บาท"]
    hours.out_of_hours_handler = ChatRoom.Handler.PEOPLE
    hours.save()
    end_user("hello", chat_id="u-2")
    assert ChatRoom.objects.get(chat_id="u-2").handler == "people"
    assert Handover.objects.get().reason == Handover.Reason.HOURS


def test_a_room_people_handle_is_never_answered(end_user, credential, received):
    rule(credential, "price", "ราคา", "290 บาท")
    end_user("สวัสดี")
    room = ChatRoom.objects.get()
    services.room_take_over(room=room, user=UserFactory())

    result = end_user("ราคา")

    assert received == [] and result == {"replies": 0, "hand_over": None, "forward": False}


def test_decide_in_a_dry_run_writes_and_sends_nothing(end_user, credential, received):
    end_user("สวัสดี")
    rule(credential, "price", "ราคา", "290 บาท")
    message = Message.objects.get()
    message.text = "ราคา"

    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        decision = engine.decide(message, thread=[message], dry_run=True)

    assert [(r.type, r.data, r.sender) for r in decision.replies] == [("text", "290 บาท", "rule")]
    assert decision.why and Message.objects.count() == 1 and received == []


def test_rooms_of_a_credential_that_starts_with_people_get_no_bot(client, received, httpserver):
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    rule(credential, "price", "ราคา", "290 บาท")
    body = {"chat_id": "p", "message": {"id": "p-1", "type": "text", "data": "ราคา"}}
    client.post(
        "/rchat/webhook/",
        json.dumps(body),
        content_type="application/json",
        HTTP_X_CHATDAY_SIGNATURE_TOKEN=credential.signature_token,
    )
    message = Message.objects.get()
    assert bot_reply(message.pk)["replies"] == 0
