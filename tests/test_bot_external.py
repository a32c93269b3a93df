"""Forwarding inbound messages to an external bot (rchat/bots/external.py).

pytest-httpserver stands in for the bot: a real HTTP server on a free port, answering
what each test tells it and recording every request. The tests call ``forward`` (one
try) themselves, or run the Celery task eagerly, against the real database.
"""

import hashlib
import hmac
import json
import logging
import socket
import time
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from rchat import services
from rchat.bots import external
from rchat.bots.tasks import forward_to_bot
from rchat.models import BotForward, ChatRoom, ExternalBot, Handover, Message
from tests.factories import ChatRoomFactory, CredentialFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec_external-bot-signing-secret-0123456789"
BOT_PATH = "/rasa/webhook"
THAI = "สวัสดีค่ะ อยากทราบว่าพัสดุส่งถึงเมื่อไหร่คะ"


@pytest.fixture(autouse=True)
def forward_settings(settings):
    settings.RCHAT = {
        **settings.RCHAT,
        "BOT_FORWARD_MAX_ATTEMPTS": 4,
        "BOT_FORWARD_TIMEOUT": 2.0,
        "BOT_THREAD_LENGTH": 3,
    }
    return settings


@pytest.fixture
def room(httpserver):
    """A chat room the bot handles, whose credential has an external bot at httpserver."""
    credential = CredentialFactory(name="ร้านกาแฟ", bot_first=True)
    ExternalBot.objects.create(
        credential=credential, url=httpserver.url_for(BOT_PATH), secret=SECRET
    )
    return ChatRoomFactory(
        credential=credential,
        chat_id="U-line-42",
        channel=ChatRoom.Channel.LINE,
        display_name="คุณสมชาย",
        handler=ChatRoom.Handler.BOT,
    )


@pytest.fixture
def message(room):
    """The end user's latest message, after a short conversation with the bot."""
    MessageFactory(room=room, data="first", text="first")
    MessageFactory(room=room, data="สวัสดี", text="สวัสดี")
    MessageFactory(room=room, direction="out", data="ยินดีต้อนรับค่ะ", text="ยินดีต้อนรับค่ะ", sender="bot")
    return MessageFactory(room=room, data=THAI, text=THAI, external_id="line-msg-9")


def answers(httpserver, *responses):
    """The bot answers each request with the next of ``responses`` (status or
    (status, headers, body)), in order."""
    for each in responses:
        status, headers, body = each if isinstance(each, tuple) else (each, {}, "")
        httpserver.expect_ordered_request(BOT_PATH, method="POST").respond_with_data(
            body, status=status, headers=headers
        )


def tries(message):
    return list(
        BotForward.objects.filter(message=message)
        .order_by("attempt")
        .values_list("attempt", "outcome", "http_status")
    )


def requests_made(httpserver):
    return [request for request, _response in httpserver.log]


# --- The body and its signature -------------------------------------------------------------


def test_the_signature_verifies_with_the_secret_and_fails_otherwise(httpserver, message):
    """What the bot receives verifies with the secret, the raw body and the timestamp
    sent; a wrong secret, a changed body or a stale timestamp do not."""
    answers(httpserver, 200)
    external.forward(message.pk)
    (request,) = requests_made(httpserver)
    body = request.get_data()
    stamp = request.headers["X-Rchat-Timestamp"]
    signed = request.headers["X-Rchat-Signature"]

    assert signed.startswith("sha256=")
    assert abs(int(stamp) - time.time()) < 60
    assert external.signature_verify(SECRET, body, stamp, signed)
    assert not external.signature_verify("another-secret", body, stamp, signed)
    assert not external.signature_verify(SECRET, body + b" ", stamp, signed)
    assert not external.signature_verify(SECRET, body, int(stamp) + 1, signed)
    assert not external.signature_verify(SECRET, body, stamp, signed, now=int(stamp) + 301)
    assert external.signature_verify(SECRET, body, stamp, signed, now=int(stamp) + 299)
    assert not external.signature_verify(SECRET, body, "not-a-number", signed)
    assert not external.signature_verify(SECRET, body, stamp, None)
    # Without rchat: what docs/bots_external.md tells a bot in another language to do.
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(signed, "sha256=" + expected.hexdigest())


