"""Outbound delivery policy: message_send and the batched drain against a real HTTP server.

pytest-httpserver stands in for R-Chat. The tests run ``delivery_drain`` themselves,
one batch at a time, instead of a worker (tests/test_worker_delivery.py has the worker).
Wake-ups go to kombu's in-memory broker, where the tests read what was enqueued.
"""

import json
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from rchat import services, signals
from rchat.exceptions import InvalidMessage
from rchat.models import Credential, DeliveryAttempt, Message
from rchat.services.delivery import retry_delay
from rchat.tasks import drain_outbound
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory

SEND_PATH = "/api/v1/external/send-message"
REGISTER_PATH = "/api/v1/external/register"

pytestmark = pytest.mark.django_db


def use_broker(monkeypatch, url):
    # Celery reads the CELERY_BROKER_URL environment variable before its settings.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", url)


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    """Wake-ups go to kombu's in-memory transport; returns a reader of what was enqueued."""
    app = drain_outbound.app
    use_broker(monkeypatch, "memory://")

    def drain():
        found = []
        with app.connection_for_read("memory://") as connection:
            queue = connection.SimpleQueue("celery")
            while True:
                try:
                    item = queue.get(block=False)
                except queue.Empty:
                    break
                args = item.decode()[0]
                found.append((item.headers["task"], args, item.headers.get("eta")))
                item.ack()
            queue.close()
        return found

    drain()
    return drain


@pytest.fixture
def woken(memory_broker):
    """How many drains were woken since the last call: (now, later) counts."""

    def read():
        found = [eta for task, _args, eta in memory_broker() if task.endswith("drain_outbound")]
        return sum(eta is None for eta in found), sum(eta is not None for eta in found)

    return read


@pytest.fixture
def rchat_settings(settings):
    settings.RCHAT = {
        **settings.RCHAT,
        "RETRY_BASE_DELAY": 0.0,
        "DELIVERY_MAX_ATTEMPTS": 5,
        "CONNECT_TIMEOUT": 2.0,
        "READ_TIMEOUT": 5.0,
    }
    return settings


@pytest.fixture
def room(httpserver, rchat_settings):
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    return ChatRoomFactory(credential=credential, chat_id="chat-42")


@pytest.fixture
def received(connect):
    """message_sent / message_failed as a list of (signal name, message id, error)."""
    seen = []
    connect(signals.message_sent, lambda message, **kwargs: seen.append(("sent", message.pk, None)))
    connect(
        signals.message_failed,
        lambda message, error, **kwargs: seen.append(("failed", message.pk, error)),
    )
    return seen


def sent_bodies(httpserver):
    return [
        json.loads(request.data)
        for request, _response in httpserver.log
        if request.path == SEND_PATH
    ]


def texts_sent(httpserver):
    return [body["message"]["data"] for body in sent_bodies(httpserver)]


def send(room, text, **kwargs):
    return services.message_send(room=room, type="text", data=text, **kwargs)


def drain(capture, *messages):
    """One batch, with its after-commit work (signals, wake-ups) run; ``messages`` are
    refreshed. Returns the DrainResult."""
    with capture(execute=True):
        result = services.delivery_drain(batches=1)
    for message in messages:
        message.refresh_from_db()
    return result


def outcome(message):
    """The outcome of ``message``'s last try ("" for none)."""
    last = message.attempt_log.order_by("-id").first()
    return last.outcome if last else ""


def deliver(message, capture):
    """A drain, then the outcome of ``message``'s last try if it was tried in it."""
    before = message.attempt_log.count()
    drain(capture, message)
    return outcome(message) if message.attempt_log.count() > before else "not-tried"


def due_now(*messages):
    """Skip the back-off: make the messages and their rooms due at once."""
    now = timezone.now()
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(next_attempt_at=now)
    from rchat.models import ChatRoom

    ChatRoom.objects.filter(pk__in=[m.room_id for m in messages], send_after__isnull=False).update(
        send_after=now
    )


# --- message_send ---------------------------------------------------------------------


