"""Drains running at once on PostgreSQL: each room's order, no message sent twice.

Real PostgreSQL (the claim's ``SKIP LOCKED`` and the record's row locks are what is
tested) and a real HTTP server standing in for R-Chat; several threads drain while
other threads keep queueing, as workers and senders do on a busy site.
"""

import json
import threading
from collections import defaultdict

import pytest
from django.db import connection

from rchat import services
from rchat.models import ChatRoom, DeliveryAttempt, Message
from tests.factories import ChatRoomFactory, CredentialFactory

SEND_PATH = "/api/v1/external/send-message"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    from rchat.tasks import drain_outbound

    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


def _in_thread(target, errors):
    def run():
        try:
            target()
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_concurrent_drains_and_senders_keep_each_rooms_order_and_send_once(httpserver):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"status": "SUCCESS"})
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    rooms = [ChatRoomFactory(credential=credential, chat_id=f"c{n}") for n in range(12)]
    per_room = 15
    errors = []
    queued = threading.Event()

    def sender(room):
        def run():
            for n in range(per_room):
                services.message_send(room=room, type="text", data=f"{room.chat_id}:{n}")

        return run

    def drainer():
        idle = 0
        while idle < 3:
            result = services.delivery_drain(batch_size=5)
            if result.claimed:
                idle = 0
            elif queued.is_set():
                idle += 1

    senders = [_in_thread(sender(room), errors) for room in rooms]
    drainers = [_in_thread(drainer, errors) for _ in range(4)]
    for thread in senders + drainers:
        thread.start()
    for thread in senders:
        thread.join()
    queued.set()
    for thread in drainers:
        thread.join()
    assert errors == []
    # Whatever a drain missed in the race with the last senders, one more takes.
    services.delivery_drain()

    bodies = [json.loads(request.data) for request, _ in httpserver.log]
    seen = defaultdict(list)
    for body in bodies:
        seen[body["chat_id"]].append(int(body["message"]["data"].split(":")[1]))
    assert {chat_id: order for chat_id, order in seen.items()} == {
        room.chat_id: list(range(per_room)) for room in rooms
    }, "each room in order, each message once"
    assert Message.objects.filter(status="sent").count() == len(rooms) * per_room
    assert DeliveryAttempt.objects.count() == len(rooms) * per_room
    assert not ChatRoom.objects.filter(send_after__isnull=False).exists()
