"""rchat.ratelimit: one send budget per credential, shared by every process through Redis.

Schedules are asserted on the waits ``reserve()`` returns, never on how long anything
took. A reservation's wait counts from the moment Redis (or the process) read its clock,
which lies between ``time.monotonic()`` read just before and just after the call; so
each slot is bracketed by those two readings, and the brackets must hold the exact
GCRA schedule. ``SLACK`` covers the rounding to microseconds and the drift between
Redis's clock and this machine's monotonic one over a few seconds.
"""

import itertools
import logging
import multiprocessing
import socket
import time

import pytest
import redis
from celery import current_app

from rchat import ratelimit, shared
from tests.conftest import redis_url
from tests.factories import CredentialFactory

SLACK = 0.002

_credential_ids = itertools.count(1_000_001)


@pytest.fixture
def credential_id():
    """An id no other test has booked under (the process's own budgets outlive a test)."""
    return next(_credential_ids)


@pytest.fixture
def rchat(settings):
    def apply(**options):
        settings.RCHAT = {**settings.RCHAT, **options}

    return apply


@pytest.fixture
def shared_redis(rchat):
    """This run's Redis database as the shared Redis, emptied before and after."""
    url = redis_url()
    client = redis.Redis.from_url(url)
    client.flushdb()
    rchat(REDIS_URL=url)
    yield client
    client.flushdb()


@pytest.fixture
def no_redis(rchat, monkeypatch):
    """No shared Redis: no REDIS_URL, and Celery's broker the filesystem."""
    # Celery prefers the environment variables to its configuration.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    # The configuration's own keys, not its properties: those read each other.
    monkeypatch.setitem(current_app.conf, "broker_url", "filesystem://")
    monkeypatch.setitem(current_app.conf, "broker_write_url", None)
    rchat(REDIS_URL="")
    assert shared.client() is None


@pytest.fixture
def fresh_process_state(monkeypatch):
    """This process has not yet seen the shared Redis fail, nor warned about it."""
    monkeypatch.setattr(ratelimit, "_redis_down_until", {})
    monkeypatch.setattr(ratelimit, "_warned_at", None)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "process"])
def budget(request):
    """Each behaviour holds for the shared budget and for the process's own."""
    if request.param == "redis":
        request.getfixturevalue("shared_redis")
    else:
        request.getfixturevalue("no_redis")
    return request.param


def book(credential_id, rate, burst, count, *, max_wait=60.0):
    """``count`` reservations: (monotonic before, wait, monotonic after) each."""
    booked = []
    for _ in range(count):
        before = time.monotonic()
        wait = ratelimit.reserve(credential_id, rate, burst, max_wait=max_wait)
        booked.append((before, wait, time.monotonic()))
    return booked


def assert_slot(first, later, seconds):
    """``later``'s slot is ``seconds`` after ``first``'s clock reading, exactly."""
    first_before, _, first_after = first
    before, wait, after = later
    assert before + wait - first_after - SLACK <= seconds <= after + wait - first_before + SLACK


# --- The schedule ---------------------------------------------------------------------


def test_a_burst_goes_at_once_then_one_send_per_interval(budget, credential_id):
    """The k-th reservation of a run (k > burst) sends (k - burst) / rate after the first."""
    rate, burst = 50.0, 5.0

    booked = book(credential_id, rate, burst, 30)

    assert [wait for _, wait, _ in booked[:5]] == [0.0] * 5
    for k, reservation in enumerate(booked, start=1):
        if k > burst:
            assert reservation[1] > 0
            assert_slot(booked[0], reservation, (k - burst) / rate)


def test_a_fractional_burst_and_a_rate_below_one_per_second(budget, credential_id):
    booked = book(credential_id, 0.5, 1.5, 4)

    assert booked[0][1] == 0.0
    for k, reservation in enumerate(booked[1:], start=2):
        assert_slot(booked[0], reservation, (k - 1.5) / 0.5)


