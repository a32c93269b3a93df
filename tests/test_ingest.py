"""Webhook ingest in one statement on PostgreSQL (services/inbound.py, ``_inbound_ingest``).

A new message, its room and its event are written by one statement in autocommit; every
other case goes to the general path. These tests check that the answer, the rows and
the after-commit work are the general path's, case by case and under concurrency.
"""

import hashlib
import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rchat import payloads, selectors, services, signals
from rchat.models import ChatRoom, Message, WebhookEvent
from rchat.services import inbound
from tests.factories import CredentialFactory

pytestmark = pytest.mark.postgres

URL = "/rchat/webhook/"
THAI = "สวัสดีค่ะ ขอสอบถามราคาหน่อย 🙏😀"

hook_calls = []


def record_hook(message_id):
    """A bot hook: remembers each id, and whether another connection sees that message."""
    seen = []

    def look():
        try:
            seen.append(Message.objects.filter(pk=message_id).exists())
        finally:
            connections.close_all()

    reader = threading.Thread(target=look)
    reader.start()
    reader.join()
    hook_calls.append((message_id, seen == [True]))


@pytest.fixture(autouse=True)
def _fresh_process_state():
    selectors.webhook_credentials_clear()
    inbound._last_webhook_written.clear()
    hook_calls.clear()
    yield
    selectors.webhook_credentials_clear()


def body_of(chat_id="chat-1", data="hello", *, id=None, type="text", **extra):
    message = {"type": type, "data": data}
    if id is not None:
        message["id"] = id
    return json.dumps({"message": message, "chat_id": chat_id, **extra}, ensure_ascii=False)


def post(body, credential):
    return Client().post(
        URL,
        data=body.encode() if isinstance(body, str) else body,
        content_type="application/json",
        headers={"X-Chatday-Signature-Token": credential.signature_token, "X-Trace": "t-1"},
    )


@pytest.fixture
def general_path(monkeypatch):
    """Make every webhook take the general path (as on SQLite), while in use."""

    class Switch:
        def __enter__(self):
            monkeypatch.setattr(inbound, "_inbound_ingest", lambda *args, **kwargs: None)

        def __exit__(self, *exc):
            monkeypatch.undo()

    return Switch()


# --- One round trip -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_id", [True, False], ids=["with-id", "without-id"])
@pytest.mark.parametrize("room", ["existing", "new"])
def test_a_new_message_is_stored_in_one_query(credential, room, with_id):
    """The room, the message and the event in one statement, with no BEGIN or COMMIT."""
    # Loads the credential cache and records last_webhook_at, which a later call skips.
    assert post(body_of("c-1", "first", id="m-1"), credential).status_code == 200
    chat_id = "c-1" if room == "existing" else "c-2"

    with CaptureQueriesContext(connection) as queries:
        response = post(body_of(chat_id, "second", id="m-2" if with_id else None), credential)

    assert response.status_code == 200
    # What the view's renderer (DRF's JSONRenderer) makes of {"status": "SUCCESS"}.
    assert (response.content, response["Content-Type"]) == (
        b'{"status":"SUCCESS"}',
        "application/json",
    )
    assert len(queries.captured_queries) == 1, [q["sql"][:80] for q in queries]
    message = Message.objects.get(text="second")
    assert message.room.chat_id == chat_id
    assert message.room.unread_count == (2 if room == "existing" else 1)
    assert message.room.last_message_preview == "second"
    event = WebhookEvent.objects.get(message=message)
    assert (event.outcome, event.error) == ("processed", "")
    assert event.processed_at is not None


# --- The same rows as the general path -----------------------------------------------------

EDGE = {
    "emoji and marks": "👩🏽‍💻 e\u0301 ﷽ ‮rtl‬ ",
    "quotes": 'it\'s "quoted" \\ back\\slash \\u0041',
    "placeholders": "%s %% %(name)s {0} $1 :name ? '); DROP TABLE x; --",
    "numbers": [0, -1, 1.5, 1e300, 12345678901234567890, -0.0],
    "literals": [True, False, None, "", [], {}],
    "keys": {"": 1, "a.b": 2, "ข้อ": 3, " ": 4, "%s": 5},
    "deep": [[[{"x": [[{"y": "z"}]]}]]],
}


