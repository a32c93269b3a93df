"""Outbound delivery policy: message_send and message_deliver against a real HTTP server.

pytest-httpserver stands in for R-Chat. The tests run ``message_deliver`` themselves,
one try at a time, instead of a worker (tests/test_worker_delivery.py has the worker).
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
from rchat.services import Delivery
from rchat.tasks import deliver_message
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory

SEND_PATH = "/api/v1/external/send-message"
REGISTER_PATH = "/api/v1/external/register"

pytestmark = pytest.mark.django_db


def use_broker(monkeypatch, url):
    # Celery reads the CELERY_BROKER_URL environment variable before its settings.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setattr(deliver_message.app.conf, "broker_url", url)


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    """Wake-ups go to kombu's in-memory transport; returns a reader of what was enqueued."""
    app = deliver_message.app
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
                found.append((item.headers["task"], args[0], item.headers.get("eta")))
                item.ack()
            queue.close()
        return found

    drain()
    return drain


@pytest.fixture
def woken(memory_broker):
    """The ids of the messages woken since the last call."""

    def read():
        return [
            message_id
            for task, message_id, _eta in memory_broker()
            if task.endswith("deliver_message")
        ]

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


def deliver(message, capture):
    """One try, with its after-commit work (signals, wake-ups) run."""
    with capture(execute=True):
        outcome = services.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    return outcome


# --- message_send ---------------------------------------------------------------------