def test_credentials_have_budgets_of_their_own(budget, credential_id):
    book(credential_id, 10.0, 1.0, 5)

    assert ratelimit.reserve(credential_id + 1, 10.0, 1.0, max_wait=0) == 0.0


def test_a_slot_beyond_max_wait_is_refused_and_nothing_is_booked(budget, credential_id):
    rate = 10.0
    first = book(credential_id, rate, 1.0, 1)[0]

    assert ratelimit.reserve(credential_id, rate, 1.0, max_wait=0.05) is None
    assert ratelimit.reserve(credential_id, rate, 1.0, max_wait=0) is None
    # The refusals booked nothing: the next slot is still the second one.
    second = book(credential_id, rate, 1.0, 1)[0]
    assert_slot(first, second, 1 / rate)


def test_max_wait_none_waits_however_long(budget, credential_id):
    booked = book(credential_id, 1.0, 1.0, 3, max_wait=None)

    assert_slot(booked[0], booked[2], 2.0)


def test_a_rate_that_is_not_positive_is_refused(budget, credential_id):
    with pytest.raises(ValueError, match="positive"):
        ratelimit.reserve(credential_id, 0, 1, max_wait=1)


# --- Holds (R-Chat answered 429) ------------------------------------------------------


def test_a_hold_refuses_reservations_until_it_ends(budget, credential_id):
    before = time.monotonic()
    ratelimit.hold(credential_id, 30)
    after = time.monotonic()

    assert 30 - (time.monotonic() - before) - SLACK <= ratelimit.held_for(credential_id) <= 30
    assert ratelimit.reserve(credential_id, 100.0, 10.0, max_wait=1) is None
    _, wait, end = book(credential_id, 100.0, 10.0, 1)[0]
    assert before + 30 - end - SLACK <= wait <= after + 30 + SLACK


def test_a_hold_is_never_shortened_only_extended(budget, credential_id):
    ratelimit.hold(credential_id, 30)
    ratelimit.hold(credential_id, 1)
    assert ratelimit.held_for(credential_id) > 29

    ratelimit.hold(credential_id, 60)
    assert ratelimit.held_for(credential_id) > 59


def test_after_a_hold_sends_resume_at_the_rate_without_a_burst(budget, credential_id):
    """R-Chat just said the site sends too fast: the budget is empty when the hold ends."""
    rate, burst, seconds = 10.0, 5.0, 0.5
    before = time.monotonic()
    ratelimit.hold(credential_id, seconds)
    held = (before, 0.0, time.monotonic())

    booked = book(credential_id, rate, burst, 4)

    for k, reservation in enumerate(booked):
        assert_slot(held, reservation, seconds + k / rate)


def test_without_a_hold_held_for_is_zero(budget, credential_id):
    assert ratelimit.held_for(credential_id) == 0.0
    ratelimit.hold(credential_id, 0)
    ratelimit.hold(credential_id, -5)
    assert ratelimit.held_for(credential_id) == 0.0
    book(credential_id, 10.0, 1.0, 3)
    assert ratelimit.held_for(credential_id) == 0.0


# --- The key in Redis -----------------------------------------------------------------


@pytest.mark.redis
def test_one_key_per_credential_that_expires_when_idle(shared_redis, credential_id):
    key = f"rchat:rate:{credential_id}"
    book(credential_id, 10.0, 1.0, 2)

    assert shared_redis.keys("rchat:rate:*") == [key.encode()]
    # Needed until the second slot's schedule has passed (0.2 s), no longer.
    assert 0 < shared_redis.pttl(key) <= 202

    ratelimit.hold(credential_id, 30)
    assert 29_000 < shared_redis.pttl(key) <= 30_002
    book(credential_id, 10.0, 1.0, 1)  # a reservation does not cut the hold's life short
    assert shared_redis.pttl(key) > 29_000


# --- Several processes, one budget ----------------------------------------------------

RATE, BURST = 10.0, 4.0


def _book_in_child(credential_id, count, start, results):
    start.wait(timeout=30)
    results.put(book(credential_id, RATE, BURST, count))


