"""One send budget per credential, shared by every process that sends to R-Chat.

R-Chat answers 429 when a credential sends too fast. So that a busy site, or a broadcast
to thousands of chat rooms, stays under the rate on its own, every sender asks this
module for a turn before each HTTP call: ``reserve()`` books the credential's next free
slot and says how long to wait for it. Every worker process on every machine books in
the same place, the shared Redis (``rchat.shared``), so together they send at the
configured rate, not at the rate times the number of processes.

**The rate.** ``limit_for(credential)``: the credential's own ``send_rate`` (messages
per second), else ``RCHAT["SEND_RATE"]``; None (or a rate that is not a positive
number) means no limit. The burst is ``RCHAT["SEND_BURST"]``, or one second's worth of
the rate; at least 1.

**GCRA.** The budget is a token bucket written as one number, the credential's
*theoretical arrival time* (TAT): the moment at which its schedule would be up to date
if every slot booked so far were used one ``interval = 1 / rate`` apart. With
``tau = (burst - 1) * interval`` (how far ahead of the schedule a sender may run), a
reservation at ``now``:

- takes ``tat = max(TAT, now)`` (a schedule left behind is not saved up beyond the
  burst: an idle credential starts again from now);
- may send at ``max(now, tat - tau)``: at once while fewer than ``burst`` slots are
  booked ahead, else at its place in the schedule;
- books the slot by storing ``TAT = tat + interval``.

After a quiet spell ``burst`` sends go at once, then one every ``interval``: the k-th
reservation (k > burst) of a run sends ``(k - burst) / rate`` seconds after the first.
Nothing is counted per window, so there is no edge at which twice the rate slips
through, and the schedule is exact however many processes book in it: over 10,000
sends the rate achieved is the configured one.

In Redis the whole step runs in one Lua script (sent by its SHA1 with EVALSHA), so
reservations from different processes cannot interleave, and it reads the time with
``redis.call('TIME')``: every machine books against Redis's clock, so clocks that
disagree between machines do not matter. Each credential has one hash,
``rchat:rate:<credential id>``, with the TAT, the hold below and the last ``tau``; it
expires once the TAT and the hold have passed (a missing key is exactly a full bucket),
so idle credentials leave nothing behind.

If the next slot is further than ``max_wait`` seconds away, ``reserve()`` books nothing
and returns None: the caller gives the message back to the queue instead of sleeping,
and no slot is left unused by someone who did not wait for it.

**Holds.** When R-Chat answers 429 with Retry-After, the sender calls
``hold(credential_id, seconds)``: no reservation of that credential, in any process,
sends before ``now + seconds``. A later hold can extend it, never shorten it (two
workers that got a 429 at once keep the longer wait). The hold lives in the same hash,
so the reservation that reads the TAT also reads the hold, in the same step. When a
hold ends, the credential starts with an *empty* bucket, not a full one: sends resume
one every ``interval`` and the burst builds up again from there, since R-Chat has just
said the site was sending too fast. ``held_for(credential_id)`` tells the seconds a hold
has left; a sender with no rate limit asks it instead of reserving.

**Without a shared Redis.** When ``rchat.shared`` has no Redis (the development site's
filesystem broker, RabbitMQ), the same algorithm runs in the process, under a lock, on
``time.monotonic()``: each process then limits alone, and the site may send up to the
rate times the number of processes (system check ``rchat.W005``). When the Redis cannot
be reached, or answers with an error or not within ``rchat.shared.TIMEOUT``, the call
falls back the same way, a warning is logged (at most once a minute per process), and
the process does not ask that Redis again for ``REDIS_RETRY_SECONDS``, so a Redis that
is down costs senders one time-out, not one per message. No Redis failure is raised to
the caller.

**Costs.** ``reserve()``, ``hold()`` and ``held_for()`` each make one round trip to
Redis (EVALSHA); the first call after Redis lost its script cache (a restart) makes
three (EVALSHA, SCRIPT LOAD, EVALSHA). ``limit_for()`` reads only the credential and the
settings. The fallback makes none.
"""

import logging
import math
import os
import threading
import time

from . import shared
from .conf import get_setting

logger = logging.getLogger(__name__)

#: Seconds a process keeps to its own budget after the shared Redis failed, before it
#: asks that Redis again.
REDIS_RETRY_SECONDS = 5.0
#: Seconds between two warnings that the shared Redis failed (per process).
WARNING_INTERVAL = 60.0

