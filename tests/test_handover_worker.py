"""The race between the bot's replies and a person taking over, with a real Celery
worker sending (PostgreSQL shared with it, pytest-httpserver standing in for R-Chat):
the person wins, and no bot message reaches R-Chat after the take-over commits."""

import json
import threading
import time

import pytest
from werkzeug import Response

from rchat import services
from rchat.models import ChatRoom, Message
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory
from tests.test_worker_delivery import SEND_PATH

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


def test_a_take_over_mid_stream_stops_the_bot_before_its_next_message(workers, httpserver):
    arrivals = []
    lock = threading.Lock()

    def handle(request):
        with lock:
            arrivals.append((time.time(), json.loads(request.data)["message"]["data"]))
        time.sleep(0.03)
        return Response(json.dumps({"message_id": f"rc-{len(arrivals)}"}), 200)

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(handle)
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"), bot_first=True)
    room = ChatRoomFactory(credential=credential, handler=ChatRoom.Handler.BOT)
    workers(concurrency=2)
    for n in range(40):
        services.message_send(room=room, type="text", data=f"bot {n:02d}", sender="bot")

    deadline = time.monotonic() + 60
    while len(arrivals) < 5:
        assert time.monotonic() < deadline, "the worker sent nothing"
        time.sleep(0.01)
    services.room_take_over(room=room, user=UserFactory())
    committed = time.time()
    time.sleep(1.0)  # anything the worker would still send arrives by now

    states = {s: Message.objects.filter(status=s).count() for s in ("sent", "cancelled")}
    sent = list(Message.objects.filter(status="sent").order_by("id").values_list("text", flat=True))
    cancelled = Message.objects.filter(status="cancelled").count()
    assert [text for _at, text in arrivals] == sent, "each message sent once, in order"
    assert max(at for at, _text in arrivals) < committed
    assert len(sent) >= 5 and cancelled >= 1 and len(sent) + cancelled == 40, states
    assert not Message.objects.filter(status__in=["queued", "sending"]).exists()
