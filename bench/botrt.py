"""The bot round trip: from the end user's webhook to the bot's reply at R-Chat's API.

``python -m bench.botrt --database URL --broker URL [--quick] [--count N] [--rate R]``
(``bench.run`` calls it on a fresh database and an emptied Redis database).

One gunicorn (2 gthread workers x 4 threads, as in bench.webhook) serves every side:

- **inline**, the floor: ``POST /bench/reply-inline/``, a view that stores nothing and
  posts the same reply to the sandbox with requests before it answers;
- **rchat**: ``POST /rchat/webhook/``; the message is stored, RCHAT["ON_MESSAGE"]
  (``bench.botrt_site.reply``) runs in real Celery workers (2 processes x 4 threads)
  and calls ``services.message_send``, and the reply is sent by a drain;
- **rchat_pooled**: the same with the workers on Django's connection pool. Celery 5.7
  closes a worker's database connections before and after every task, so without a
  pool each bot hook opens a PostgreSQL connection of its own (docs/deployment.md).

Only the worker set under test takes tasks (``celery control cancel_consumer`` idles
the other). A client sends the same webhook bodies to each side, open loop at R per
second on one kept-alive connection (each call's send time taken just before it is
written). A reply's round trip is the sandbox's receipt time of the reply (``at``,
which the sandbox records to the millisecond, on the same clock) minus the send time
of the webhook it answers; the rows' own timestamps split it into the webhook, the
hook, the queue and the send. Each round measures every side, rotating which goes
first; each side's p99 (and p50) over the inline floor's in the same round gives a
ratio, reported as the median of the rounds with the lowest and highest.
"""

import argparse
import http.client
import json
import time
from datetime import datetime

from . import profile
from .common import (
    RESULTS,
    BenchError,
    SandboxProcess,
    django_setup,
    flush_redis,
    gunicorn,
    percentile,
    ratio_spread,
    say,
    spread,
    write_json,
)
from .measure import (
    CpuWatch,
    cpu_line,
    database_sessions,
    exit_on_sigterm,
    log_folder,
    named,
    redis_db_free,
    show,
    tree,
)
from .outbound import PROCESSES, THREADS, Bench

SIDES = {
    "inline": "/bench/reply-inline/",
    "rchat": "/rchat/webhook/",
    "rchat_pooled": "/rchat/webhook/",
}
RCHAT_SIDES = ("rchat", "rchat_pooled")
#: The second set of workers: Django's connection pool instead of a connection per task.
POOLED_WORKERS = {"DJANGO_SETTINGS_MODULE": "bench.botrt_settings", "RCHAT_BENCH_DB_POOL": 8}
SIZES = {
    "quick": {"count": 120, "rate": 20.0, "rounds": 2},
    "full": {"count": 1200, "rate": 20.0, "rounds": 3},
}
ROOMS = 50
SIGNATURE = "sig-botrt-" + "y" * 24
HOOK = "bench.botrt_site.reply"


def webhook(tag, n):
    """An end user's message as R-Chat's webhook carries it (a new message id each)."""
    return json.dumps(
        {
            "message": {"type": "text", "data": f"{tag} {n} สวัสดีครับ", "id": f"{tag}-{n}"},
            "chat_id": f"bot-{n % ROOMS}",
            "channel": "line",
            "user": {"name": "สมชาย"},
        },
        ensure_ascii=False,
    ).encode()


def credential(sandbox_url):
    from django.utils import timezone

    from rchat import crypto
    from rchat.models import Credential

    return Credential.objects.update_or_create(
        name="bench-bot",
        defaults={
            "token": "chatday-bench-token",
            "base_url": sandbox_url,
            "signature_token": SIGNATURE,
            "signature_digest": crypto.digest(SIGNATURE),
            "status": Credential.Status.ACTIVE,
            "registered_at": timezone.now(),
        },
    )[0]


