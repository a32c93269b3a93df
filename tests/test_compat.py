"""rchat.compat: the fixes for the libraries the workers run on.

``kombu_redis_released_channel``: with Celery 5.7 and kombu 5.7, a worker holding
unacknowledged messages when Redis goes away exited with ``AttributeError: 'NoneType'
object has no attribute 'hostname'`` instead of reconnecting. The worker test starts a
real Celery worker on a Redis of its own, kills that Redis under it and starts it again.
"""

import json
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
from werkzeug import Response

from rchat import compat, services
from rchat.models import Message
from tests.conftest import _missing
from tests.factories import ChatRoomFactory, CredentialFactory
from tests.processes import eventually, start_worker, stop

SEND_PATH = "/api/v1/external/send-message"


# --- The patched kombu method -----------------------------------------------------------


def _channel(connection):
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel.__new__(kombu_redis.Channel)  # no connection to Redis
    channel.connection = connection
    return channel


def test_the_fix_is_in_place_once_the_app_is_ready():
    from kombu.transport import redis as kombu_redis

    assert kombu_redis.Channel._connparams.rchat_fix
    assert compat.kombu_redis_released_channel() is True, "applying it again changes nothing"
    assert kombu_redis.Channel._connparams.__wrapped__.__module__ == "kombu.transport.redis"


@pytest.mark.parametrize(
    "connection",
    [None, SimpleNamespace(client=None)],
    ids=["channel closed (no transport)", "transport released (no client)"],
)
def test_a_released_channel_reports_a_connection_error_not_an_attribute_error(connection):
    import redis

    with pytest.raises(redis.exceptions.ConnectionError, match="already closed"):
        _channel(connection)._connparams()


def test_a_channel_in_use_gets_kombus_connection_parameters():
    from kombu import Connection

    connection = Connection("redis://127.0.0.1:6399/3")  # nothing is connected
    params = _channel(connection.transport)._connparams()

    assert (params["host"], params["port"], params["db"]) == ("127.0.0.1", 6399, 3)


# --- A real worker through a Redis restart -------------------------------------------------


class SlowRChat:
    """R-Chat's Send Message answering after ``delay`` s, so sends are in flight."""

    def __init__(self, httpserver, delay):
        self.texts = []
        self.delay = delay
        self.lock = threading.Lock()
        httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(self.handle)

    def handle(self, request):
        with self.lock:
            self.texts.append(json.loads(request.data)["message"]["data"])
            number = len(self.texts)
        time.sleep(self.delay)
        return Response(json.dumps({"message_id": f"rc-{number}"}), mimetype="application/json")


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own (bench.common.PrivateRedis), never the shared one."""
    if shutil.which("redis-server") is None:
        _missing("needs redis-server (apt-get install redis-server): it stops a Redis of its own")
    from bench.common import PrivateRedis

    with PrivateRedis(log_dir=tmp_path) as server:
        yield server


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(150)
def test_a_worker_holding_unacked_messages_lives_through_a_redis_restart(
    private_redis, httpserver, monkeypatch, tmp_path
):
    """Without the fix the worker exits (``Unrecoverable error: AttributeError``) as soon
    as Redis is killed; with it, it reconnects and goes on sending."""
    rchat = SlowRChat(httpserver, delay=3.0)
    # Celery reads this variable before its settings: this process publishes there too.
    monkeypatch.setenv("CELERY_BROKER_URL", private_redis.url)
    credential = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    rooms = [ChatRoomFactory(credential=credential, chat_id=f"restart-{n}") for n in range(4)]
    log = tmp_path / "worker.log"
    worker = start_worker(broker_url=private_redis.url, log=log, concurrency=4)
    try:
        # One message per room (a room sends one at a time): three tasks run at once,
        # each unacknowledged until it ends (acks_late), while the worker waits on BRPOP.
        for room in rooms[:3]:
            services.message_send(room=room, type="text", data=f"{room.chat_id} before")
        eventually(lambda: len(rchat.texts), lambda n: n == 3, what="three sends in flight")

        private_redis.stop()  # SIGKILL, and the unacknowledged messages go with it
        lost = "Connection to broker lost"
        eventually(log.read_text, lambda text: lost in text, what="the worker to lose Redis")
        private_redis.start()
        eventually(
            log.read_text,
            lambda text: "Connected to" in text[text.rfind(lost) :] or worker.poll() is not None,
            timeout=60,
            what="the worker to reconnect",
        )
        assert worker.poll() is None, f"the worker exited:\n{log.read_text()[-3000:]}"

        # The sends in flight are recorded (their acks fail: "Couldn't ack"), and the
        # worker takes new wake-ups from the restarted Redis.
        services.message_send(room=rooms[3], type="text", data="restart-3 after")
        eventually(
            lambda: sorted(Message.objects.values_list("text", "status")),
            lambda rows: all(status == "sent" for _text, status in rows) and len(rows) == 4,
            timeout=60,
            what="all four messages to be sent",
        )
        assert sorted(rchat.texts) == sorted(
            [*(f"restart-{n} before" for n in range(3)), "restart-3 after"]
        )
        assert worker.poll() is None
        assert "Unrecoverable error" not in log.read_text()
    finally:
        stop(worker)
