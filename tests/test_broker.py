"""rchat.broker: wake-ups published by task name, on pooled connections, fork-safe."""

import json
import os
import time

import pytest
import redis
from celery import current_app

from rchat import broker
from tests.conftest import redis_url


@pytest.fixture
def redis_broker(monkeypatch):
    """This run's Redis database as Celery's broker for one test, emptied first."""
    url = redis_url()
    client = redis.Redis.from_url(url)
    client.flushdb()
    # broker_write_url: Celery prefers the CELERY_BROKER_URL variable to broker_url.
    monkeypatch.setitem(current_app.conf, "broker_write_url", url)
    yield client
    client.flushdb()


def _queued(client):
    return [json.loads(raw)["headers"] for raw in client.lrange("celery", 0, -1)]


@pytest.mark.redis
def test_a_wake_up_is_published_by_name_with_its_arguments(redis_broker):
    broker.publish(broker.DRAIN)
    broker.publish(broker.MESSAGE_HOOK, 42)

    headers = _queued(redis_broker)

    assert sorted((h["task"], h["argsrepr"]) for h in headers) == [
        ("rchat.tasks.drain_outbound", "()"),
        ("rchat.tasks.run_message_hook", "(42,)"),
    ]


@pytest.mark.redis
def test_the_drain_is_woken_once_until_a_drain_clears_the_flag(redis_broker, monkeypatch):
    """Many senders, one wake-up: the shared flag says a drain is on its way; a drain
    clears it before each claim, so the next message wakes another."""
    from django.conf import settings

    monkeypatch.setattr(
        settings, "RCHAT", {**settings.RCHAT, "REDIS_URL": current_app.conf.broker_write_url}
    )
    for _ in range(5):
        broker.drain_wake()
    assert len(_queued(redis_broker)) == 1
    broker.drain_flag_clear()
    broker.drain_wake()
    broker.drain_wake(countdown=30)  # a wake-up for later is never held back
    assert len(_queued(redis_broker)) == 3


@pytest.mark.redis
def test_publishing_reuses_one_pooled_connection(redis_broker):
    before = redis_broker.info("clients")["connected_clients"]
    for message_id in range(20):
        broker.publish(broker.MESSAGE_HOOK, message_id)

    assert len(_queued(redis_broker)) == 20
    assert redis_broker.info("clients")["connected_clients"] - before <= 1


@pytest.mark.redis
# The test forks on purpose, as Celery's prefork pool and gunicorn do; Python 3.12+
# warns about forking a process that has threads (the test run's own).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_no_pool_and_publishes_on_its_own(redis_broker):
    broker.publish(broker.MESSAGE_HOOK, 1)
    assert broker._pools  # the parent's pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it had, then publish on its own connection
        had = len(broker._pools)
        broker.publish(broker.MESSAGE_HOOK, 2)
        os.write(write, str(had).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)

    assert os.read(read, 10) == b"0" and os.waitstatus_to_exitcode(status) == 0
    broker.publish(broker.MESSAGE_HOOK, 3)  # the parent's connection still works
    assert sorted(h["argsrepr"] for h in _queued(redis_broker)) == ["(1,)", "(2,)", "(3,)"]


def test_without_a_broker_publish_raises_soon_and_a_sender_is_not_held_up(monkeypatch):
    from bench.common import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setitem(current_app.conf, "broker_write_url", dead)

    started = time.monotonic()
    with pytest.raises(Exception) as failed:  # kombu raises its own or OSError
        broker.publish(broker.MESSAGE_HOOK, 7)

    assert "refused" in str(failed.value).lower() or "connect" in str(failed.value).lower()
    # Two tries (the pooled connection, a fresh one), each bounded by the connect time-out.
    assert time.monotonic() - started < 4 * broker.CONNECT_TIMEOUT