def drive(port, path, tag, count, rate):
    """POST ``count`` webhooks at ``rate`` per second (open loop, one connection).

    Returns {n: (send time, seconds to the answer, status)}.
    """
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Chatday-Signature-Token": SIGNATURE,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = {}
    start = time.monotonic() + 0.05
    for n in range(count):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        body = webhook(tag, n)
        at, clock = time.time(), time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        sent[n] = (at, time.perf_counter() - clock, response.status)
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()
    return sent


def replies(sandbox, count, tag, *, timeout=60.0):
    """The sandbox's received calls once ``count`` have come (or BenchError, saying
    where the missing replies are)."""
    deadline = time.monotonic() + timeout
    while True:
        received = sandbox.client.received()
        if len(received) >= count:
            return received
        if time.monotonic() > deadline:
            raise BenchError(
                f"only {len(received)} of {count} replies reached the sandbox in "
                f"{timeout:.0f} s; {_unsent(tag)}"
            )
        time.sleep(0.2)


def _unsent(tag):
    """The replies to ``tag``'s messages not sent: by status, and their rooms' state."""
    from django.db.models import Count, Q

    from rchat.models import Message

    rows = (
        Message.objects.filter(direction="out", text__startswith=f"re: {tag} ")
        .exclude(status="sent")
        .values_list("status")
        .annotate(
            n=Count("id"),
            due=Count("id", filter=Q(room__send_after__isnull=False)),
        )
        .order_by()
    )
    stored = Message.objects.filter(direction="in", text__startswith=f"{tag} ").count()
    return (
        f"{stored} end-user messages stored; replies not sent, by status "
        f"(of which in a room that is due): "
        + (", ".join(f"{status} {n} ({due})" for status, n, due in rows) or "none queued")
    )


def measure(bench, server, side, workers, tag, count, rate):
    bench.sandbox.client.reset()
    watch = CpuWatch(
        {
            "sandbox": [bench.sandbox.process.pid],
            "gunicorn": tree(server.pid),
            "workers": [w.pid for w in workers],
            "postgres": named("postgres"),
            "redis": named("redis-server"),
        }
    ).start()
    sessions = database_sessions()
    sent = drive(server.port, SIDES[side], tag, count, rate)
    received = replies(bench.sandbox, count, tag)
    cpu = watch.stop()
    sessions = database_sessions() - sessions
    statuses = {}
    for _at, _answer, status in sent.values():
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    if statuses != {"200": count}:
        raise BenchError(f"{side}: the webhooks were answered {statuses}")
    arrived = {
        str(each["message"]["data"]): datetime.fromisoformat(each["at"]).timestamp()
        for each in received
    }
    trips = []
    for n, (at, _answer, _status) in sent.items():
        text = f"re: {tag} {n} สวัสดีครับ"
        if text not in arrived:
            raise BenchError(f"{side}: no reply to message {n}")
        trips.append((arrived[text] - at) * 1000)
    answers = [answer * 1000 for _at, answer, _status in sent.values()]
    phases = _phases(tag, sent, arrived) if side != "inline" else None
    return {
        "messages": count,
        "replies": len(received),
        "p50_ms": round(percentile(trips, 0.50), 2),
        "p99_ms": round(percentile(trips, 0.99), 2),
        "max_ms": round(max(trips), 2),
        "webhook_answer_p50_ms": round(percentile(answers, 0.50), 2),
        "webhook_answer_p99_ms": round(percentile(answers, 0.99), 2),
        "trips_ms": [round(t, 1) for t in trips],
        "database_connections_opened": sessions,
        "phases_ms": phases,
        "cpu": cpu,
    }