def test_send_queues_the_message_updates_the_room_and_wakes_a_drain_on_commit(
    room, woken, django_capture_on_commit_callbacks
):
    author = UserFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = send(room, "  Hello, how can we help?  ", author=author)
        assert woken() == (0, 0), "nothing is enqueued before the commit"
    for callback in callbacks:
        callback()
    message.refresh_from_db()
    room.refresh_from_db()
    assert (message.direction, message.status, message.type) == ("out", "queued", "text")
    assert message.data == "Hello, how can we help?"
    assert message.text == "Hello, how can we help?"
    assert message.author == author
    assert room.last_message_preview == "Hello, how can we help?"
    assert room.last_message_at == message.next_attempt_at == room.send_after
    assert woken() == (1, 0)


def test_send_refuses_a_closed_room_and_stores_nothing(room):
    services.room_close(room=room)
    with pytest.raises(InvalidMessage) as caught:
        send(room, "hello")
    assert "room" in caught.value.errors
    assert not Message.objects.exists()


def test_send_refuses_invalid_data_and_stores_nothing(room):
    with pytest.raises(InvalidMessage) as caught:
        services.message_send(room=room, type="location", data={"latitude": 200, "longitude": 0})
    assert "latitude" in caught.value.errors
    assert not Message.objects.exists()


