"""A broadcast under a credential's send rate: the rate achieved against the one set.

``python -m bench.broadcast --database URL --broker URL [--quick] [--rooms N] [--rate R]``
(``bench.run`` calls it on a fresh database and an emptied Redis database).

Each round, ``services.broadcast_create`` queues one message to each of N chat rooms
of a credential whose ``send_rate`` is R messages/s, and the workers (2 processes x 4
threads, as in bench.outbound) send them to the sandbox. Rates are read from the
sandbox's own receipt times (``at``, to the millisecond).

The shared budget allows a burst of B = ``RCHAT["SEND_BURST"]`` messages (default: one
second's worth) on top of the rate: N messages need at least (N - B) / R seconds, and
whatever of the burst the senders do not use at once (the broadcast is still being
queued) they may use later. So the rate achieved is ``(N - 1 - B) / (t[N-1] - t[0])``:
it equals R when the budget alone paces the senders, is below R when they cannot keep
up, and would be above R only if the budget let more through than it should. Beside
it: the rate over the second half of the messages, the rate over the whole broadcast
(burst included), and the most messages received in any one second, which the budget
bounds by B + R. Rounds are at least two seconds apart, so each starts with a full
bucket.
"""

import argparse
import time
from datetime import datetime

from .common import BenchError, SandboxProcess, django_setup, flush_redis, say, spread, write_json
from .measure import exit_on_sigterm, log_folder, redis_db_free, show
from .outbound import PROCESSES, THREADS, Bench, order_breaks, vacuum, wait_delivered

SIZES = {"quick": {"rooms": 1_000, "rounds": 2}, "full": {"rooms": 10_000, "rounds": 3}}
#: Well below what the workers deliver unpaced on this machine (bench.outbound), so the
#: budget, not the workers, sets the pace.
RATE = 100.0


def receipt_times(received):
    """The sandbox's receipt time of each message, in seconds (epoch), sorted."""
    return sorted(datetime.fromisoformat(each["at"]).timestamp() for each in received)


def rates(times, burst):
    """Rates in messages/s: beyond the burst, over the second half, over the whole."""
    span = times[-1] - times[0]
    half = len(times) // 2
    return {
        "achieved": (len(times) - 1 - burst) / span,
        "second_half": (len(times) - 1 - half) / (times[-1] - times[half]),
        "whole": (len(times) - 1) / span,
    }


def busiest_second(times):
    """The most receipts within any one-second window."""
    most, low = 0, 0
    for high, t in enumerate(times):
        while t - times[low] >= 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most


def per_second(times):
    """[(second since the first receipt, messages received in it)]."""
    counts = {}
    for t in times:
        second = int(t - times[0])
        counts[second] = counts.get(second, 0) + 1
    return [[s, counts.get(s, 0)] for s in range(int(times[-1] - times[0]) + 1)]


