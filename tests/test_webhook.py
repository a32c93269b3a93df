"""The webhook R-Chat calls: verification, storage, dedup, limits and the after-commit work.

Each test posts to /rchat/webhook/… through Django's test client, as R-Chat would,
and checks what an operator would see: the answer, the rows, the event log.
"""

import hashlib
import io
import json
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from project.celery import app as celery_app
from rchat import crypto, selectors, services, signals, webhooks
from rchat.models import ChatRoom, Credential, Message, WebhookEvent
from tests.factories import ChatRoomFactory, CredentialFactory

URL = "/rchat/webhook/"
THAI = "สวัสดีค่ะ ขอสอบถามราคาหน่อย 🙏😀"

pytestmark = pytest.mark.django_db

hook_calls = []


def record_hook(message_id):
    """A bot hook for the tests: remembers the ids it is called with."""
    hook_calls.append(message_id)


@pytest.fixture(autouse=True)
def _fresh_process_state():
    selectors.webhook_credentials_clear()
    services.inbound._last_webhook_written.clear()
    hook_calls.clear()
    yield
    selectors.webhook_credentials_clear()


def body_of(chat_id="chat-1", type="text", data="hello", **extra):
    return json.dumps({"message": {"type": type, "data": data}, "chat_id": chat_id, **extra})


def post(body, token, *, url=URL, client=None, **kwargs):
    if isinstance(body, str):
        body = body.encode()
    headers = {"X-Chatday-Signature-Token": token} if token is not None else {}
    return (client or Client()).post(
        url, data=body, content_type="application/json", headers=headers, **kwargs
    )


# --- Verification ---------------------------------------------------------------------


def test_a_verified_text_message_is_answered_success_and_stored_in_its_room(credential):
    response = post(body_of("chat-9", data="hello"), credential.signature_token)

    assert response.status_code == 200
    assert response.json() == {"status": "SUCCESS"}
    message = Message.objects.get()
    assert (message.room.credential, message.room.chat_id) == (credential, "chat-9")
    assert (message.direction, message.type, message.data, message.text) == (
        "in",
        "text",
        "hello",
        "hello",
    )
    assert message.status == Message.Status.RECEIVED
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.message, event.credential) == ("processed", message, credential)


def test_the_webhook_needs_no_login_and_no_csrf_token(credential):
    """The host site requires a login everywhere; R-Chat has none and no CSRF cookie."""
    response = post(body_of(), credential.signature_token, client=Client(enforce_csrf_checks=True))
    assert response.status_code == 200
    assert Message.objects.count() == 1


def test_a_call_without_the_token_header_gets_401_and_writes_nothing(credential, caplog):
    webhooks.refusal_log._last = None  # whatever an earlier test refused, this one is logged
    with caplog.at_level(logging.WARNING, logger="rchat"):
        response = post(body_of(), None, REMOTE_ADDR="203.0.113.7")

    assert response.status_code == 401
    assert "X-Chatday-Signature-Token" in response.json()["detail"]
    assert not WebhookEvent.objects.exists() and not Message.objects.exists()
    assert "203.0.113.7" in caplog.text


def test_a_wrong_token_gets_403_and_writes_nothing(credential):
    response = post(body_of(), "sig_not-the-right-one-at-all")

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_token"
    assert not WebhookEvent.objects.exists() and not Message.objects.exists()


def test_refusals_are_logged_at_most_once_per_interval(credential, caplog):
    """A stranger hammering the URL fills neither the database nor the log."""
    webhooks.refusal_log._last = None
    with caplog.at_level(logging.WARNING, logger="rchat.webhooks"):
        for _ in range(20):
            assert post(body_of(), "sig_wrong-token-guess-0000").status_code == 403
    refusals = [r for r in caplog.records if "Refused" in r.getMessage()]
    assert len(refusals) == 1
    assert not WebhookEvent.objects.exists()


def test_a_credential_that_was_never_registered_is_refused():
    credential = CredentialFactory(status=Credential.Status.NEW)
    assert post(body_of(), credential.signature_token).status_code == 403
    assert not Message.objects.exists()


