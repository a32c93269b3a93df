"""The fault scenarios of ``make faults`` (bench/faults.py), with small counts.

Each starts real processes: the sandbox standing in for R-Chat, Celery workers on
Redis, gunicorn serving the site, all on this test run's PostgreSQL database. rchat's
waits are shortened (bench.faults.FAST_RCHAT) so that every scenario ends in seconds.
"""

import math
from urllib.parse import quote

import pytest
from django.db import connection

from bench import faults
from rchat.services import delivery
from tests.conftest import redis_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

FAST = {**faults.FAST_RCHAT, "RCHAT_BENCH_RETRY_BASE_DELAY": "0.5"}


def database_url():
    """This test run's database, for the processes the scenarios start."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{quote(db['USER'] or 'postgres')}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def ctx(transactional_db, settings, tmp_path):
    """Where the scenarios run; this process's sweep uses the workers' short waits."""
    import redis

    url = redis_url()
    redis.Redis.from_url(url).flushdb()
    settings.RCHAT = {
        **settings.RCHAT,
        "STALE_AFTER_SECONDS": 5,
        "CONNECT_TIMEOUT": 2.0,
        "READ_TIMEOUT": 5.0,
        "RETRY_BASE_DELAY": 0.5,
    }
    assert connection.vendor == "postgresql"
    return faults.Context(database_url(), url, str(tmp_path), env=FAST)


def test_replies_sent_during_a_503_outage_all_arrive_once(ctx):
    outcome = faults.outage_503(ctx, sends=40, outage_seconds=3, rooms=8, timeout=90)

    assert outcome.extra["answered_503"] > 0, "the outage hit no send"
    assert (outcome.sent, outcome.lost, outcome.duplicated) == (40, 0, 0), outcome.detail


def test_replies_queued_while_redis_is_down_all_arrive_once_it_is_back(ctx):
    """No supervisor restarts the workers: both ride out the restart and reconnect."""
    outcome = faults.broker_down(ctx, sends=40, rooms=8, down_seconds=2, timeout=90)

    # 40 across the restart, then one per room once the workers are back.
    assert (outcome.sent, outcome.lost, outcome.duplicated) == (48, 0, 0), outcome.detail
    assert outcome.extra["worker_exits"] == 0, outcome.detail
    assert "; 0 worker exits, 2 of 2 workers reconnected" in outcome.detail


def test_a_worker_killed_mid_batch_loses_nothing_and_an_idempotent_rchat_shows_no_duplicate(ctx):
    """A send repeated after the kill carries the message's Idempotency-Key."""
    outcome = faults.worker_killed(ctx, sends=60, rooms=10, timeout=90)

    assert (outcome.sent, outcome.lost, outcome.duplicated) == (60, 0, 0), outcome.detail


def test_where_rchat_ignores_the_idempotency_key_a_kill_duplicates_only_unrecorded_sends(ctx):
    """At most what the killed worker's 4 threads sent since their last record shows twice.

    R-Chat answers each send in 100 ms here, so a thread makes at most
    RECORD_EVERY_SECONDS / 0.1 sends between records, plus the one in flight.
    """
    outcome = faults.worker_killed(
        ctx, sends=60, rooms=10, timeout=90, idempotent=False, latency_ms=100
    )

    assert (outcome.sent, outcome.lost) == (60, 0), outcome.detail
    per_thread = math.ceil(delivery.RECORD_EVERY_SECONDS / 0.1) + 1
    assert outcome.duplicated <= 4 * per_thread < 40, outcome.detail
    assert outcome.extra["platform_idempotent"] is False


def test_the_same_webhook_in_parallel_is_stored_once_and_answered_200_each_time(ctx):
    outcomes = faults.duplicate_webhooks(ctx, calls=40, clients=4)

    for outcome in outcomes:
        assert (outcome.sent, outcome.lost, outcome.duplicated) == (40, 0, 0), outcome.detail
        assert "statuses {200: 40}" in outcome.detail


def test_chunked_webhooks_without_a_length_are_each_stored_once_under_gunicorn(ctx):
    outcome = faults.chunked_webhooks(ctx, calls=40, clients=2, rooms=5)

    assert (outcome.sent, outcome.lost, outcome.duplicated) == (40, 0, 0), outcome.detail
    assert "statuses {200: 40}, 40 stored" in outcome.detail


def test_poison_webhook_bodies_are_answered_4xx_with_a_reason_and_kept(ctx):
    outcome = faults.poison_webhooks(ctx, rounds=1)

    assert outcome.extra["server_errors"] == 0, outcome.detail
    assert outcome.extra["wrong_answers"] == 0, outcome.detail
    assert (outcome.lost, outcome.duplicated) == (0, 0), outcome.detail
    assert "the message after them 200, stored 1" in outcome.detail


def test_fuzzed_webhook_bodies_get_no_5xx_and_every_call_is_kept(ctx):
    outcome = faults.fuzzed_webhooks(ctx, bodies=150)

    assert outcome.sent == 150
    assert outcome.extra["server_errors"] == 0, outcome.detail
    assert (outcome.lost, outcome.duplicated) == (0, 0), outcome.detail


def test_schemathesis_finds_no_server_error_in_the_api(ctx):
    outcome = faults.schemathesis_api(ctx, examples=5, max_seconds=30)

    assert outcome.sent > 0, outcome.detail
    assert outcome.extra["server_errors"] == 0, outcome.detail
    assert outcome.extra["exit_code"] == 0, outcome.detail