def _hold_in_child(held_credential_id, holding_credential_id, start, results):
    start.wait(timeout=30)
    held = ratelimit.held_for(held_credential_id)
    reserved = ratelimit.reserve(held_credential_id, RATE, BURST, max_wait=1)
    ratelimit.hold(holding_credential_id, 20)
    results.put((held, reserved))


def _run_children(target, *argument_lists):
    """Run ``target(*arguments, start, results)`` in a forked child per argument list,
    all let go at once; return what each put in ``results``."""
    # Forked, as Celery's prefork pool starts its workers: each child opens its own
    # connection to Redis (rchat.shared forgets the parent's).
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = context.Barrier(len(argument_lists))
    children = [
        context.Process(target=target, args=(*arguments, start, results))
        for arguments in argument_lists
    ]
    for child in children:
        child.start()
    found = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return found


@pytest.mark.redis
# The test forks on purpose; Python 3.12+ warns about forking a process with threads.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_two_processes_share_one_budget_slot_by_slot(shared_redis, credential_id):
    """Two processes booking at once get the schedule's slots between them, each slot
    exactly once, and the schedule goes on where they left it."""
    # Slots booked ahead first, so the schedule is still ahead of the clock however long
    # the children take to start: every slot they get lies on it.
    ahead = book(credential_id, RATE, BURST, 100)
    first = ahead[0]

    children = _run_children(_book_in_child, (credential_id, 25), (credential_id, 25))

    booked = [reservation for child in children for reservation in child]
    slots = sorted(
        round(((before + after) / 2 + wait - (first[0] + first[2]) / 2) * RATE + BURST)
        for before, wait, after in booked
    )
    assert slots == list(range(101, 151))
    for before, wait, after in booked:
        slot = round(((before + after) / 2 + wait - (first[0] + first[2]) / 2) * RATE + BURST)
        assert_slot(first, (before, wait, after), (slot - BURST) / RATE)
    # Nothing was lost or booked twice: the next slot is the 151st.
    assert_slot(first, book(credential_id, RATE, BURST, 1)[0], (151 - BURST) / RATE)


@pytest.mark.redis
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_hold_in_one_process_stops_the_others(shared_redis, credential_id):
    ratelimit.hold(credential_id, 30)
    other = credential_id + 1

    ((held, reserved),) = _run_children(_hold_in_child, (credential_id, other))

    assert 29 < held <= 30
    assert reserved is None
    assert 19 < ratelimit.held_for(other) <= 20  # the child's hold, seen here
    assert ratelimit.reserve(other, RATE, BURST, max_wait=1) is None


# --- limit_for ------------------------------------------------------------------------


def test_limit_for_the_credential_s_own_rate_wins_over_the_setting(rchat):
    rchat(SEND_RATE=10, SEND_BURST=None)

    assert ratelimit.limit_for(CredentialFactory.build(send_rate=2.5)) == (2.5, 2.5)


def test_limit_for_uses_the_setting_when_the_credential_has_no_rate(rchat):
    rchat(SEND_RATE=20, SEND_BURST=None)
    assert ratelimit.limit_for(CredentialFactory.build(send_rate=None)) == (20.0, 20.0)

    rchat(SEND_BURST=3)
    assert ratelimit.limit_for(CredentialFactory.build(send_rate=None)) == (20.0, 3.0)


def test_limit_for_is_none_without_a_rate_anywhere(rchat):
    rchat(SEND_RATE=None, SEND_BURST=5)

    assert ratelimit.limit_for(CredentialFactory.build(send_rate=None)) is None


def test_limit_for_a_burst_is_at_least_one(rchat):
    rchat(SEND_RATE=None, SEND_BURST=None)
    assert ratelimit.limit_for(CredentialFactory.build(send_rate=0.2)) == (0.2, 1.0)

    rchat(SEND_BURST=0)
    assert ratelimit.limit_for(CredentialFactory.build(send_rate=5)) == (5.0, 1.0)