def test_an_invalid_credential_still_receives_messages():
    """ "Invalid" means R-Chat refused our outbound token; inbound must not be lost."""
    credential = CredentialFactory(status=Credential.Status.INVALID)
    assert post(body_of(), credential.signature_token).status_code == 200
    assert Message.objects.filter(room__credential=credential).count() == 1


def test_a_credentials_own_url_accepts_its_token_and_refuses_anothers(credential):
    other = CredentialFactory()
    own_url = credential.webhook_path()

    assert own_url == f"/rchat/webhook/{credential.webhook_key}/"
    assert post(body_of(), credential.signature_token, url=own_url).status_code == 200
    assert post(body_of(), other.signature_token, url=own_url).status_code == 403
    assert post(body_of(), credential.signature_token, url=URL + "no-such-key/").status_code == 403
    assert Message.objects.count() == 1


def test_the_previous_signature_token_is_accepted_until_its_grace_ends(credential):
    old = "sig_old-token-before-rotation-1234"
    credential.previous_signature_token = old
    credential.previous_signature_digest = crypto.digest(old)
    credential.previous_valid_until = timezone.now() + timedelta(hours=1)
    credential.save()
    assert post(body_of(data="during grace"), old).status_code == 200

    Credential.objects.filter(pk=credential.pk).update(
        previous_valid_until=timezone.now() - timedelta(seconds=1)
    )
    selectors.webhook_credentials_clear()  # another process, or the cache's age limit
    assert post(body_of(data="after grace"), old).status_code == 403
    assert list(Message.objects.values_list("text", flat=True)) == ["during grace"]


def test_a_credential_registered_in_another_process_is_accepted_at_once(credential):
    """A cached copy that does not know a token reloads before refusing it."""
    assert post(body_of(), credential.signature_token).status_code == 200
    newcomer = CredentialFactory.build(name="newcomer")
    # Written the way another process would, without this process's signals.
    Credential.objects.bulk_create([newcomer])
    selectors._webhook_credentials._snapshot = (
        selectors._webhook_credentials._snapshot[0] - 60,
        *selectors._webhook_credentials._snapshot[1:],
    )
    assert post(body_of("chat-2"), newcomer.signature_token).status_code == 200


def test_a_changed_credential_is_seen_by_the_webhook_at_once(credential):
    assert post(body_of(), credential.signature_token).status_code == 200
    services.credential_save(name=credential.name, token="cdt_a-brand-new-token-xyz")
    # A new Chatday-Token voids the signature token it was registered with.
    assert post(body_of(data="later"), credential.signature_token).status_code == 403


# --- Verify ping ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"{}", b'{"event": "verify"}'])
def test_a_verify_ping_is_answered_success_recorded_and_marks_the_credential(credential, body):
    response = post(body, credential.signature_token)

    assert response.status_code == 200
    assert response.json() == {"status": "SUCCESS"}
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.PING
    assert not Message.objects.exists()
    credential.refresh_from_db()
    assert credential.last_webhook_at is not None


# --- What is kept ---------------------------------------------------------------------


def test_thai_text_and_emoji_round_trip_byte_for_byte(credential):
    raw = json.dumps(
        {"message": {"type": "text", "data": THAI}, "chat_id": "ห้อง-1"}, ensure_ascii=False
    ).encode("utf-8")

    assert post(raw, credential.signature_token).status_code == 200

    event = WebhookEvent.objects.get()
    assert bytes(event.body) == raw
    message = Message.objects.get()
    assert message.data == THAI and message.text == THAI
    assert message.room.chat_id == "ห้อง-1"
    assert message.room.last_message_preview == THAI


def test_headers_are_kept_with_every_secret_masked(credential):
    token = credential.signature_token
    post(body_of(), token, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_TRACE="trace-42")

    event = WebhookEvent.objects.get()
    assert token not in json.dumps(event.headers)
    assert event.headers["X-Chatday-Signature-Token"].endswith(token[-4:])
    assert event.headers["X-Trace"] == "trace-42"
    assert event.remote_addr == "127.0.0.1"