def webhook_sequence():
    """Calls as R-Chat may send them: new rooms, Thai text, nested JSON, the end user's
    details changing, redeliveries by id and by body, a re-ordered older message."""
    at = 1700000000
    return [
        body_of("ห้อง-1", THAI, id="m-1", user={"name": "คุณนก"}, channel="line"),
        body_of("ห้อง-1", {"url": "https://cdn.example/a/photo.jpg"}, id="m-2", type="image"),
        body_of("ห้อง-1", THAI, id="m-1", user={"name": "คุณนก"}, channel="line"),  # again
        body_of("ห้อง-1", {"question": "Size?", "choices": ["S", "M", {"L": [1, 2]}]}, type="quick"),
        body_of("ห้อง-1", {"question": "Size?", "choices": ["S", "M", {"L": [1, 2]}]}, type="quick"),
        body_of("room-2", "hi", timestamp=at, avatar="https://cdn.example/u.png"),
        body_of("room-2", "hi", timestamp=at + 4, user={"name": "Somchai"}),
        body_of("room-2", EDGE, id="edge", type="edge", shop={"branch": 3, "tags": EDGE}),
        # Escaped in the JSON, as a NUL and a lone surrogate can only come.
        json.dumps(
            {
                "message": {"type": "text", "data": "with NUL \u0000 and lone \ud800", "id": "nul"},
                "chat_id": "room-2",
                "meta": {"k\u0000": "v"},
            }
        ),
        body_of("ห้อง-1", "older", id="m-0", timestamp=at - 60),
        body_of("room-3", "x" * 5000, id="long", user={"name": "n" * 400}),
    ]


