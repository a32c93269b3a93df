"""Who handles a chat room: take-over, hand-over, return to the bot, and what the
delivery does with the bot's messages once people hold the room.

pytest-httpserver stands in for R-Chat; the tests run the drain themselves
(tests/test_handover_worker.py races a real worker).
"""

import json

import pytest
from django.test import override_settings

from rchat import services
from rchat.exceptions import InvalidMessage
from rchat.models import ChatRoom, Handover, Message
from rchat.services import handover
from rchat.tasks import drain_outbound
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory

SEND_PATH = "/api/v1/external/send-message"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


@pytest.fixture
def rchat(httpserver):
    bodies = []

    def handle(request):
        from werkzeug import Response

        bodies.append(json.loads(request.data))
        return Response(json.dumps({"message_id": f"rc-{len(bodies)}"}), 200)

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(handle)
    return bodies


@pytest.fixture
def bot_room(httpserver):
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"), bot_first=True)
    return ChatRoomFactory(credential=credential, handler=ChatRoom.Handler.BOT)


def texts(bodies):
    return [body["message"]["data"] for body in bodies]


def test_a_take_over_cancels_the_bots_queued_messages_and_none_is_sent(bot_room, rchat):
    agent = UserFactory()
    for n in range(3):
        services.message_send(room=bot_room, type="text", data=f"bot {n}", sender="bot")

    services.room_take_over(room=bot_room, user=agent)
    services.delivery_drain()

    bot_room.refresh_from_db()
    assert (bot_room.handler, bot_room.assignee) == (ChatRoom.Handler.PEOPLE, agent)
    assert rchat == []
    assert set(Message.objects.values_list("status", flat=True)) == {"cancelled"}
    change = Handover.objects.get()
    assert (change.to, change.reason, change.by) == ("people", Handover.Reason.TAKEN, agent)
    assert bot_room.handover_reason == str(Handover.Reason.TAKEN.label)


def test_the_bot_cannot_write_to_a_room_people_handle(bot_room):
    services.room_take_over(room=bot_room, user=UserFactory())

    with pytest.raises(InvalidMessage) as raised:
        services.message_send(room=bot_room, type="text", data="hello", sender="bot")

    assert "sender" in raised.value.errors
    assert not Message.objects.exists()


def test_a_persons_reply_takes_the_room_over_and_is_sent(bot_room, rchat):
    agent = UserFactory()
    services.message_send(room=bot_room, type="text", data="bot says", sender="bot")

    services.message_send(room=bot_room, type="text", data="ค่ะ ดิฉันช่วยได้", author=agent)
    services.delivery_drain()

    assert texts(rchat) == ["ค่ะ ดิฉันช่วยได้"]
    person = Message.objects.get(status="sent")
    assert (person.sender, person.author) == ("person", agent)
    assert Message.objects.get(sender="bot").status == "cancelled"
    bot_room.refresh_from_db()
    assert bot_room.handler == "people"


def test_a_bot_message_a_stopped_worker_left_sending_is_dropped_not_sent(
    bot_room, rchat, monkeypatch
):
    """The sweep hands it back as queued; the claim drops it (it was written before the
    take-over): the take-over still wins."""
    message = services.message_send(room=bot_room, type="text", data="late", sender="bot")
    Message.objects.filter(pk=message.pk).update(status="sending", attempts=1)
    monkeypatch.setattr(handover, "IN_FLIGHT_WAIT_SECONDS", 0.1)

    services.room_take_over(room=bot_room, user=UserFactory())
    Message.objects.filter(pk=message.pk).update(status="queued")  # as the sweep does
    ChatRoom.objects.filter(pk=bot_room.pk).update(send_after=message.created_at)
    services.delivery_drain()

    message.refresh_from_db()
    assert message.status == "cancelled" and "took the chat room over" in message.last_error
    assert rchat == []


def test_the_bots_own_hand_over_still_sends_its_parting_words(bot_room, rchat):
    services.message_send(room=bot_room, type="text", data="ส่งต่อให้พนักงานนะคะ", sender="rule")

    services.room_hand_over(room=bot_room, reason=Handover.Reason.ASKED, detail="“คุยกับพนักงาน”")
    services.delivery_drain()

    assert texts(rchat) == ["ส่งต่อให้พนักงานนะคะ"]
    bot_room.refresh_from_db()
    assert bot_room.handler == "people" and bot_room.assignee is None
    assert "คุยกับพนักงาน" in bot_room.handover_reason