def test_extra_fields_fill_the_room_and_message_and_are_kept(credential):
    body = {
        "chat_id": "U123",
        "message": {"id": "m-77", "type": "text", "data": "hi", "channel": "LINE"},
        "user": {"name": "คุณนก", "picture_url": "https://cdn.example/nok.png"},
        "timestamp": 1700000000,
        "shop": {"branch": 3},
    }
    assert post(json.dumps(body), credential.signature_token).status_code == 200

    message = Message.objects.get()
    assert message.external_id == "m-77"
    assert message.sent_by_user_at.timestamp() == 1700000000
    assert message.extra["shop"] == {"branch": 3}
    assert message.extra["message"]["channel"] == "LINE"
    room = message.room
    assert (room.channel, room.display_name, room.avatar_url) == (
        ChatRoom.Channel.LINE,
        "คุณนก",
        "https://cdn.example/nok.png",
    )


def test_an_unknown_message_type_is_kept_as_it_came(credential):
    data = {"question": "Size?", "choices": ["S", "M"]}
    assert (
        post(body_of(type="quick_reply", data=data), credential.signature_token).status_code == 200
    )

    message = Message.objects.get()
    assert (message.type, message.data) == ("quick_reply", data)
    assert message.text.startswith("[quick_reply]")


def test_the_room_shows_the_last_message_counts_unread_and_reopens(credential):
    room = ChatRoomFactory(
        credential=credential, chat_id="chat-1", status=ChatRoom.Status.CLOSED, unread_count=2
    )
    post(body_of(type="image", data={"url": "https://cdn.example/a/photo.jpg"}), room_token(room))

    room.refresh_from_db()
    assert room.last_message_preview == "[Image] photo.jpg"
    assert room.unread_count == 3
    assert room.status == ChatRoom.Status.OPEN
    assert room.messages.count() == 1


def room_token(room):
    return room.credential.signature_token


# --- Bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"message": {"type": "text", "data": "hi"}}', "no chat_id"),
        (b'{"message": {"type": "text", "data": NaN}, "chat_id": "c"}', "not valid JSON"),
        (b'{"chat_id": "c", "message": 5}', "must be a JSON object"),
        # Numbers too large for a float read as infinity, which jsonb refuses: before,
        # a 503 on every try, so R-Chat would send it for ever.
        (b'{"chat_id": "c", "message": {"type": "text", "data": "hi", "n": 1e400}}', "1e400"),
        (b'{"chat_id": "c", "message": {"type": "text", "data": -2E+999}}', "out of range"),
        (
            b'{"chat_id": "c", "message": {"type": "text", "data": "a"}, "at": 1'
            + b"0" * 5000
            + b"}",
            "digits",
        ),
        (
            # Deeper than INBOUND_DEPTH_MAX (200), well short of json's own recursion
            # limit (~1,000 levels less the stack below the view): 900 failed there
            # under pytest-xdist, whose worker adds a few frames.
            b'{"chat_id": "c", "message": {"type": "text", "data": '
            + b"[" * 500
            + b"]" * 500
            + b"}}",
            "levels deep",
        ),
    ],
)
def test_a_body_that_is_not_a_message_gets_400_and_is_kept_as_failed(credential, body, reason):
    response = post(body, credential.signature_token)

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookEvent.Outcome.FAILED
    assert reason in event.error
    assert bytes(event.body) == body
    assert not Message.objects.exists()


def test_a_value_the_database_refuses_is_the_bodys_fault_400_and_kept(credential, monkeypatch):
    """Whatever parsing lets through that the database refuses is not retried for ever."""
    from django.db import DataError

    from rchat.services import inbound

    def refuse(*args, **kwargs):
        raise DataError("value out of range for type numeric")

    monkeypatch.setattr(inbound, "_inbound_store", refuse)

    response = post(body_of(), credential.signature_token)

    assert response.status_code == 400 and response.json()["code"] == "invalid_body"
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookEvent.Outcome.FAILED
    assert "cannot store this message" in event.error and "numeric" in event.error


def test_another_method_gets_405_with_a_json_reason(credential):
    response = Client().get(URL, headers={"X-Chatday-Signature-Token": credential.signature_token})
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "GET" in response.json()["detail"]