def test_broker_down_does_not_reach_the_sender_and_the_sweep_delivers_later(
    room, httpserver, monkeypatch, woken, rchat_settings, django_capture_on_commit_callbacks
):
    """With no broker the sender gets no error; the sweep wakes a drain for the message."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    use_broker(monkeypatch, f"redis://127.0.0.1:{dead_port}/3")
    with django_capture_on_commit_callbacks(execute=True):
        message = send(room, "sent while the broker is down")
    message.refresh_from_db()
    assert message.status == "queued"

    use_broker(monkeypatch, "memory://")
    assert services.message_requeue_stale() == 1, "the room is due"
    assert woken() == (1, 0)
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"id": "r-1"})
    assert deliver(message, django_capture_on_commit_callbacks) == "sent"
    assert texts_sent(httpserver) == ["sent while the broker is down"]


# --- Batches --------------------------------------------------------------------------


def test_a_batch_takes_one_message_per_room_oldest_first(
    room, httpserver, django_capture_on_commit_callbacks
):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    rooms = [room, *(ChatRoomFactory(credential=room.credential) for _ in range(3))]
    for n in range(3):
        for each in rooms:
            send(each, f"{each.chat_id} #{n}")

    batches = [drain(django_capture_on_commit_callbacks) for _ in range(3)]

    assert [(b.claimed, b.sent) for b in batches] == [(4, 4)] * 3
    for each in rooms:
        sent = [text for text in texts_sent(httpserver) if text.startswith(f"{each.chat_id} #")]
        assert sent == [f"{each.chat_id} #{n}" for n in range(3)]
    assert not Message.objects.filter(status__in=["queued", "sending"]).exists()
    assert drain(django_capture_on_commit_callbacks).claimed == 0


@pytest.mark.postgres
def test_a_drain_runs_the_same_number_of_queries_for_one_room_or_thirty(
    room, httpserver, monkeypatch, django_capture_on_commit_callbacks
):
    """The claim and the record are per batch, whatever the batch holds and whatever the
    rooms' history (here, 300 older messages in the first room)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from rchat.services import delivery

    # One record per batch here (a slow test machine must not record mid-batch).
    monkeypatch.setattr(delivery, "RECORD_EVERY_SECONDS", 3600.0)
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    for n in range(300):
        send(room, f"old {n}")
    Message.objects.filter(room=room).update(status="sent")
    counts = []
    for rooms in (1, 30):
        for each in [
            room,
            *(ChatRoomFactory(credential=room.credential) for _ in range(rooms - 1)),
        ]:
            send(each, "hello")
        with CaptureQueriesContext(connection) as queries:
            assert drain(django_capture_on_commit_callbacks).sent == rooms
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_a_credential_s_send_rate_spaces_its_sends_and_gives_back_what_must_wait(
    room, httpserver, django_capture_on_commit_callbacks
):
    """At one message every two seconds the first goes at once; the others' turns are
    more than a second away, so they go back to the queue untried, due at their turn."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    Credential.objects.filter(pk=room.credential_id).update(send_rate=0.5)
    messages = [send(room, "first")]
    messages += [
        send(ChatRoomFactory(credential=room.credential, chat_id=f"rate-{n}"), f"m{n}")
        for n in range(4)
    ]
    before = timezone.now()

    result = drain(django_capture_on_commit_callbacks, *messages)

    assert (result.sent, result.waiting) == (1, 4)
    assert len(httpserver.log) == 1
    for message in messages[1:]:
        message.room.refresh_from_db()
        assert (message.status, message.attempts) == ("queued", 0)
        assert (message.room.send_after - before).total_seconds() >= 1.0
    # Another credential has a budget of its own.
    other = ChatRoomFactory(credential=CredentialFactory(base_url=room.credential.base_url))
    elsewhere = send(other, "elsewhere")
    assert drain(django_capture_on_commit_callbacks, elsewhere).sent == 1


def test_a_worker_that_dies_mid_batch_has_recorded_what_it_sent_before(
    room, httpserver, monkeypatch
):
    """Sends are recorded as they go, not only at the end of the batch: what a killed
    worker leaves "sending" (and R-Chat may see twice) is only its last sends."""
    from rchat.services import delivery

    monkeypatch.setattr(delivery, "RECORD_EVERY_SECONDS", 0.0)
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    messages = [send(room, "one")]
    messages += [
        send(ChatRoomFactory(credential=room.credential, chat_id=f"dies-{n}"), f"m{n}")
        for n in range(3)
    ]
    real_send_one = delivery._send_one

    def dies_at_the_third(item, credential):
        if len(httpserver.log) == 2:
            raise SystemExit("killed")
        real_send_one(item, credential)

    monkeypatch.setattr(delivery, "_send_one", dies_at_the_third)
    with pytest.raises(SystemExit):
        services.delivery_drain(batches=1)

    statuses = sorted(Message.objects.values_list("status", flat=True))
    assert statuses == ["sending", "sending", "sent", "sent"]
    assert DeliveryAttempt.objects.count() == 2


# --- Retry policy ---------------------------------------------------------------------


def test_idempotency_keys_differ_per_message_and_the_body_field_can_be_left_out(
    room, httpserver, settings, django_capture_on_commit_callbacks
):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"status": "SUCCESS"})
    first, second = send(room, "one"), send(room, "two")
    settings.RCHAT = {**settings.RCHAT, "IDEMPOTENCY_KEY_FIELD": ""}

    for message in (first, second):
        assert deliver(message, django_capture_on_commit_callbacks) == "sent"

    headers = [request.headers["Idempotency-Key"] for request, _ in httpserver.log]
    assert headers == [first.dedup_key, second.dedup_key] and len(set(headers)) == 2
    assert all("idempotency_key" not in body for body in sent_bodies(httpserver))


def test_503_twice_then_200_is_sent_once_after_three_attempts(
    room, httpserver, received, django_capture_on_commit_callbacks
):
    for _ in range(2):
        httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data(
            "busy", status=503
        )
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "data": {"message_id": "rc-981"}}
    )
    message = send(room, "hello")

    outcomes = []
    for _ in range(3):
        outcomes.append(deliver(message, django_capture_on_commit_callbacks))
        due_now(message)

    assert outcomes == ["retry", "retry", "sent"]
    assert (message.status, message.attempts, message.external_id) == ("sent", 3, "rc-981")
    assert message.sent_at is not None and message.last_error == ""
    attempts = list(message.attempt_log.values_list("http_status", "outcome", "error_type"))
    assert attempts == [
        (503, "retry", "RChatUnavailableError"),
        (503, "retry", "RChatUnavailableError"),
        (200, "sent", ""),
    ]
    key = message.dedup_key
    assert key.startswith("rchat-") and len(key) == 38
    assert sent_bodies(httpserver)[-1] == {
        "message": {"type": "text", "data": "hello"},
        "chat_id": "chat-42",
        "idempotency_key": key,
    }
    # Every try of the message carries the same key, in the header and the body.
    assert [request.headers["Idempotency-Key"] for request, _ in httpserver.log] == [key] * 3
    assert {body["idempotency_key"] for body in sent_bodies(httpserver)} == {key}
    assert received == [("sent", message.pk, None)]
    # A late or repeated wake-up sends nothing twice.
    assert deliver(message, django_capture_on_commit_callbacks) == "not-tried"
    assert len(httpserver.log) == 3


def test_a_retry_waits_for_its_back_off_and_an_early_drain_sends_nothing(
    room, httpserver, rchat_settings, woken, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "RETRY_BASE_DELAY": 30.0}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data("down", status=502)
    message = send(room, "hello")
    woken()
    before = timezone.now()

    assert deliver(message, django_capture_on_commit_callbacks) == "retry"
    after = timezone.now()
    # The first back-off step is RETRY_BASE_DELAY: half of it sure, half at random.
    assert before + timedelta(seconds=15) <= message.next_attempt_at
    assert message.next_attempt_at <= after + timedelta(seconds=30)
    message.room.refresh_from_db()
    assert message.room.send_after == message.next_attempt_at
    assert woken() == (0, 1), "one drain is woken for when the back-off ends"
    assert deliver(message, django_capture_on_commit_callbacks) == "not-tried"
    assert len(httpserver.log) == 1


def test_back_off_doubles_each_try_and_never_falls_below_half_its_step(settings):
    """Equal jitter: try n waits between step/2 and step, step = base * 2^(n-1), capped."""
    settings.RCHAT = {**settings.RCHAT, "RETRY_BASE_DELAY": 2.0, "RETRY_MAX_DELAY": 40.0}
    for attempts, step in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 40), (9, 40)]:
        delays = [retry_delay(attempts, None) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step, attempts


def test_a_message_fails_after_the_last_attempt_with_the_reason(
    room, httpserver, rchat_settings, received, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "DELIVERY_MAX_ATTEMPTS": 2}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data("maintenance", status=503)
    message = send(room, "hello")
    assert deliver(message, django_capture_on_commit_callbacks) == "retry"
    due_now(message)
    assert deliver(message, django_capture_on_commit_callbacks) == "failed"
    assert (message.status, message.attempts) == ("failed", 2)
    assert "503" in message.last_error and "maintenance" in message.last_error
    assert received == [("failed", message.pk, message.last_error)]


def test_429_waits_for_retry_after_and_slows_the_whole_credential(
    room, httpserver, django_capture_on_commit_callbacks
):
    """R-Chat's 429 holds every room of the credential, not only the message it refused;
    the others go back to the queue untried, their attempts not counted."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "45"}
    )
    message = send(room, "hello")
    others = [send(ChatRoomFactory(credential=room.credential), f"other {n}") for n in range(3)]
    before = timezone.now()

    result = drain(django_capture_on_commit_callbacks, message, *others)

    assert (result.retry, result.waiting) == (1, 3)
    wait = (message.next_attempt_at - before).total_seconds()
    assert 44 <= wait <= 46
    assert message.attempt_log.get().http_status == 429
    assert len(httpserver.log) == 1
    for other in others:
        other.room.refresh_from_db()
        assert (other.status, other.attempts, other.attempt_log.count()) == ("queued", 0, 0)
        assert (other.room.send_after - before).total_seconds() >= 44
    # Made due again before the hold ends, they still wait for it.
    due_now(*others)
    assert drain(django_capture_on_commit_callbacks).waiting == 3
    assert len(httpserver.log) == 1