def stored_rows(credential):
    """What the webhooks left for ``credential``, without ids and times: rooms, messages
    (JSON as PostgreSQL keeps it, text of the jsonb), events (body, headers, outcome,
    which message)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT m.id, m.data::text, m.extra::text FROM rchat_message m "
            "JOIN rchat_chatroom r ON r.id = m.room_id WHERE r.credential_id = %s",
            [credential.pk],
        )
        jsonb_text = {pk: (data, extra) for pk, data, extra in cursor.fetchall()}
        # The masked token differs between credentials by its last four characters.
        cursor.execute(
            "SELECT id, (headers - 'X-Chatday-Signature-Token')::text "
            "FROM rchat_webhookevent WHERE credential_id = %s",
            [credential.pk],
        )
        headers_text = dict(cursor.fetchall())
    messages = list(Message.objects.filter(room__credential=credential).order_by("id"))
    order = {message.pk: n for n, message in enumerate(messages)}
    rooms = [
        {
            field: getattr(room, field)
            for field in (
                "chat_id",
                "channel",
                "display_name",
                "avatar_url",
                "status",
                "assignee_id",
                "last_message_preview",
                "unread_count",
                "send_after",
            )
        }
        for room in ChatRoom.objects.filter(credential=credential).order_by("chat_id")
    ]
    message_rows = [
        {
            **{
                field.attname: getattr(message, field.attname)
                for field in Message._meta.concrete_fields
                if field.attname not in ("id", "room_id", "created_at", "updated_at")
            },
            # A body's key ends with the number of the window-long period it came in.
            "dedup_key": message.dedup_key.rsplit(":", 1)[0],
            "room": message.room.chat_id,
            "jsonb": jsonb_text[message.pk],
        }
        for message in messages
    ]
    events = [
        (
            bytes(event.body),
            {k: v for k, v in event.headers.items() if k != "X-Chatday-Signature-Token"},
            headers_text[event.pk],
            event.remote_addr,
            event.outcome,
            event.error,
            order.get(event.message_id),
            event.processed_at is not None,
        )
        for event in WebhookEvent.objects.filter(credential=credential).order_by("id")
    ]
    return rooms, message_rows, events


@pytest.mark.django_db(transaction=True)
def test_the_rows_are_the_general_paths_for_the_same_webhooks(general_path):
    fast, general = CredentialFactory(), CredentialFactory()
    for body in webhook_sequence():
        assert post(body, fast).status_code == 200
    with general_path:
        for body in webhook_sequence():
            assert post(body, general).status_code == 200

    rooms, messages, events = stored_rows(fast)
    assert (rooms, messages, events) == stored_rows(general)
    # What was found equal is also what came in.
    assert [event[4] for event in events].count("duplicate") == 2
    assert len(messages) == 9 and len(rooms) == 3
    edge = Message.objects.get(room__credential=fast, external_id="edge")
    # jsonb keeps numbers as numeric: 1e300 reads back as the integer it is.
    numbers = [0, -1, 1.5, 10**300, 12345678901234567890, 0.0]
    assert edge.data == edge.extra["shop"]["tags"] == {**EDGE, "numbers": numbers}
    nul = Message.objects.get(room__credential=fast, external_id="nul")
    assert nul.text == payloads.inbound_clean("with NUL \x00 and lone \ud800")
    assert nul.text.startswith("with NUL \ufffd and lone \ufffd")
    assert nul.extra["meta"] == {"k\ufffd": "v"}
    room = ChatRoom.objects.get(credential=fast, chat_id="room-2")
    assert (room.display_name, room.avatar_url, room.unread_count) == (
        "Somchai",
        "https://cdn.example/u.png",
        4,
    )


@pytest.mark.django_db(transaction=True)
def test_receivers_get_the_same_room_and_message_as_from_the_general_path(connect, general_path):
    fast, general = CredentialFactory(), CredentialFactory()
    received = []

    def receiver(sender, message, room, created, **kwargs):
        received.append((message, room, created))

    connect(signals.message_received, receiver)
    body = body_of("c-1", {"n": [1, {"ข": "ค"}]}, id="m-1", user={"name": "Nok"}, type="card")
    post(body, fast)
    with general_path:
        post(body, general)

    (fast_message, fast_room, fast_created), (general_message, general_room, created) = received
    assert fast_created is created is True
    for field in Message._meta.concrete_fields:
        if field.attname not in ("id", "room_id", "created_at", "updated_at"):
            assert getattr(fast_message, field.attname) == getattr(general_message, field.attname)
    for field in ChatRoom._meta.concrete_fields:
        if field.attname not in (
            "id",
            "credential_id",
            "created_at",
            "last_message_at",
            "handler_since",
        ):
            assert getattr(fast_room, field.attname) == getattr(general_room, field.attname)
    assert fast_message.room is fast_room
    assert fast_message.pk == Message.objects.get(room__credential=fast).pk
    assert fast_room == ChatRoom.objects.get(credential=fast)
    assert not fast_message._state.adding and fast_message._state.db == "default"
    assert fast_room.last_message_at.tzinfo is not None


# --- Duplicates ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_redelivery_by_id_counts_nothing_twice_and_points_at_the_first(credential):
    first = body_of("c-1", "one", id="m-1")
    assert post(first, credential).status_code == 200
    assert post(body_of("c-1", "two", id="m-2"), credential).status_code == 200

    assert post(first, credential).status_code == 200

    room = ChatRoom.objects.get()
    assert (room.unread_count, room.last_message_preview) == (2, "two")
    one = Message.objects.get(text="one")
    assert Message.objects.count() == 2
    events = list(WebhookEvent.objects.order_by("id").values_list("outcome", "message"))
    assert events[-1] == ("duplicate", one.pk)
    assert [outcome for outcome, _ in events] == ["processed", "processed", "duplicate"]


@pytest.mark.django_db(transaction=True)
def test_a_same_body_redelivery_is_a_duplicate(credential):
    body = body_of("c-1", "hi")
    post(body, credential)
    post(body_of("c-1", "later"), credential)

    post(body, credential)

    room = ChatRoom.objects.get()
    assert (room.unread_count, room.last_message_preview) == (2, "later")
    hi = Message.objects.get(text="hi")
    assert WebhookEvent.objects.order_by("-id").values_list("outcome", "message")[0] == (
        "duplicate",
        hi.pk,
    )


@pytest.mark.django_db(transaction=True)
def test_a_same_body_message_stored_while_the_statement_waited_is_a_duplicate(credential):
    """The snapshot cannot show a message committed while the statement waited for the
    room's lock; the room's row changed meanwhile, so the general path decides."""
    body = body_of("c-1", "hi")
    post(body_of("c-1", "first"), credential)
    room = ChatRoom.objects.get()
    digest = hashlib.sha256(body.encode()).hexdigest()
    # The earlier call's key is of the period before (the two straddle a boundary), so
    # the unique (room, dedup_key) cannot catch this one; only the window can.
    period = int(timezone.now().timestamp() // 300) - 1
    locked, go = threading.Event(), threading.Event()
    errors = []

    def earlier_call():
        try:
            with transaction.atomic():
                ChatRoom.objects.filter(pk=room.pk).update(unread_count=F("unread_count") + 1)
                earlier = Message.objects.create(
                    room=room,
                    direction="in",
                    type="text",
                    data="hi",
                    text="hi",
                    status="received",
                    dedup_key=f"body:{digest}:{period}",
                )
                Message.objects.filter(pk=earlier.pk).update(
                    created_at=timezone.now() - timedelta(seconds=1)
                )
                locked.set()
                go.wait(30)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    statuses = []

    def this_call():
        try:
            statuses.append(post(body, credential).status_code)
        finally:
            connections.close_all()

    first, second = threading.Thread(target=earlier_call), threading.Thread(target=this_call)
    first.start()
    assert locked.wait(30)
    second.start()
    _wait_for_a_lock_wait("WITH updated AS")
    go.set()
    first.join()
    second.join()

    assert not errors and statuses == [200]
    assert Message.objects.filter(text="hi").count() == 1
    assert WebhookEvent.objects.order_by("-id").values_list("outcome", flat=True)[0] == (
        "duplicate"
    )
    assert ChatRoom.objects.get().unread_count == 2


def _wait_for_a_lock_wait(query_start, timeout=30):
    """Until a backend runs a query starting with ``query_start`` and waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s",
                [query_start + "%"],
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    pytest.fail(f"no query {query_start!r} waited for a lock")