def test_a_body_declared_over_the_limit_gets_413_before_it_is_read(credential, settings):
    settings.RCHAT = {**settings.RCHAT, "WEBHOOK_MAX_BYTES": 100}
    response = post(body_of(data="x" * 200), credential.signature_token)

    assert response.status_code == 413
    assert "at most 100" in response.json()["detail"]
    event = WebhookEvent.objects.get()
    assert (event.outcome, bytes(event.body)) == ("failed", b"")
    assert not Message.objects.exists()


def test_a_body_longer_than_its_content_length_claims_gets_413(credential, settings):
    """The limit holds for what is read, too (a server that passes a longer stream)."""
    settings.RCHAT = {**settings.RCHAT, "WEBHOOK_MAX_BYTES": 100}
    request = RequestFactory().post(
        URL,
        data=b"{}",
        content_type="application/json",
        headers={"X-Chatday-Signature-Token": credential.signature_token},
    )
    request._stream = io.BytesIO(body_of(data="x" * 200).encode())

    response = webhooks.WebhookView.as_view()(request)

    assert response.status_code == 413
    assert not Message.objects.exists()


def test_a_failure_of_ours_keeps_the_body_and_asks_r_chat_to_retry(credential, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(services.inbound, "_inbound_store", broken)
    body = body_of(data="keep me").encode()
    response = post(body, credential.signature_token)

    assert response.status_code == 503
    assert response.json()["code"] == "temporarily_unavailable"
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookEvent.Outcome.FAILED
    assert "simulated bug" in event.error
    assert bytes(event.body) == body
    assert not Message.objects.exists() and not ChatRoom.objects.exists()


# --- Exactly once ---------------------------------------------------------------------


def test_a_redelivery_with_the_same_message_id_is_stored_once(credential):
    body = json.dumps({"message": {"id": "m-1", "type": "text", "data": "hi"}, "chat_id": "c"})
    first = post(body, credential.signature_token)
    again = post(body.replace('"hi"', '"hi" '), credential.signature_token)

    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "SUCCESS"}
    message = Message.objects.get()
    outcomes = dict(WebhookEvent.objects.values_list("outcome", "message"))
    assert outcomes == {"processed": message.pk, "duplicate": message.pk}
    assert message.room.unread_count == 1


def test_an_identical_body_without_id_within_the_window_is_a_redelivery(credential):
    body = body_of(data="hi")
    post(body, credential.signature_token)
    post(body, credential.signature_token)

    assert Message.objects.count() == 1
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 1


def test_hi_twice_is_two_messages_when_the_bodies_differ(credential):
    post(body_of(data="hi", timestamp=1700000000), credential.signature_token)
    post(body_of(data="hi", timestamp=1700000004), credential.signature_token)

    assert list(Message.objects.values_list("text", flat=True)) == ["hi", "hi"]


