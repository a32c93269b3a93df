"""Delivery through a real Celery worker on Redis, with PostgreSQL shared with the worker.

Each test starts ``celery -A project worker`` as a subprocess whose DATABASE_URL points
at this test run's database, and pytest-httpserver stands in for R-Chat. The test
itself plays Celery beat where the sweep (``message_requeue_stale``) is needed.
"""

import json
import signal
import socket
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from werkzeug import Response

from rchat import services
from rchat.models import Message
from tests.factories import ChatRoomFactory, CredentialFactory
from tests.processes import stop

ROOT = Path(__file__).resolve().parent.parent
SEND_PATH = "/api/v1/external/send-message"

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


class RecordingRChat:
    """R-Chat's Send Message: records each body it is given, answers 200 after ``delay``."""

    def __init__(self, httpserver, delay=0.0):
        self.bodies = []
        self.delay = delay
        self.lock = threading.Lock()
        httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(self.handle)

    def handle(self, request):
        body = json.loads(request.data)
        with self.lock:
            self.bodies.append(body)
            number = len(self.bodies)
        time.sleep(self.delay)
        return Response(
            json.dumps({"message_id": f"rc-{number}"}), 200, mimetype="application/json"
        )

    def texts(self, chat_id=None):
        with self.lock:
            return [
                body["message"]["data"]
                for body in self.bodies
                if chat_id is None or body["chat_id"] == chat_id
            ]


def queue_batch(rooms, per_room):
    """Queue ``per_room`` messages in each room, interleaved; return texts per chat id."""
    written = defaultdict(list)
    for n in range(per_room):
        for room in rooms:
            text = f"{room.chat_id} #{n:02d}"
            services.message_send(room=room, type="text", data=text)
            written[room.chat_id].append(text)
    return written


def wait_until_all_sent(total, timeout=90, between=None):
    deadline = time.monotonic() + timeout
    while Message.objects.filter(status="sent").count() < total:
        if time.monotonic() > deadline:
            states = Counter(Message.objects.values_list("status", flat=True))
            pytest.fail(f"Not all {total} messages were sent in {timeout}s: {dict(states)}")
        if between:
            between()
        time.sleep(0.3)


@pytest.fixture
def rooms(httpserver):
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    return [ChatRoomFactory(credential=credential, chat_id=f"room-{n}") for n in range(3)]


def test_a_batch_is_delivered_once_each_in_order_per_room(workers, httpserver, rooms):
    rchat = RecordingRChat(httpserver)
    workers(concurrency=4)
    written = queue_batch(rooms, per_room=8)

    wait_until_all_sent(24)

    for chat_id, texts in written.items():
        assert rchat.texts(chat_id) == texts
    assert not Message.objects.exclude(external_id__startswith="rc-").exists()


def test_messages_queued_while_the_broker_is_down_are_delivered_when_it_is_back(
    workers, httpserver, rooms, monkeypatch, broker
):
    rchat = RecordingRChat(httpserver)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/3"
    # Celery reads the CELERY_BROKER_URL environment variable before its settings.
    monkeypatch.setenv("CELERY_BROKER_URL", dead)
    written = queue_batch(rooms, per_room=3)
    assert Message.objects.filter(status="queued").count() == 9

    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    workers(concurrency=2)
    assert services.message_requeue_stale() == 3, "three rooms due: a drain is woken"

    wait_until_all_sent(9)
    for chat_id, texts in written.items():
        assert rchat.texts(chat_id) == texts


def test_a_worker_killed_mid_batch_loses_nothing(workers, httpserver, rooms, settings, capsys):
    """SIGKILL mid-batch: every message is still delivered; duplicates are counted."""
    # R-Chat answers slowly, so the kill lands while messages are on their way.
    rchat = RecordingRChat(httpserver, delay=0.2)
    first = workers(concurrency=3)
    written = queue_batch(rooms, per_room=6)
    deadline = time.monotonic() + 60
    while len(rchat.texts()) < 5:
        assert time.monotonic() < deadline, "the first worker sent nothing"
        time.sleep(0.05)
    stop(first, signal.SIGKILL)
    left_sending = Message.objects.filter(status="sending").count()

    # The sweep takes back "sending" rows once STALE_AFTER_SECONDS + the R-Chat
    # time-outs have passed; shortened here so the test plays beat every second.
    settings.RCHAT = {
        **settings.RCHAT,
        "STALE_AFTER_SECONDS": 0,
        "CONNECT_TIMEOUT": 0.5,
        "READ_TIMEOUT": 1.0,
    }
    workers(concurrency=3)
    wait_until_all_sent(18, between=services.message_requeue_stale)

    counts = Counter(rchat.texts())
    duplicates = {text: n - 1 for text, n in counts.items() if n > 1}
    with capsys.disabled():
        print(
            f"\n[worker killed] {len(written) * 6} messages, {left_sending} left 'sending' by "
            f"the kill, {sum(duplicates.values())} delivered twice: {sorted(duplicates)}"
        )
    for chat_id, texts in written.items():
        received = rchat.texts(chat_id)
        assert set(received) == set(texts), "every message reached R-Chat"
        firsts = list(dict.fromkeys(received))
        assert firsts == texts, "first deliveries keep the room's order"
    # Only a message in flight at the kill can arrive twice.
    assert sum(duplicates.values()) <= left_sending
    assert set(duplicates) <= set(
        Message.objects.filter(attempt_log__error_type="WorkerLost").values_list("text", flat=True)
    )