def one_round(bench, rooms, number, rate):
    from rchat import services
    from rchat.models import ChatRoom, Message

    bench.sandbox.client.reset()
    vacuum()
    time.sleep(2.0)  # the credential's bucket is full again
    watch = bench.watch().start()
    clock = time.time()
    broadcast = services.broadcast_create(
        rooms=ChatRoom.objects.filter(pk__in=[pk for pk, _chat in rooms]),
        type="text",
        data=f"ประกาศ broadcast {number}",
        name=f"bench {number}",
    )
    queued = time.time() - clock
    first = Message.objects.filter(broadcast=broadcast).order_by("pk").values_list("pk")[0][0]
    wait_delivered(
        first, len(rooms), label=f"broadcast {number + 1}", timeout=len(rooms) / rate * 3
    )
    cpu = watch.stop()
    received = bench.sandbox.client.received()
    if len(received) != len(rooms):
        raise BenchError(f"broadcast {number + 1}: the sandbox received {len(received)}")
    times = receipt_times(received)
    burst = int(rate)  # RCHAT["SEND_BURST"] unset: one second's worth
    found = rates(times, burst)
    calls = bench.sandbox.client.calls()
    return {
        "messages": len(rooms),
        "queued_in_s": round(queued, 3),
        "sending_s": round(times[-1] - times[0], 3),
        "achieved_rate": round(found["achieved"], 2),
        "second_half_rate": round(found["second_half"], 2),
        "whole_rate": round(found["whole"], 2),
        "achieved_over_configured": round(found["achieved"] / rate, 4),
        "busiest_second": busiest_second(times),
        "answered_429": sum(1 for call in calls if call["status"] == 429),
        "repeated_keys": bench.sandbox.client.info()["repeated_keys"],
        "out_of_order": order_breaks(received),
        "per_second": per_second(times),
        "cpu": cpu,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rooms", type=int)
    parser.add_argument("--rate", type=float, default=RATE, help="the credential's send_rate")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--logs", help="keep the servers' and workers' logs in this folder")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    count = args.rooms or size["rooms"]
    rounds = args.rounds or size["rounds"]
    args.processes, args.threads, args.max_seconds, args.worker_env = PROCESSES, THREADS, 600, {}
    exit_on_sigterm()
    django_setup(args.database, args.broker)
    redis_db_free(args.broker, say=say)
    flush_redis(args.broker)
    clock = time.monotonic()
    runs = []
    with log_folder(args.logs) as logs, SandboxProcess(log_dir=logs) as sandbox:
        bench = Bench(args, logs, sandbox)
        bench.credential.send_rate = args.rate
        bench.credential.save(update_fields=["send_rate"])
        rooms = bench.rooms("bc", count)
        say(
            f"Broadcast: {count} rooms at send_rate {args.rate:g}/s, {rounds} rounds, "
            f"{PROCESSES} workers x {THREADS} threads; VACUUM ANALYZE before each round "
            "(autovacuum is off)"
        )
        try:
            bench.workers_start(PROCESSES)
            for number in range(rounds):
                run = one_round(bench, rooms, number, args.rate)
                runs.append(run)
                say(
                    f"    round {number + 1}/{rounds}: achieved {run['achieved_rate']:.1f}/s "
                    f"({run['achieved_over_configured']:.3f} of {args.rate:g}), second half "
                    f"{run['second_half_rate']:.1f}/s, whole "
                    f"{run['whole_rate']:.1f}/s, busiest second {run['busiest_second']}, "
                    f"queued in {run['queued_in_s']:.1f} s, "
                    f"{run['answered_429']} answered 429"
                )
        finally:
            bench.workers_stop()
    ratio = spread([run["achieved_over_configured"] for run in runs], 4)
    payload = {
        "what": "a broadcast through services.broadcast_create with the credential's "
        "send_rate set: the rate the sandbox received, against the rate set",
        "quick": args.quick,
        "rooms": count,
        "configured_rate": args.rate,
        "burst": int(args.rate),  # RCHAT["SEND_BURST"] unset: one second's worth
        "busiest_second_max": max(run["busiest_second"] for run in runs),
        "concurrency": f"{PROCESSES} processes x {THREADS} threads",
        "achieved_rate": spread([run["achieved_rate"] for run in runs], 2),
        "second_half_rate": spread([run["second_half_rate"] for run in runs], 2),
        "whole_rate": spread([run["whole_rate"] for run in runs], 2),
        "ratio": ratio,
        "target": {"within": 0.05},
        "seconds": round(time.monotonic() - clock),
        "runs": runs,
    }
    write_json("broadcast", payload)
    say(
        f"Broadcast done in {payload['seconds']} s: {count} rooms at {args.rate:g}/s set, "
        f"achieved {show(payload['achieved_rate'], '/s', 1)}, achieved/set {show(ratio, '', 3)}, "
        f"busiest second {payload['busiest_second_max']} (bound {int(args.rate) * 2})."
    )


if __name__ == "__main__":
    main()