def _phases(tag, sent, arrived):
    """Where a reply's time went, from the rows' own timestamps (p50 / p99 in ms):
    webhook (sent -> end user's message inserted), hook (-> reply inserted by the
    bot), queue (-> its send started), send (-> received by the sandbox)."""
    from django.db.models import Min

    from rchat.models import Message

    stored = dict(
        Message.objects.filter(direction="in", text__startswith=f"{tag} ").values_list(
            "text", "created_at"
        )
    )
    replied = {
        text: (created, started)
        for text, created, started in Message.objects.filter(
            direction="out", text__startswith=f"re: {tag} "
        )
        .annotate(started=Min("attempt_log__started_at"))
        .values_list("text", "created_at", "started")
    }
    steps = {"webhook": [], "hook": [], "queue": [], "send": []}
    for n, (at, _answer, _status) in sent.items():
        text = f"{tag} {n} สวัสดีครับ"
        reply = f"re: {text}"
        if text not in stored or reply not in replied or replied[reply][1] is None:
            continue
        inserted, (queued, started) = stored[text].timestamp(), replied[reply]
        steps["webhook"].append(inserted - at)
        steps["hook"].append(queued.timestamp() - inserted)
        steps["queue"].append(started.timestamp() - queued.timestamp())
        steps["send"].append(arrived[reply] - started.timestamp())
    return {
        name: [round(percentile(v, 0.5) * 1000, 1), round(percentile(v, 0.99) * 1000, 1)]
        for name, v in steps.items()
        if v
    }


def profile_pass(bench, server, workers, run, count, rate):
    """One more pass of the pooled side, not counted, with py-spy on its workers
    (bench/results/botrt_profile.txt)."""
    if not profile.available():
        say("Profile: py-spy is not installed (pip install py-spy); skipped")
        return {"skipped": "py-spy is not installed"}
    say(f"Profile: {count} more webhooks with py-spy on the workers (not a measured round)")
    bench.consuming(only=workers)
    with profile.Spy([w.pid for w in workers], bench.logs, "botrt") as spy:
        measure(bench, server, "rchat_pooled", workers, f"{run}-profile", count, rate)
    summary = spy.summary()
    (RESULTS / "botrt_profile.txt").write_text(
        profile.report(summary, f"Bot hook workers (pooled connections), {count} webhooks")
    )
    return summary