# --- Concurrency ----------------------------------------------------------------------------


def post_all(bodies, credential):
    """POST every body at once, each from its own thread; the answers' status codes."""
    start = threading.Barrier(len(bodies))
    statuses = [None] * len(bodies)
    errors = []

    def call(index, body):
        try:
            start.wait()
            statuses[index] = post(body, credential).status_code
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call, args=(i, b)) for i, b in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return statuses


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_id", [True, False], ids=["with-ids", "without-ids"])
def test_concurrent_first_messages_of_a_room_give_one_room_and_every_message(credential, with_id):
    bodies = [body_of("new", f"m{n}", id=f"m-{n}" if with_id else None) for n in range(40)]

    statuses = post_all(bodies, credential)

    assert statuses == [200] * 40
    room = ChatRoom.objects.get()
    assert sorted(room.messages.values_list("text", flat=True)) == sorted(
        f"m{n}" for n in range(40)
    )
    assert room.unread_count == 40
    assert WebhookEvent.objects.filter(outcome="processed").count() == 40
    assert WebhookEvent.objects.count() == 40


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_of_one_message_id_store_it_once(credential):
    """Redeliveries of a first message, and of one to an existing room, all at once."""
    post(body_of("old", "before"), credential)
    bodies = [body_of("new", "hi", id="m-1")] * 15 + [body_of("old", "again", id="m-2")] * 15

    statuses = post_all(bodies, credential)

    assert statuses == [200] * 30
    assert ChatRoom.objects.count() == 2
    for chat_id, text, unread in (("new", "hi", 1), ("old", "again", 2)):
        room = ChatRoom.objects.get(chat_id=chat_id)
        (message,) = Message.objects.filter(room=room, text=text)
        assert room.unread_count == unread
        outcomes = sorted(
            WebhookEvent.objects.filter(message=message).values_list("outcome", flat=True)
        )
        assert outcomes == ["duplicate"] * 14 + ["processed"]
    assert WebhookEvent.objects.count() == 31