def test_the_body_carries_the_message_room_thread_and_where_to_answer(httpserver, message):
    """Version 1: the message, its room, the latest messages oldest first (the message
    last), and the API URLs to reply and hand over; Thai as UTF-8, not \\u escapes."""
    answers(httpserver, 200)
    external.forward(message.pk)
    (request,) = requests_made(httpserver)
    raw = request.get_data()
    body = json.loads(raw)
    room = message.room

    assert THAI.encode() in raw and b"\\u0e" not in raw
    assert raw == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert (body["version"], body["event"]) == (1, "message")
    assert body["message"] == {
        "id": message.pk,
        "type": "text",
        "data": THAI,
        "text": THAI,
        "created_at": message.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "external_id": "line-msg-9",
    }
    assert body["room"] == {
        "id": room.pk,
        "chat_id": "U-line-42",
        "channel": "line",
        "display_name": "คุณสมชาย",
        "handler": "bot",
    }
    assert body["credential"] == {"name": "ร้านกาแฟ"}
    # BOT_THREAD_LENGTH is 3: the oldest message is left out.
    assert [(m["direction"], m["sender"], m["data"]) for m in body["thread"]] == [
        ("in", "", "สวัสดี"),
        ("out", "bot", "ยินดีต้อนรับค่ะ"),
        ("in", "", THAI),
    ]
    assert body["thread"][-1]["id"] == message.pk
    assert set(body["thread"][0]) == {"id", "direction", "sender", "type", "data", "created_at"}
    assert body["reply"] == {
        "messages_url": f"https://site.example/rchat/api/rooms/{room.pk}/messages/",
        "hand_over_url": f"https://site.example/rchat/api/rooms/{room.pk}/hand-over/",
    }


def test_the_headers_name_the_try_and_rchat(httpserver, message):
    answers(httpserver, 200)
    external.forward(message.pk)
    (request,) = requests_made(httpserver)
    row = BotForward.objects.get(message=message)

    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["User-Agent"].startswith("rchat/")
    assert request.headers["X-Rchat-Delivery"] == str(row.pk)
    assert SECRET not in str(request.headers)


def test_without_a_site_url_the_reply_urls_are_paths(httpserver, message, settings):
    settings.RCHAT = {**settings.RCHAT, "SITE_URL": ""}
    answers(httpserver, 200)
    external.forward(message.pk)
    body = json.loads(requests_made(httpserver)[0].get_data())
    assert body["reply"]["messages_url"] == f"/rchat/api/rooms/{message.room_id}/messages/"


# --- Tries, retries, the attempt log --------------------------------------------------------


def test_a_2xx_is_one_try_recorded_as_delivered(httpserver, message):
    answers(httpserver, 202)
    forwarded = external.forward(message.pk)

    assert (forwarded.outcome, forwarded.attempt, forwarded.http_status) == ("sent", 1, 202)
    row = BotForward.objects.get(message=message)
    assert (row.attempt, row.outcome, row.http_status, row.error) == (1, "sent", 202, "")
    assert row.url == httpserver.url_for(BOT_PATH)
    assert row.started_at is not None and row.duration_ms >= 0
    message.room.refresh_from_db()
    assert message.room.handler == "bot"