KEY_PREFIX = "rchat:rate:"

# Times are microseconds on Redis's clock. The TAT is written with 17 significant
# digits: Lua's own number-to-string conversion keeps 14, too few for microseconds
# since 1970, and the lost digits would shift every later slot.
SCRIPT = """
if redis.replicate_commands then
  -- Redis before 5 replicates scripts by their effects only when asked; needed to write
  -- after reading TIME. A no-op since then.
  redis.replicate_commands()
end
local key = KEYS[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function exact(number)
  return string.format('%.17g', number)
end

-- PEXPIRE's argument for a key needed until ``at``.
local function lifetime(at)
  return math.ceil((at - now) / 1000) + 1
end

local operation = ARGV[1]
if operation == 'reserve' then
  local interval = tonumber(ARGV[2])
  local tau = tonumber(ARGV[3])
  local max_wait = tonumber(ARGV[4])
  local state = redis.call('HMGET', key, 'tat', 'hold')
  local tat = math.max(tonumber(state[1]) or now, now)
  local hold = tonumber(state[2])
  if hold then
    -- The bucket is empty when a hold ends.
    tat = math.max(tat, hold + tau)
  end
  local wait = math.max(tat - tau - now, 0)
  if max_wait >= 0 and wait > max_wait then
    return -1
  end
  tat = tat + interval
  if hold and hold <= now then
    -- A hold that has ended is now part of the TAT.
    redis.call('HDEL', key, 'hold')
  end
  redis.call('HSET', key, 'tat', exact(tat), 'tau', exact(tau))
  -- The TAT is the latest moment the state matters (it covers hold + tau).
  redis.call('PEXPIRE', key, string.format('%d', lifetime(tat)))
  return math.ceil(wait)
elseif operation == 'hold' then
  local till = now + tonumber(ARGV[2])
  local state = redis.call('HMGET', key, 'hold', 'tau')
  local hold = tonumber(state[1])
  if hold and hold >= till then
    return 0
  end
  redis.call('HSET', key, 'hold', exact(till))
  -- Kept until the bucket that is empty at the hold's end has filled up again, and
  -- never less long than it already was.
  local ttl = lifetime(till + (tonumber(state[2]) or 0))
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, string.format('%d', ttl))
  end
  return 1
elseif operation == 'held' then
  local hold = tonumber(redis.call('HGET', key, 'hold'))
  if not hold or hold <= now then
    return 0
  end
  return math.ceil(hold - now)
end
return redis.error_reply('rchat.ratelimit: unknown operation ' .. tostring(operation))
"""

MICROSECONDS = 1_000_000


def limit_for(credential):
    """(rate per second, burst) in force for the credential, or None for no limit.

    The credential's ``send_rate``, else ``RCHAT["SEND_RATE"]``; a rate that is not a
    positive number is no limit. The burst is ``RCHAT["SEND_BURST"]``, else one second's
    worth of the rate, and never below 1.
    """
    rate = credential.send_rate
    if rate is None:
        rate = get_setting("SEND_RATE")
    if rate is None or not float(rate) > 0:
        return None
    rate = float(rate)
    burst = get_setting("SEND_BURST")
    burst = rate if burst is None else float(burst)
    return rate, max(burst, 1.0)


def reserve(credential_id, rate, burst, *, max_wait):
    """Reserve one send. Return the seconds the caller must wait before sending (0.0 =
    now), or None when that would exceed max_wait — then nothing is reserved.

    ``rate`` (per second, positive) and ``burst`` (below 1 counts as 1) are what
    ``limit_for`` gives; ``max_wait`` None waits however long. The wait is counted from the call:
    sleep it at once, then send. A hold (``hold``) delays the slot to its end.
    """
    rate = float(rate)
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"A send rate must be a positive number of messages per second: {rate!r}")
    interval = 1.0 / rate
    tau = (max(float(burst), 1.0) - 1.0) * interval
    if max_wait is not None:
        max_wait = max(float(max_wait), 0.0)
        if math.isinf(max_wait):
            max_wait = None
    client = _redis()
    if client is not None:
        limit = -1 if max_wait is None else max_wait * MICROSECONDS
        try:
            waited = _run(
                client,
                credential_id,
                "reserve",
                interval * MICROSECONDS,
                tau * MICROSECONDS,
                limit,
            )
        except Exception as exc:  # any Redis failure: this process budgets alone
            _redis_failed(exc)
        else:
            return None if waited < 0 else waited / MICROSECONDS
    return _local.reserve(credential_id, interval, tau, max_wait)