@pytest.mark.django_db(transaction=True)
def test_many_rooms_and_redeliveries_at_once_are_counted_exactly(credential):
    bodies = []
    for n in range(36):
        bodies.append(body_of(f"room-{n % 3}", f"text {n}", id=f"id-{n % 12}"))

    statuses = post_all(bodies, credential)

    assert statuses == [200] * 36
    assert Message.objects.count() == 12
    for room in ChatRoom.objects.all():
        assert room.unread_count == room.messages.count()
    assert sum(room.unread_count for room in ChatRoom.objects.all()) == 12
    assert WebhookEvent.objects.filter(outcome="processed").count() == 12
    assert WebhookEvent.objects.filter(outcome="duplicate").count() == 24


# --- After the commit ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_hook_runs_once_per_new_message_once_it_is_durable(
    credential, settings, celery_eager, connect
):
    settings.RCHAT = {**settings.RCHAT, "ON_MESSAGE": "tests.test_ingest.record_hook"}
    received = []
    connect(signals.message_received, lambda created, **kwargs: received.append(created))

    post(body_of("c-1", "one", id="m-1"), credential)
    post(body_of("c-2", "two"), credential)
    post(body_of("c-1", "one", id="m-1"), credential)

    ids = list(Message.objects.order_by("id").values_list("id", flat=True))
    assert hook_calls == [(ids[0], True), (ids[1], True)]
    assert received == [True, True, False]


@pytest.mark.django_db
def test_inside_a_transaction_the_work_waits_for_its_commit(
    credential, connect, django_capture_on_commit_callbacks
):
    """As with ATOMIC_REQUESTS: the statement runs in a savepoint, the signal on commit,
    and a duplicate found by the statement leaves the transaction usable."""
    received = []
    connect(signals.message_received, lambda created, **kwargs: received.append(created))

    with django_capture_on_commit_callbacks() as callbacks:
        post(body_of("c-1", "one", id="m-1"), credential)
        post(body_of("c-1", "one", id="m-1"), credential)
        assert received == []
    for callback in callbacks:
        callback()

    assert received == [True, False]
    assert Message.objects.count() == 1
    assert ChatRoom.objects.get().unread_count == 1


# --- Failures -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_value_the_database_refuses_is_a_failed_event_and_nothing_else(credential, monkeypatch):
    """A chat id longer than its column, let through by parsing: the statement fails
    whole, and the call is kept as failed (and re-processable) with the reason."""
    monkeypatch.setattr(payloads, "CHAT_ID_MAX", 1000)
    post(body_of("c-1", "before"), credential)

    response = post(body_of("c" * 300, "too long a chat id", id="m-1"), credential)

    assert response.status_code == 400 and response.json()["code"] == "invalid_body"
    event = WebhookEvent.objects.order_by("-id").first()
    assert event.outcome == WebhookEvent.Outcome.FAILED
    assert "cannot store this message" in event.error and "too long" in event.error
    assert bytes(event.body).startswith(b'{"message"')
    assert Message.objects.count() == ChatRoom.objects.count() == 1
    assert ChatRoom.objects.get().unread_count == 1
    result = services.webhook_event_reprocess(event=event)  # re-processable, still too long
    assert result.outcome == WebhookEvent.Outcome.FAILED


@pytest.mark.django_db(transaction=True)
def test_a_re_processed_event_keeps_the_time_it_was_received(credential, monkeypatch):
    """Re-processing takes the general path, which dates the message at its call."""

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    with monkeypatch.context() as patch:
        patch.setattr(inbound, "_inbound_store", broken)
        assert post(body_of("c-1", "kept", id="m-1"), credential).status_code == 503
    event = WebhookEvent.objects.get()
    then = timezone.now() - timedelta(hours=3)
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=then)
    event.refresh_from_db()

    result = services.webhook_event_reprocess(event=event)

    assert result.outcome == WebhookEvent.Outcome.PROCESSED
    assert result.message.created_at == then
    assert ChatRoom.objects.get().last_message_at == then