def test_429_retry_after_is_capped_by_retry_max_delay(
    room, httpserver, rchat_settings, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "RETRY_MAX_DELAY": 60.0}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data(
        "", status=429, headers={"Retry-After": "86400"}
    )
    message = send(room, "hello")
    before = timezone.now()
    deliver(message, django_capture_on_commit_callbacks)
    assert message.next_attempt_at <= before + timedelta(seconds=61)


def test_400_fails_at_once_keeping_rchats_answer(
    room, httpserver, received, django_capture_on_commit_callbacks
):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"error": "chat_id not found"}, status=400
    )
    message = send(room, "hello")
    assert deliver(message, django_capture_on_commit_callbacks) == "failed"
    assert (message.status, message.attempts) == ("failed", 1)
    assert "chat_id not found" in message.last_error
    assert message.attempt_log.get().outcome == "failed"
    assert received == [("failed", message.pk, message.last_error)]
    assert deliver(message, django_capture_on_commit_callbacks) == "not-tried"
    assert len(httpserver.log) == 1


def test_no_token_is_kept_whole_in_errors(room, httpserver, django_capture_on_commit_callbacks):
    credential = room.credential
    echo = f"bad request from token {credential.token} sig {credential.signature_token}"
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data(echo, status=422)
    message = send(room, "hello")
    deliver(message, django_capture_on_commit_callbacks)
    attempt = message.attempt_log.get()
    for secret in (credential.token, credential.signature_token):
        assert secret not in message.last_error
        assert secret not in attempt.error
    assert "bad request from token" in attempt.error