def test_503s_are_retried_with_back_off_until_the_bot_answers(httpserver, message):
    """Each try is a row, numbered 1..n; the last one that got 2xx is delivered."""
    answers(httpserver, (503, {}, "upstream down"), 503, 200)

    first, second, third = (external.forward(message.pk) for _ in range(3))

    assert [first.outcome, second.outcome, third.outcome] == ["retry", "retry", "sent"]
    assert 1.0 <= first.retry_in <= 2.0 and 2.0 <= second.retry_in <= 4.0
    assert tries(message) == [(1, "retry", 503), (2, "retry", 503), (3, "sent", 200)]
    error = BotForward.objects.get(message=message, attempt=1).error
    assert error == f"HTTP 503 from {httpserver.url_for(BOT_PATH)}: upstream down"
    # Delivered: running again (a duplicate task) sends nothing more.
    assert external.forward(message.pk).outcome == external.SKIPPED
    assert len(requests_made(httpserver)) == 3


def test_a_400_is_not_retried_and_people_take_the_room(httpserver, message):
    answers(httpserver, (400, {}, '{"error": "unknown intent"}'))

    forwarded = external.forward(message.pk)

    assert (forwarded.outcome, forwarded.attempt) == ("failed", 1)
    assert tries(message) == [(1, "failed", 400)]
    room = ChatRoom.objects.get(pk=message.room_id)
    assert room.handler == "people"
    handover = Handover.objects.get(room=room)
    assert (handover.reason, handover.message_id) == (Handover.Reason.BOT_ERROR, message.pk)
    assert handover.detail.startswith("The external bot at 127.0.0.1 did not answer: HTTP 400")
    assert "unknown intent" in handover.detail and "\n" not in handover.detail
    assert external.forward(message.pk).outcome == external.SKIPPED
    assert len(requests_made(httpserver)) == 1


def test_a_429_is_retried_after_the_time_it_asks_for(httpserver, message):
    answers(httpserver, (429, {"Retry-After": "7"}, "slow down"), 200)

    forwarded = external.forward(message.pk)

    assert (forwarded.outcome, forwarded.retry_in, forwarded.http_status) == ("retry", 7.0, 429)
    assert external.forward(message.pk).outcome == "sent"
    assert tries(message) == [(1, "retry", 429), (2, "sent", 200)]


def test_a_429_asking_for_longer_than_rchat_waits_hands_over_now(httpserver, message):
    """An end user is waiting: a bot that asks for more than RETRY_MAX_SECONDS is not
    tried again sooner than it asked; people answer instead."""
    answers(httpserver, (429, {"Retry-After": "3600"}, ""))

    forwarded = external.forward(message.pk)

    assert forwarded.outcome == "failed"
    assert tries(message) == [(1, "failed", 429)]
    room = ChatRoom.objects.get(pk=message.room_id)
    assert room.handler == "people" and "3600" in room.handover_reason


def test_408_is_retried(httpserver, message):
    answers(httpserver, 408)
    assert external.forward(message.pk).outcome == "retry"


def test_the_last_try_failing_hands_the_room_to_people_with_the_reason(httpserver, message):
    """After BOT_FORWARD_MAX_ATTEMPTS (4) tries, people take the room, unassigned, with
    the bot's host and the last error as the reason."""
    answers(httpserver, *[(500, {}, "Internal Server Error")] * 4)

    outcomes = [external.forward(message.pk).outcome for _ in range(4)]

    assert outcomes == ["retry", "retry", "retry", "failed"]
    assert [row[0] for row in tries(message)] == [1, 2, 3, 4]
    room = ChatRoom.objects.get(pk=message.room_id)
    assert (room.handler, room.assignee_id) == ("people", None)
    assert "The external bot at 127.0.0.1 did not answer: HTTP 500" in room.handover_reason
    handover = Handover.objects.get(room=room)
    assert handover.reason == Handover.Reason.BOT_ERROR and handover.message_id == message.pk
    # Nothing more: no fifth try, no second hand-over.
    assert external.forward(message.pk).outcome == external.SKIPPED
    assert len(requests_made(httpserver)) == 4 and Handover.objects.count() == 1