def _ratio(runs, side, key):
    return ratio_spread([r[key] for r in runs[side]], [r[key] for r in runs["inline"]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int, help="webhooks per side and round")
    parser.add_argument("--rate", type=float, help="webhooks per second")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--logs", help="keep the servers' and workers' logs in this folder")
    parser.add_argument(
        "--profile", action="store_true", help="one more pass with py-spy on the workers"
    )
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    count, rate = args.count or size["count"], args.rate or size["rate"]
    rounds = args.rounds or size["rounds"]
    args.processes, args.threads, args.max_seconds = PROCESSES, THREADS, 600
    args.worker_env = {"RCHAT_ON_MESSAGE": HOOK}
    exit_on_sigterm()
    django_setup(args.database, args.broker)
    redis_db_free(args.broker, say=say)
    flush_redis(args.broker)
    clock = time.monotonic()
    runs = {side: [] for side in SIDES}
    with log_folder(args.logs) as logs, SandboxProcess(log_dir=logs) as sandbox:
        bench = Bench(args, logs, sandbox)
        credential(sandbox.url)
        site_env = {
            "DJANGO_SETTINGS_MODULE": "bench.botrt_settings",
            "RCHAT_ON_MESSAGE": HOOK,
            "RCHAT_BENCH_SANDBOX_URL": sandbox.url,
        }
        try:
            # Two sets of workers; only the set under test takes tasks (the other idles).
            bench.workers_start(PROCESSES)
            bench.workers_start(2 * PROCESSES, env=POOLED_WORKERS)
            sets = {
                "rchat": bench.workers[:PROCESSES],
                "rchat_pooled": bench.workers[PROCESSES:],
                "inline": [],
            }
            with gunicorn(args.database, args.broker, log_dir=logs, env_extra=site_env) as server:
                say(
                    f"Bot round trip: gunicorn {server.url}; {PROCESSES} workers x {THREADS} "
                    f"threads with a connection per task, as many with a pool; {count} "
                    f"webhooks per side and round at {rate:g}/s over {ROOMS} chats"
                )
                # Message ids new on every run: a webhook seen before is a duplicate.
                run = f"{int(time.time())}"
                for side in SIDES:  # rooms created, connections and sessions opened
                    bench.consuming(only=sets[side] or bench.workers)
                    bench.sandbox.client.reset()
                    drive(server.port, SIDES[side], f"{run}-warm-{side}", ROOMS, rate)
                    replies(bench.sandbox, ROOMS, f"{run}-warm-{side}")
                names = list(SIDES)
                for number in range(rounds):
                    order = names[number % len(names) :] + names[: number % len(names)]
                    say(f"Bot round trip: round {number + 1}/{rounds} ({', '.join(order)})")
                    for side in order:
                        bench.consuming(only=sets[side] or bench.workers)
                        result = measure(
                            bench, server, side, sets[side], f"{run}-r{number}{side}", count, rate
                        )
                        runs[side].append(result)
                        say(
                            f"    {side}: p50 {result['p50_ms']:.1f} ms, p99 "
                            f"{result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms, "
                            f"{result['database_connections_opened']} connections opened; "
                            + cpu_line(result["cpu"], ("sandbox", "gunicorn", "workers"))
                        )
                        if result["phases_ms"]:
                            say(
                                "      p50 / p99 ms: "
                                + ", ".join(
                                    f"{k} {v[0]:g} / {v[1]:g}"
                                    for k, v in result["phases_ms"].items()
                                )
                            )
                if args.profile:
                    profiled = profile_pass(bench, server, sets["rchat_pooled"], run, count, rate)
        finally:
            bench.workers_stop()
    payload = {
        "what": "ms from the end user's webhook POST to the bot's reply received by the "
        "sandbox: RCHAT['ON_MESSAGE'] through Celery against the reply posted inline",
        "quick": args.quick,
        "server": "gunicorn gthread, 2 workers x 4 threads, keep-alive, CONN_MAX_AGE=60",
        "workers": f"{PROCESSES} processes x {THREADS} threads per side",
        "sides": {
            "inline": "POST /bench/reply-inline/: the reply posted to the sandbox before the "
            "answer, nothing stored (the floor)",
            "rchat": "POST /rchat/webhook/, the bot in Celery workers as configured by "
            "default: Celery 5.7 opens a database connection per task",
            "rchat_pooled": "the same with Django's connection pool in the workers "
            f"({POOLED_WORKERS['RCHAT_BENCH_DB_POOL']} connections per process)",
        },
        "count": count,
        "rate": rate,
        "rounds": rounds,
        "resolution_ms": 1,
        "p50_ms": {s: spread([r["p50_ms"] for r in rs], 2) for s, rs in runs.items()},
        "p99_ms": {s: spread([r["p99_ms"] for r in rs], 2) for s, rs in runs.items()},
        "all_rounds": {
            side: {
                "p50_ms": round(percentile([t for r in rs for t in r["trips_ms"]], 0.50), 2),
                "p99_ms": round(percentile([t for r in rs for t in r["trips_ms"]], 0.99), 2),
            }
            for side, rs in runs.items()
        },
        "p99_ratio": {side: _ratio(runs, side, "p99_ms") for side in RCHAT_SIDES},
        "p50_ratio": {side: _ratio(runs, side, "p50_ms") for side in RCHAT_SIDES},
        "target": {"p99_ratio_max": 3.0},
        "seconds": round(time.monotonic() - clock),
        "runs": runs,
    }
    if args.profile:
        payload["profile"] = profiled
    write_json("botrt", payload)
    p99, ratio = payload["p99_ms"], payload["p99_ratio"]
    say(
        f"Bot round trip done in {payload['seconds']} s: p99 {show(p99['inline'], ' ms', 1)} "
        f"inline (the floor), {show(p99['rchat'], ' ms', 1)} through Celery (ratio "
        f"{show(ratio['rchat'])}), {show(p99['rchat_pooled'], ' ms', 1)} with pooled "
        f"connections (ratio {show(ratio['rchat_pooled'])}); target <= 3."
    )


if __name__ == "__main__":
    main()