def test_401_flags_the_credential_holds_messages_and_sends_them_after_register(
    room, httpserver, woken, received, rchat_settings, django_capture_on_commit_callbacks
):
    credential = room.credential
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data(
        "token revoked", status=401
    )
    first = send(room, "first")
    second = send(room, "second")
    elsewhere = send(ChatRoomFactory(credential=credential), "elsewhere")

    result = drain(django_capture_on_commit_callbacks, first, second, elsewhere)
    assert (result.held, result.waiting) == (1, 1), "the other room is not tried"
    credential.refresh_from_db()
    assert credential.status == Credential.Status.INVALID
    assert (first.status, first.attempt_log.get().outcome) == ("queued", "held")
    assert (elsewhere.status, elsewhere.attempts) == ("queued", 0)

    # While the token is refused nothing more reaches R-Chat: not on a wake-up, not
    # from the sweep, however long the messages wait.
    assert drain(django_capture_on_commit_callbacks).claimed == 0
    from rchat.models import ChatRoom

    ChatRoom.objects.update(send_after=timezone.now() - timedelta(hours=1))
    Message.objects.update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert services.message_requeue_stale() == 0
    assert len(httpserver.log) == 1
    woken()

    httpserver.expect_ordered_request(REGISTER_PATH, method="POST").respond_with_json(
        {"signature_token": "sig_new_signature_token_value"}
    )
    for _ in range(3):
        httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    with django_capture_on_commit_callbacks(execute=True):
        services.credential_register(credential=credential)
    assert woken() == (1, 0)

    assert drain(django_capture_on_commit_callbacks).sent == 2
    assert drain(django_capture_on_commit_callbacks).sent == 1
    sent = texts_sent(httpserver)
    assert sent[0] == "first" and sorted(sent[1:3]) == ["elsewhere", "first"]
    assert sent[3] == "second"
    assert [kind for kind, _id, _error in received] == ["sent"] * 3


# --- Order ----------------------------------------------------------------------------


def test_order_is_kept_while_the_first_message_is_retried(
    room, httpserver, rchat_settings, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "RETRY_BASE_DELAY": 30.0}
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=503)
    for _ in range(3):
        httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    first, second = send(room, "first"), send(room, "second")
    other_room = ChatRoomFactory(credential=room.credential, chat_id="chat-other")
    elsewhere = send(other_room, "elsewhere")

    result = drain(django_capture_on_commit_callbacks, first, second, elsewhere)
    assert (result.retry, result.sent) == (1, 1), "another room does not wait for this one"
    assert (second.status, second.attempts) == ("queued", 0)
    assert elsewhere.status == "sent"
    assert drain(django_capture_on_commit_callbacks).claimed == 0, "second waits for first"

    due_now(first)
    assert drain(django_capture_on_commit_callbacks, first).sent == 1
    assert drain(django_capture_on_commit_callbacks, second).sent == 1
    assert texts_sent(httpserver) == ["first", "elsewhere", "first", "second"]