@pytest.mark.parametrize("rate", [0, -1.0])
def test_limit_for_a_rate_that_is_not_positive_is_no_limit(rchat, rate):
    rchat(SEND_RATE=None)

    assert ratelimit.limit_for(CredentialFactory.build(send_rate=rate)) is None


# --- Without the shared Redis ---------------------------------------------------------


def test_without_a_shared_redis_the_process_budgets_quietly(no_redis, credential_id, caplog):
    """No Redis configured is a setup (check rchat.W005 warns), not a failure to log."""
    with caplog.at_level(logging.WARNING, logger="rchat.ratelimit"):
        booked = book(credential_id, 10.0, 2.0, 3)
        ratelimit.hold(credential_id + 1, 5)

    assert [wait for _, wait, _ in booked[:2]] == [0.0, 0.0]
    assert_slot(booked[0], booked[2], 0.1)
    assert 4 < ratelimit.held_for(credential_id + 1) <= 5
    assert caplog.records == []


def _failing_redis(kind, rchat):
    """Point REDIS_URL at a Redis that fails in the way named."""
    if kind == "unreachable":
        rchat(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens on port 1
        return None
    if kind == "wrong type":
        # A real Redis that answers each call with an error: the key holds a string.
        url = redis_url()
        rchat(REDIS_URL=url)
        return url
    # A server that takes the connection and never answers: the call times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    rchat(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
    return silent


@pytest.mark.parametrize(
    "kind",
    ["unreachable", pytest.param("wrong type", marks=pytest.mark.redis), "silent"],
)
def test_a_failing_redis_falls_back_to_the_process_with_one_warning(
    kind, rchat, credential_id, fresh_process_state, caplog
):
    failing = _failing_redis(kind, rchat)
    if kind == "wrong type":
        client = redis.Redis.from_url(failing)
        client.set(f"rchat:rate:{credential_id}", "not a budget")
    try:
        with caplog.at_level(logging.WARNING, logger="rchat.ratelimit"):
            booked = book(credential_id, 10.0, 1.0, 3)
            ratelimit.hold(credential_id, 5)
            held = ratelimit.held_for(credential_id)
    finally:
        if kind == "wrong type":
            client.delete(f"rchat:rate:{credential_id}")
        elif kind == "silent":
            failing.close()

    assert booked[0][1] == 0.0
    assert_slot(booked[0], booked[1], 0.1)
    assert_slot(booked[0], booked[2], 0.2)
    assert 4 < held <= 5
    warnings = [r for r in caplog.records if r.name == "rchat.ratelimit"]
    assert len(warnings) == 1
    assert "limits its own sends" in warnings[0].getMessage()


def test_a_redis_that_keeps_failing_is_reported_at_most_once_a_minute(
    rchat, credential_id, fresh_process_state, monkeypatch, caplog
):
    # Asked again at every call, so every call fails against it.
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 0.0)
    rchat(REDIS_URL="redis://127.0.0.1:1/0")

    with caplog.at_level(logging.WARNING, logger="rchat.ratelimit"):
        book(credential_id, 100.0, 1.0, 5)
        ratelimit.held_for(credential_id)
        monkeypatch.setattr(ratelimit, "WARNING_INTERVAL", 0.0)
        ratelimit.held_for(credential_id)

    assert len([r for r in caplog.records if r.name == "rchat.ratelimit"]) == 2


@pytest.mark.redis
def test_after_a_failure_the_process_asks_redis_again_only_after_a_pause(
    shared_redis, credential_id, fresh_process_state, monkeypatch
):
    """A Redis that is down costs one time-out per pause, not one per send."""
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 1.0)
    key = f"rchat:rate:{credential_id}"
    shared_redis.set(key, "not a budget")  # every call on this key fails
    book(credential_id, 10.0, 1.0, 1)
    shared_redis.delete(key)

    book(credential_id, 10.0, 1.0, 1)
    assert not shared_redis.exists(key)  # still booked in the process

    time.sleep(1.0)
    book(credential_id, 10.0, 1.0, 1)
    assert shared_redis.type(key) == b"hash"