def test_a_bot_slower_than_the_time_out_is_retried(httpserver, message, settings):
    settings.RCHAT = {**settings.RCHAT, "BOT_FORWARD_TIMEOUT": 0.3}

    def slow(request):
        time.sleep(1.0)
        return Response("late", status=200)

    httpserver.expect_request(BOT_PATH).respond_with_handler(slow)

    forwarded = external.forward(message.pk)

    assert (forwarded.outcome, forwarded.http_status) == ("retry", None)
    row = BotForward.objects.get(message=message)
    assert row.error.startswith("no answer from http://127.0.0.1:") and "0.3 s" in row.error
    assert row.duration_ms >= 250


def test_a_bot_that_cannot_be_reached_is_retried(message):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ExternalBot.objects.filter(credential_id=message.room.credential_id).update(
        url=f"http://127.0.0.1:{port}/bot"
    )

    forwarded = external.forward(message.pk)

    assert (forwarded.outcome, forwarded.http_status) == ("retry", None)
    error = BotForward.objects.get(message=message).error
    assert error.startswith(f"could not connect to http://127.0.0.1:{port}/bot")


def test_a_redirect_is_not_followed_and_fails_at_once(httpserver, message):
    answers(httpserver, (301, {"Location": "https://new.example/hook?key=k"}, ""))

    assert external.forward(message.pk).outcome == "failed"
    error = BotForward.objects.get(message=message).error
    assert "https://new.example/hook" in error and "key=k" not in error


def test_the_task_tries_again_until_the_bot_answers(httpserver, message, celery_eager):
    """The Celery task retries on "retry" (eagerly here: no countdown) and counts the
    tries in BotForward rows, not in Celery."""
    answers(httpserver, 503, 503, 200)

    forward_to_bot.delay(message.pk)

    assert tries(message) == [(1, "retry", 503), (2, "retry", 503), (3, "sent", 200)]