def _age_message(message, seconds):
    """Make ``message`` look received ``seconds`` ago (its time and its dedup period)."""
    then = timezone.now() - timedelta(seconds=seconds)
    digest, _ = message.dedup_key[len("body:") :].split(":")
    period = int(then.timestamp() // 300)
    Message.objects.filter(pk=message.pk).update(
        created_at=then, dedup_key=f"body:{digest}:{period}"
    )


def test_an_identical_body_after_the_window_is_a_new_message(credential):
    body = body_of(data="hi")
    post(body, credential.signature_token)
    _age_message(Message.objects.get(), 301)

    post(body, credential.signature_token)
    assert Message.objects.count() == 2


def test_an_identical_body_across_a_period_boundary_is_still_a_redelivery(credential):
    """Ten seconds apart, but the first came at the end of the previous period."""
    body = body_of(data="hi")
    post(body, credential.signature_token)
    message = Message.objects.get()
    then = timezone.now() - timedelta(seconds=10)
    digest = hashlib.sha256(body.encode()).hexdigest()
    previous_period = int(timezone.now().timestamp() // 300) - 1
    Message.objects.filter(pk=message.pk).update(
        created_at=then, dedup_key=f"body:{digest}:{previous_period}"
    )

    post(body, credential.signature_token)
    assert Message.objects.count() == 1


def test_a_dedup_window_of_zero_keeps_every_body(credential, settings):
    settings.RCHAT = {**settings.RCHAT, "DEDUP_WINDOW_SECONDS": 0}
    post(body_of(data="hi"), credential.signature_token)
    post(body_of(data="hi"), credential.signature_token)
    assert Message.objects.count() == 2


# --- After the commit -----------------------------------------------------------------


def test_message_received_is_sent_after_commit_new_then_redelivered(
    credential, connect, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, message, room, created, **kwargs):
        received.append((message.text, room.chat_id, created))

    connect(signals.message_received, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        body = body_of("c-5", data="hello")
        post(body, credential.signature_token)
        post(body, credential.signature_token)

    assert received == [("hello", "c-5", True), ("hello", "c-5", False)]


def test_the_room_given_to_receivers_is_the_row_as_updated(
    credential, connect, django_capture_on_commit_callbacks
):
    """Receivers get a real ChatRoom: fresh counters, an aware datetime, the user's name."""
    ChatRoomFactory(credential=credential, chat_id="c-9", unread_count=4, display_name="Old")
    rooms = []

    def receiver(room, **kwargs):
        rooms.append(room)

    connect(signals.message_received, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        post(body_of("c-9", data="สวัสดี", user={"name": "Somchai"}), credential.signature_token)

    (room,) = rooms
    stored = ChatRoom.objects.get(pk=room.pk)
    assert (room.unread_count, room.display_name) == (5, "Somchai")
    assert room.last_message_at == stored.last_message_at
    assert room.last_message_at.tzinfo is not None
    assert room.last_message_preview == stored.last_message_preview == "สวัสดี"
    assert room.credential_id == credential.pk


def test_a_failing_receiver_does_not_change_the_answer(
    credential, connect, django_capture_on_commit_callbacks
):
    def receiver(**kwargs):
        raise ValueError("receiver bug")

    connect(signals.message_received, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(body_of(), credential.signature_token)
    assert response.status_code == 200
    assert Message.objects.count() == 1


def test_the_bot_hook_runs_once_per_new_message(
    credential, settings, celery_eager, django_capture_on_commit_callbacks
):
    settings.RCHAT = {**settings.RCHAT, "ON_MESSAGE": "tests.test_webhook.record_hook"}
    with django_capture_on_commit_callbacks(execute=True):
        body = body_of(data="hello")
        post(body, credential.signature_token)
        post(body, credential.signature_token)  # a redelivery: no second run

    assert hook_calls == [Message.objects.get().pk]


def test_a_broker_outage_does_not_break_the_answer(
    credential, settings, django_capture_on_commit_callbacks, caplog
):
    settings.RCHAT = {**settings.RCHAT, "ON_MESSAGE": "tests.test_webhook.record_hook"}
    with socket_closed_port() as port:
        celery_app.conf.broker_write_url = f"redis://127.0.0.1:{port}/2"
        try:
            with (
                caplog.at_level(logging.ERROR, logger="rchat"),
                django_capture_on_commit_callbacks(execute=True),
            ):
                response = post(body_of(), credential.signature_token)
        finally:
            celery_app.conf.broker_write_url = None  # back to broker_url

    assert response.status_code == 200
    assert Message.objects.count() == 1
    assert "Could not queue" in caplog.text


class socket_closed_port:
    """A TCP port on which nothing listens (bound, then closed)."""

    def __enter__(self):
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    def __exit__(self, *exc):
        return False


# --- Fast -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "most"),
    [
        # The room (updated and locked), the same-body check, the message, the event.
        (body_of("c-1", data="second"), 4),
        # An id needs no check: the unique (room, dedup_key) is the check.
        (json.dumps({"message": {"id": "m-2", "type": "text", "data": "x"}, "chat_id": "c-1"}), 3),
    ],
    ids=["without-id", "with-id"],
)
# Transactional, so that the webhook's transaction is a real one, as in production
# (inside a test transaction it would be a savepoint and cost two more statements).
@pytest.mark.django_db(transaction=True)
def test_a_message_to_an_existing_room_takes_at_most_four_queries(credential, second, most):
    """All writes in one transaction of at most four statements, the event row included."""
    assert post(body_of("c-1", data="first"), credential.signature_token).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = post(second, credential.signature_token)

    assert response.status_code == 200
    assert Message.objects.count() == 2
    # Transaction control (BEGIN, COMMIT, savepoints) is logged too; count the work.
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT"))
    ]
    assert len(statements) <= most, statements