def test_send_queues_the_message_updates_the_room_and_wakes_a_worker_on_commit(
    room, woken, django_capture_on_commit_callbacks
):
    author = UserFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = send(room, "  Hello, how can we help?  ", author=author)
        assert woken() == [], "nothing is enqueued before the commit"
    for callback in callbacks:
        callback()
    message.refresh_from_db()
    room.refresh_from_db()
    assert (message.direction, message.status, message.type) == ("out", "queued", "text")
    assert message.data == "Hello, how can we help?"
    assert message.text == "Hello, how can we help?"
    assert message.author == author
    assert room.last_message_preview == "Hello, how can we help?"
    assert room.last_message_at == message.next_attempt_at
    assert woken() == [message.pk]


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
    room, httpserver, monkeypatch, woken, django_capture_on_commit_callbacks
):
    """With no broker the sender gets no error; the message is delivered after the sweep."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    use_broker(monkeypatch, f"redis://127.0.0.1:{dead_port}/3")
    with django_capture_on_commit_callbacks(execute=True):
        message = send(room, "sent while the broker is down")
    message.refresh_from_db()
    assert message.status == "queued"
    assert message.next_attempt_at is None, "marked for the sweep"

    use_broker(monkeypatch, "memory://")
    assert services.message_requeue_stale() == 1
    assert woken() == [message.pk]
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"id": "r-1"})
    assert services.message_deliver(message_id=message.pk) == Delivery.SENT
    assert texts_sent(httpserver) == ["sent while the broker is down"]


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


def test_a_message_queued_without_a_key_gets_one_for_all_its_tries(
    room, httpserver, django_capture_on_commit_callbacks
):
    """Messages queued by rchat 0.1 had no key: the first claim gives one, kept after."""
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=503)
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    message = send(room, "from before the upgrade")
    Message.objects.filter(pk=message.pk).update(dedup_key="")

    outcomes = [deliver(message, django_capture_on_commit_callbacks) for _ in range(2)]

    assert outcomes == ["retry", "sent"]
    keys = {request.headers["Idempotency-Key"] for request, _ in httpserver.log}
    assert keys == {message.dedup_key} and message.dedup_key.startswith("rchat-")


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

    outcomes = [deliver(message, django_capture_on_commit_callbacks) for _ in range(3)]

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
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.SKIPPED
    assert len(httpserver.log) == 3


def test_a_retry_waits_for_its_back_off_and_an_early_wake_up_sends_nothing(
    room, httpserver, rchat_settings, memory_broker, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "RETRY_BASE_DELAY": 30.0}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data("down", status=502)
    message = send(room, "hello")
    before = timezone.now()

    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.RETRY
    after = timezone.now()
    # The first back-off step is RETRY_BASE_DELAY: half of it sure, half at random.
    assert before + timedelta(seconds=15) <= message.next_attempt_at
    assert message.next_attempt_at <= after + timedelta(seconds=30)
    enqueued = memory_broker()
    assert [(task, message_id) for task, message_id, _eta in enqueued] == [
        ("rchat.tasks.deliver_message", message.pk)
    ]
    assert enqueued[0][2] is not None, "the retry wake-up carries an ETA"
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.NOT_DUE
    assert len(httpserver.log) == 1


def test_back_off_doubles_each_try_and_never_falls_below_half_its_step(settings):
    """Equal jitter: try n waits between step/2 and step, step = base * 2^(n-1), capped."""
    from rchat.services.outbound import _retry_delay

    settings.RCHAT = {**settings.RCHAT, "RETRY_BASE_DELAY": 2.0, "RETRY_MAX_DELAY": 40.0}
    for attempts, step in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 40), (9, 40)]:
        delays = [_retry_delay(attempts, None) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step, attempts


def test_a_message_fails_after_the_last_attempt_with_the_reason(
    room, httpserver, rchat_settings, received, django_capture_on_commit_callbacks
):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "DELIVERY_MAX_ATTEMPTS": 2}
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data("maintenance", status=503)
    message = send(room, "hello")
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.RETRY
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.FAILED
    assert (message.status, message.attempts) == ("failed", 2)
    assert "503" in message.last_error and "maintenance" in message.last_error
    assert received == [("failed", message.pk, message.last_error)]


def test_429_waits_for_retry_after(room, httpserver, django_capture_on_commit_callbacks):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "45"}
    )
    message = send(room, "hello")
    before = timezone.now()
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.RETRY
    wait = (message.next_attempt_at - before).total_seconds()
    assert 44 <= wait <= 46
    assert message.attempt_log.get().http_status == 429


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
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.FAILED
    assert (message.status, message.attempts) == ("failed", 1)
    assert "chat_id not found" in message.last_error
    assert message.attempt_log.get().outcome == "failed"
    assert received == [("failed", message.pk, message.last_error)]
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.SKIPPED
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
    room, httpserver, woken, received, django_capture_on_commit_callbacks
):
    credential = room.credential
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data(
        "token revoked", status=401
    )
    first = send(room, "first")
    second = send(room, "second")

    assert deliver(first, django_capture_on_commit_callbacks) == Delivery.HELD
    credential.refresh_from_db()
    assert credential.status == Credential.Status.INVALID
    assert (first.status, first.attempt_log.get().outcome) == ("queued", "held")

    # While the token is refused nothing more reaches R-Chat: not on a wake-up, not
    # from the sweep, however long the messages wait.
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.HELD
    Message.objects.update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert services.message_requeue_stale() == 0
    assert len(httpserver.log) == 1
    second.refresh_from_db()
    assert credential.name in second.last_error
    woken()

    httpserver.expect_ordered_request(REGISTER_PATH, method="POST").respond_with_json(
        {"signature_token": "sig_new_signature_token_value"}
    )
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    with django_capture_on_commit_callbacks(execute=True):
        services.credential_register(credential=credential)
    assert woken() == [first.pk], "the oldest held message of the room goes first"

    assert deliver(first, django_capture_on_commit_callbacks) == Delivery.SENT
    assert woken() == [second.pk], "and wakes the next one"
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.SENT
    assert texts_sent(httpserver) == ["first", "first", "second"]
    assert [kind for kind, _id, _error in received] == ["sent", "sent"]


# --- Order ----------------------------------------------------------------------------


def test_order_is_kept_while_the_first_message_is_retried(
    room, httpserver, woken, django_capture_on_commit_callbacks
):
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=503)
    for _ in range(3):
        httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    first, second = send(room, "first"), send(room, "second")
    other_room = ChatRoomFactory(credential=room.credential, chat_id="chat-other")
    elsewhere = send(other_room, "elsewhere")

    assert deliver(first, django_capture_on_commit_callbacks) == Delivery.RETRY
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.DEFERRED
    assert second.status == "queued" and second.attempts == 0
    # Another room does not wait for this one.
    assert deliver(elsewhere, django_capture_on_commit_callbacks) == Delivery.SENT
    woken()

    assert deliver(first, django_capture_on_commit_callbacks) == Delivery.SENT
    assert woken() == [second.pk]
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.SENT
    assert texts_sent(httpserver) == ["first", "elsewhere", "first", "second"]


def test_a_message_that_failed_for_good_no_longer_blocks_its_room(
    room, httpserver, woken, django_capture_on_commit_callbacks
):
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_data("", status=400)
    httpserver.expect_ordered_request(SEND_PATH, method="POST").respond_with_json({})
    first, second = send(room, "first"), send(room, "second")
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.DEFERRED
    assert deliver(first, django_capture_on_commit_callbacks) == Delivery.FAILED
    assert woken() == [second.pk]
    assert deliver(second, django_capture_on_commit_callbacks) == Delivery.SENT


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
    assert woken() == [message.pk]
    assert deliver(message, django_capture_on_commit_callbacks) == Delivery.SENT
    assert message.attempt_log.count() == 2, "the failed try stays in the log"


def test_retry_refuses_a_message_that_has_not_failed(room):
    message = send(room, "hello")
    with pytest.raises(InvalidMessage):
        services.message_retry(message=message)


def test_sweep_wakes_lost_and_abandoned_messages_only(room, woken, rchat_settings):
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "STALE_AFTER_SECONDS": 60}
    long_ago = timezone.now() - timedelta(minutes=10)
    never_woken = send(room, "never woken")
    Message.objects.filter(pk=never_woken.pk).update(next_attempt_at=None)
    behind = send(room, "waits behind the first")
    Message.objects.filter(pk=behind.pk).update(next_attempt_at=long_ago)

    other = ChatRoomFactory(credential=room.credential)
    fresh = send(other, "just queued")
    third = ChatRoomFactory(credential=room.credential)
    lost = send(third, "wake-up lost")
    Message.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago)
    fourth = ChatRoomFactory(credential=room.credential)
    abandoned = send(fourth, "worker died")
    Message.objects.filter(pk=abandoned.pk).update(
        status="sending", attempts=1, updated_at=long_ago
    )

    assert services.message_requeue_stale() == 3
    assert sorted(woken()) == sorted([never_woken.pk, lost.pk, abandoned.pk])
    abandoned.refresh_from_db()
    assert abandoned.status == "queued"
    assert abandoned.attempt_log.get().error_type == "WorkerLost"
    fresh.refresh_from_db()
    assert fresh.status == "queued"
    # Woken once per STALE_AFTER_SECONDS, not on every run.
    assert services.message_requeue_stale() == 0
    assert DeliveryAttempt.objects.count() == 1