def test_a_message_that_failed_for_good_no_longer_blocks_its_room(
    room, httpserver, django_capture_on_commit_callbacks
):
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=400)
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    first, second = send(room, "first"), send(room, "second")
    assert deliver(first, django_capture_on_commit_callbacks) == "failed"
    assert deliver(second, django_capture_on_commit_callbacks) == "sent"


def test_a_room_left_without_pending_messages_leaves_the_queue(
    room, django_capture_on_commit_callbacks
):
    """A queued message removed by other means (cancelled) does not keep its room due."""
    message = send(room, "hello")
    Message.objects.filter(pk=message.pk).update(status="cancelled")
    assert drain(django_capture_on_commit_callbacks).claimed == 0
    room.refresh_from_db()
    assert room.send_after is None


# --- Sending again, and the sweep -----------------------------------------------------


def test_retry_sends_a_failed_message_again_with_fresh_attempts(
    room, httpserver, woken, django_capture_on_commit_callbacks
):
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=400)
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    message = send(room, "hello")
    deliver(message, django_capture_on_commit_callbacks)
    woken()
    with django_capture_on_commit_callbacks(execute=True):
        services.message_retry(message=message)
    assert (message.status, message.attempts, message.last_error) == ("queued", 0, "")
    assert woken() == (1, 0)
    assert deliver(message, django_capture_on_commit_callbacks) == "sent"
    assert message.attempt_log.count() == 2, "the failed try stays in the log"


def test_retry_refuses_a_message_that_has_not_failed(room):
    message = send(room, "hello")
    with pytest.raises(InvalidMessage):
        services.message_retry(message=message)


def test_sweep_takes_back_abandoned_sends_and_wakes_overdue_rooms_only(
    room, woken, rchat_settings, httpserver, django_capture_on_commit_callbacks
):
    from rchat.models import ChatRoom

    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "STALE_AFTER_SECONDS": 60}
    long_ago = timezone.now() - timedelta(minutes=10)
    send(room, "its drain was lost")
    ChatRoom.objects.filter(pk=room.pk).update(send_after=long_ago)
    fresh = send(ChatRoomFactory(credential=room.credential), "just queued")
    out_of_queue = send(ChatRoomFactory(credential=room.credential), "room left the queue")
    Message.objects.filter(pk=out_of_queue.pk).update(next_attempt_at=long_ago)
    ChatRoom.objects.filter(pk=out_of_queue.room_id).update(send_after=None)
    abandoned = send(ChatRoomFactory(credential=room.credential), "worker died")
    Message.objects.filter(pk=abandoned.pk).update(
        status="sending", attempts=1, updated_at=long_ago
    )
    ChatRoom.objects.filter(pk=abandoned.room_id).update(send_after=None)
    woken()

    # abandoned and out_of_queue put back in the queue: four rooms due.
    assert services.message_requeue_stale() == 4
    assert woken() == (1, 0)
    abandoned.refresh_from_db()
    assert abandoned.status == "queued"
    assert abandoned.attempt_log.get().error_type == "WorkerLost"
    fresh.refresh_from_db()
    assert fresh.status == "queued"
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    assert drain(django_capture_on_commit_callbacks).sent == 4
    assert services.message_requeue_stale() == 0
    assert woken() == (0, 0)


def echo_bot(message_id):
    """A bot hook: answers every inbound message in its room."""
    inbound = Message.objects.select_related("room").get(pk=message_id)
    services.message_send(room=inbound.room, type="text", data=f"echo: {inbound.text}")


# Committed for real, as in a worker: the reply's wake-up runs at its commit.
@pytest.mark.django_db(transaction=True)
def test_a_bot_s_reply_is_sent_by_the_hook_s_own_task_without_a_trip_through_the_broker(
    room, httpserver, settings, woken
):
    from rchat.tasks import run_message_hook

    settings.RCHAT = {**settings.RCHAT, "ON_MESSAGE": "tests.test_delivery.echo_bot"}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({})
    inbound = Message.objects.create(
        room=room, direction="in", type="text", data="hello", text="hello", status="received"
    )

    run_message_hook(inbound.pk)

    assert texts_sent(httpserver) == ["echo: hello"], "sent when the task returns"
    assert woken() == (0, 0), "no drain was published for it"