def test_return_to_the_bot_and_closing_hand_back(bot_room, rchat):
    agent = UserFactory()
    services.room_take_over(room=bot_room, user=agent)
    services.room_return_to_bot(room=bot_room, by=agent)
    bot_room.refresh_from_db()
    assert bot_room.handler == "bot" and bot_room.handover_reason == ""
    services.message_send(room=bot_room, type="text", data="back", sender="bot")
    services.delivery_drain()
    assert texts(rchat) == ["back"]

    services.room_take_over(room=bot_room, user=agent)
    services.room_close(room=bot_room, by=agent)
    bot_room.refresh_from_db()
    assert bot_room.handler == "bot"
    assert list(Handover.objects.order_by("at", "id").values_list("reason", flat=True)) == [
        "taken",
        "returned",
        "taken",
        "closed",
    ]


def test_rooms_idle_for_long_go_back_to_the_bot(bot_room):
    from datetime import timedelta

    from django.utils import timezone

    services.room_take_over(room=bot_room, user=UserFactory())
    ChatRoom.objects.filter(pk=bot_room.pk).update(
        last_message_at=timezone.now() - timedelta(minutes=31)
    )
    with override_settings(RCHAT={"RETURN_TO_BOT_AFTER_MINUTES": 30}):
        assert services.rooms_return_idle() == 1
        assert services.rooms_return_idle() == 0
    bot_room.refresh_from_db()
    assert bot_room.handler == "bot"
    assert Handover.objects.filter(reason="idle").count() == 1


def test_a_closed_room_cannot_be_taken_over(bot_room):
    services.room_close(room=bot_room)
    with pytest.raises(InvalidMessage):
        services.room_take_over(room=bot_room, user=UserFactory())


def test_the_sender_field_tells_rchat_who_wrote_each_message(bot_room, rchat):
    agent = UserFactory(first_name="Arthit", last_name="S.")
    with override_settings(RCHAT={"SENDER_FIELD": "sender"}):
        services.message_send(room=bot_room, type="text", data="bot", sender="bot")
        services.message_send(room=bot_room, type="text", data="person", author=agent)
        services.delivery_drain()
    # The bot's message was cancelled by the person's reply (a take-over).
    assert [body.get("sender") for body in rchat] == [{"kind": "person", "name": "Arthit S."}]


def test_new_rooms_start_with_the_credentials_handler(client, httpserver):
    bot_first = CredentialFactory(bot_first=True)
    people_first = CredentialFactory(bot_first=False)
    for credential, chat_id in ((bot_first, "b-1"), (people_first, "p-1")):
        body = {"chat_id": chat_id, "message": {"id": chat_id, "type": "text", "data": "สวัสดี"}}
        answer = client.post(
            "/rchat/webhook/",
            json.dumps(body),
            content_type="application/json",
            HTTP_X_CHATDAY_SIGNATURE_TOKEN=credential.signature_token,
        )
        assert answer.status_code == 200, answer.content
    assert dict(ChatRoom.objects.values_list("chat_id", "handler")) == {
        "b-1": "bot",
        "p-1": "people",
    }


@pytest.mark.parametrize(
    ("rchat_settings", "error"),
    [
        ({"BOT": "tests.nowhere.Bot"}, "rchat.E009"),
        ({"BOT": "rchat.services.message_send"}, "rchat.E009"),
        ({"HANDOVER_PHRASES": "talk to a person"}, "rchat.E010"),
        ({"HANDOVER_REPLY": {"type": "text", "data": ""}}, "rchat.E011"),
        ({"HANDOVER_REPLY": "hello"}, "rchat.E011"),
    ],
)
def test_bot_settings_that_cannot_work_fail_the_checks(rchat_settings, error):
    from rchat.checks import check_settings

    with override_settings(RCHAT=rchat_settings):
        found = [e.id for e in check_settings()]
    assert error in found


def test_the_default_bot_settings_pass_the_checks():
    from rchat.checks import check_settings

    with override_settings(RCHAT={"BOT": "tests.test_bot_engine.ShopBot"}):
        assert not [
            e.id for e in check_settings() if e.id in ("rchat.E009", "rchat.E010", "rchat.E011")
        ]