def hold(credential_id, seconds):
    """R-Chat answered 429 (Retry-After): no send for this credential before now +
    seconds, across every worker; never shortens an existing hold.

    When the hold ends the credential's budget starts empty: sends resume at the rate,
    without a burst. ``seconds`` of 0 or less changes nothing.
    """
    seconds = float(seconds)
    if not seconds > 0:
        return
    if not math.isfinite(seconds):
        raise ValueError(f"A hold must be a finite number of seconds: {seconds!r}")
    client = _redis()
    if client is not None:
        try:
            _run(client, credential_id, "hold", seconds * MICROSECONDS)
        except Exception as exc:  # any Redis failure: this process holds alone
            _redis_failed(exc)
        else:
            return
    _local.hold(credential_id, seconds)


def held_for(credential_id):
    """Seconds left of a hold (0.0 when none)."""
    client = _redis()
    if client is not None:
        try:
            left = _run(client, credential_id, "held")
        except Exception as exc:  # any Redis failure: this process's own holds
            _redis_failed(exc)
        else:
            return left / MICROSECONDS
    return _local.held_for(credential_id)


# --- The shared Redis -----------------------------------------------------------------------

_script = None
# The Redis URL this process stopped asking after a failure -> when it asks again
# (time.monotonic()); the time of the last warning.
_redis_down_until = {}
_warned_at = None
_state_lock = threading.Lock()


def _redis():
    """The shared Redis to book in, or None to book in the process."""
    address = shared.url()
    if not address:
        return None
    with _state_lock:
        until = _redis_down_until.get(address)
        if until is not None:
            if time.monotonic() < until:
                return None
            del _redis_down_until[address]
    try:
        return shared.client()
    except Exception as exc:  # a URL redis-py cannot read counts as a Redis that failed
        _redis_failed(exc)
        return None


def _run(client, credential_id, operation, *args):
    global _script
    if _script is None:
        # The SHA1 is the same for every client; each call names its client.
        _script = client.register_script(SCRIPT)
    return _script(keys=[f"{KEY_PREFIX}{credential_id}"], args=[operation, *args], client=client)


def _redis_failed(exc):
    global _warned_at
    address = shared.url()
    now = time.monotonic()
    with _state_lock:
        _redis_down_until[address] = now + REDIS_RETRY_SECONDS
        warn = _warned_at is None or now - _warned_at >= WARNING_INTERVAL
        if warn:
            _warned_at = now
    if warn:
        logger.warning(
            "Shared Redis unavailable for the send rate limits (%s): this process limits "
            "its own sends to R-Chat meanwhile, so all processes together may send faster "
            "than the rate.",
            exc,
        )


# --- The process's own budgets --------------------------------------------------------------


class _LocalBudgets:
    """The same GCRA as the Lua script, for one process: seconds on time.monotonic()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tat = {}  # credential id -> theoretical arrival time
        self._holds = {}  # credential id -> end of the hold

    def reserve(self, credential_id, interval, tau, max_wait):
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(credential_id, now), now)
            hold = self._holds.get(credential_id)
            if hold is not None:
                tat = max(tat, hold + tau)
            wait = max(tat - tau - now, 0.0)
            if max_wait is not None and wait > max_wait:
                return None
            self._tat[credential_id] = tat + interval
            if hold is not None and hold <= now:
                del self._holds[credential_id]
            return wait

    def hold(self, credential_id, seconds):
        with self._lock:
            till = time.monotonic() + seconds
            if till > self._holds.get(credential_id, -math.inf):
                self._holds[credential_id] = till

    def held_for(self, credential_id):
        with self._lock:
            hold = self._holds.get(credential_id)
            return 0.0 if hold is None else max(hold - time.monotonic(), 0.0)


_local = _LocalBudgets()


def _forget_after_fork():
    # A forked process budgets for itself, with locks no thread of the parent holds.
    global _local, _state_lock, _redis_down_until, _warned_at
    _local = _LocalBudgets()
    _state_lock = threading.Lock()
    _redis_down_until = {}
    _warned_at = None


os.register_at_fork(after_in_child=_forget_after_fork)