def test_the_back_off_grows_and_is_capped():
    for attempt, (low, high) in {1: (1, 2), 2: (2, 4), 3: (4, 8), 10: (30, 60)}.items():
        delays = [external.retry_delay(attempt) for _ in range(50)]
        assert all(low <= delay <= high for delay in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jitter


# --- When nothing is forwarded --------------------------------------------------------------


def test_an_inactive_bot_gets_nothing_and_nothing_is_recorded(httpserver, message):
    ExternalBot.objects.update(active=False)

    forwarded = external.forward(message.pk)

    assert forwarded.outcome == external.SKIPPED
    assert not BotForward.objects.exists() and requests_made(httpserver) == []
    assert ChatRoom.objects.get(pk=message.room_id).handler == "bot"


def test_a_deleted_bot_gets_nothing(httpserver, message):
    ExternalBot.objects.all().delete()
    assert external.forward(message.pk).outcome == external.SKIPPED
    assert not BotForward.objects.exists() and requests_made(httpserver) == []


def test_a_room_people_took_over_meanwhile_is_not_forwarded(httpserver, message):
    """A take-over between two tries ends the forwarding: no try, no hand-over record."""
    answers(httpserver, 503)
    assert external.forward(message.pk).outcome == "retry"
    services.room_take_over(room=message.room, user=UserFactory())

    assert external.forward(message.pk).outcome == external.SKIPPED
    assert tries(message) == [(1, "retry", 503)]
    assert list(Handover.objects.values_list("reason", flat=True)) == [Handover.Reason.TAKEN]


def test_outbound_messages_and_unknown_ids_are_not_forwarded(httpserver, message):
    reply = MessageFactory(room=message.room, direction="out", sender="bot")
    assert external.forward(reply.pk).outcome == external.SKIPPED
    assert external.forward(987654321).outcome == external.SKIPPED
    assert requests_made(httpserver) == []


def test_a_second_worker_leaves_a_try_under_way_alone(httpserver, message):
    """Two tasks for one message: while one's try has no answer yet, the other does
    nothing (safe to run twice)."""
    BotForward.objects.create(
        message=message,
        url="http://bot.example/",
        attempt=1,
        started_at=timezone.now(),
        outcome=BotForward.Outcome.RETRY,
        error=external.IN_FLIGHT,
    )

    forwarded = external.forward(message.pk)

    assert forwarded.outcome == external.SKIPPED and forwarded.reason == "a try is under way"
    assert requests_made(httpserver) == []


def test_a_try_whose_worker_stopped_counts_and_the_next_one_goes(httpserver, message):
    BotForward.objects.create(
        message=message,
        url="http://bot.example/",
        attempt=1,
        started_at=timezone.now() - timedelta(minutes=5),
        outcome=BotForward.Outcome.RETRY,
        error=external.IN_FLIGHT,
    )
    answers(httpserver, 200)

    assert external.forward(message.pk).outcome == "sent"
    assert tries(message) == [(1, "retry", None), (2, "sent", 200)]


def test_every_try_spent_by_stopped_workers_hands_over(httpserver, message):
    for attempt in range(1, 5):
        BotForward.objects.create(
            message=message,
            url="http://bot.example/",
            attempt=attempt,
            started_at=timezone.now() - timedelta(minutes=10),
            outcome=BotForward.Outcome.RETRY,
            error=external.IN_FLIGHT,
        )

    assert external.forward(message.pk).outcome == "failed"
    assert requests_made(httpserver) == []
    assert ChatRoom.objects.get(pk=message.room_id).handler == "people"


# --- The secret -------------------------------------------------------------------------------


def test_the_secret_never_reaches_a_row_an_error_or_a_log(httpserver, message, caplog):
    """A bot that echoes the secret in its errors, and a URL with a key in its query:
    neither shows in BotForward rows, the hand-over or rchat's log lines (at DEBUG)."""
    caplog.set_level(logging.DEBUG)
    key = "vendor-api-key-9876543210"
    ExternalBot.objects.update(url=httpserver.url_for(BOT_PATH) + f"?key={key}")
    answers(
        httpserver,
        (500, {}, f"bad secret {SECRET}"),
        (401, {}, json.dumps({"secret": SECRET})),
    )

    assert [external.forward(message.pk).outcome for _ in range(2)] == ["retry", "failed"]

    stored = list(BotForward.objects.order_by("attempt").values_list("url", "error"))
    room = ChatRoom.objects.get(pk=message.room_id)
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("rchat")]
    shown = [*stored, room.handover_reason, *Handover.objects.values_list("detail", flat=True)]
    for text in map(str, [*shown, *logged]):
        assert SECRET not in text and key not in text
    assert "HTTP 401" in room.handover_reason
    assert stored[0][0] == httpserver.url_for(BOT_PATH)
    assert "bad secret ••••" in stored[0][1]  # masked, not removed
    assert len(logged) == 2 and all("Forwarding message" in line for line in logged)


def test_the_secret_is_stored_encrypted(message):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM rchat_externalbot")
        (stored,) = cursor.fetchone()
    assert SECRET not in stored
    assert ExternalBot.objects.get().masked_secret.endswith(SECRET[-4:])


def test_the_message_thread_is_read_once_per_try(
    httpserver, message, django_assert_max_num_queries
):
    """A try costs a fixed handful of queries, whatever the room's history."""
    MessageFactory.create_batch(30, room=message.room)
    latest = Message.objects.filter(room=message.room).latest("id")
    answers(httpserver, 200)
    with django_assert_max_num_queries(12):
        assert external.forward(latest.pk).outcome == "sent"


def test_a_worker_that_autodiscovers_rchat_tasks_knows_the_task():
    """Celery's autodiscovery imports each app's ``tasks`` module only: rchat.tasks
    must bring the bots' task with it, or a worker drops every forward as unregistered."""
    import rchat.tasks

    assert rchat.tasks.forward_to_bot is forward_to_bot
    assert forward_to_bot.name == "rchat.bots.tasks.forward_to_bot"
