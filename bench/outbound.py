"""Outbound delivery: rchat's workers against a requests.Session loop, history, backlog,
scaling and worker memory.

``python -m bench.outbound --database URL --broker URL [--quick] [--parts ...]``
(``bench.run`` calls it on a fresh database and an emptied Redis database).

Every part is measured in rounds, and each round measures both of its sides back to
back, alternating which goes first; a ratio is reported as the median of the rounds'
ratios with the lowest and highest (``bench.measure.spread``).

- **compare**: rchat (P Celery worker processes x T threads) against the baseline
  (``bench.sessionloop``: P processes x T threads, a ``requests.Session`` each), both
  posting to the same sandbox in its own process, at 1 and at 10 messages per room.
- **history**: rooms with 1,000 old sent messages each against rooms with none.
- **backlog**: 100,000 messages queued over 10,000 rooms against 1,000 over 1,000.
- **scaling**: one worker process against two.
- **memory**: each worker's RSS after its first 1,000 deliveries and after all of
  them (every part's; more than 100,000 each in the full run), read after every
  measurement, the deliveries counted from the worker's own log of each drain.

How rchat's side is timed: the rows are written ``queued`` in bulk (as
``services.message_send`` leaves them: a new idempotency key each, ``next_attempt_at``
now) and their rooms made due (``delivery.rooms_mark_ready``), in one transaction.
The tables are then vacuumed and analysed (``VACUUM ANALYZE``: the PostgreSQL these
runs use has autovacuum off, so dead rows from the previous measurement would
otherwise stay). The clock starts at ``broker.drain_wake()`` (one wake-up, as a send
makes) and stops when a poll every 20 ms finds no pending row left; the sandbox must
then hold every message once, each room's in order. CPU of every process involved is
read from the kernel over the same span (``bench.measure.CpuWatch``).
"""

import argparse
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from . import profile, sessionloop
from .common import (
    RESULTS,
    TOKEN,
    BenchError,
    SandboxProcess,
    django_setup,
    flush_redis,
    ratio_spread,
    rss_bytes,
    say,
    spread,
    start_worker,
    stop_process,
    write_json,
)
from .measure import (
    CpuWatch,
    cpu_line,
    exit_on_sigterm,
    log_folder,
    named,
    redis_db_free,
    show,
)

PARTS = ("compare", "history", "backlog", "scaling")
SIZES = {
    "quick": {
        "rounds": 2,
        "compare": 1000,
        "history_rooms": 300,
        "backlog": (10_000, 1_000),
        "backlog_rounds": 2,
        "shallow": 1_000,
        "scaling": 1000,
    },
    "full": {
        "rounds": 5,
        "compare": 10_000,
        "history_rooms": 2_000,
        "backlog": (100_000, 10_000),
        "backlog_rounds": 3,
        "shallow": 1_000,
        "scaling": 10_000,
    },
}
HISTORY_DEPTH = 1_000
POLL_SECONDS = 0.02
PROCESSES, THREADS = 2, 4
TEXT = "{tag} ข้อความ {n}"
NUMBER = re.compile(r"(\d+)$")
#: A drain's result as the worker logs it: "... drain_outbound[...] succeeded in 0.2s:
#: {'batches': 1, 'claimed': 100, 'sent': 100, ...}".
DRAIN_SENT = re.compile(rb"drain_outbound\[[^\]]*\] succeeded in [0-9.e-]+s: \{[^}]*'sent': (\d+)")


class Bench:
    """The sandbox, the credential and the workers every part uses."""

    def __init__(self, args, logs, sandbox):
        self.args = args
        self.logs = logs
        self.sandbox = sandbox
        self.credential = _credential(sandbox.url)
        self.workers = []
        self.names = {}
        self._rooms = {}
        # Per worker pid: where its log was read up to, its deliveries, RSS samples.
        self.memory = {}

    # --- processes ------------------------------------------------------------------

    def workers_start(self, count, env=None):
        """Start workers until there are ``count``; ``env`` adds to the new ones' own."""
        env = {"CONN_MAX_AGE": 60, **self.args.worker_env, **(env or {})}

        def start(_number):
            return start_worker(
                self.args.database,
                self.args.broker,
                concurrency=self.args.threads,
                log_dir=self.logs,
                env_extra=env,
            )

        # Started side by side: each takes a few seconds to be ready.
        with ThreadPoolExecutor() as pool:
            self.workers.extend(pool.map(start, range(count - len(self.workers))))
        self.names = _worker_names(self.workers)
        for worker in self.workers:
            self.memory.setdefault(worker.pid, {"read": 0, "delivered": 0, "samples": []})

    def memory_sample(self):
        """Each worker's deliveries so far (its log's drain results) and RSS now."""
        time.sleep(0.5)  # the drains' last records are logged, the threads idle
        for worker in self.workers:
            state = self.memory[worker.pid]
            with open(worker.log, "rb") as log:
                log.seek(state["read"])
                text = log.read()
            # Only whole lines: the rest is read next time.
            text = text[: text.rfind(b"\n") + 1]
            state["read"] += len(text)
            state["delivered"] += sum(int(n) for n in DRAIN_SENT.findall(text))
            state["samples"].append(
                {
                    "deliveries": state["delivered"],
                    "rss_mib": round(rss_bytes(worker.pid) / 2**20, 1),
                }
            )

    def workers_stop(self):
        for worker in self.workers:
            stop_process(worker)
        self.workers = []
        self.names = {}

    def consuming(self, count=None, *, only=None):
        """Let the first ``count`` workers (or those in ``only``) take tasks, the others
        none: they stay idle."""
        from project.celery import app

        chosen = self.workers[:count] if only is None else only
        for worker in self.workers:
            name = self.names[worker.pid]
            command = app.control.add_consumer if worker in chosen else app.control.cancel_consumer
            answer = command("celery", destination=[name], reply=True, timeout=5)
            if not answer:
                raise BenchError(f"worker {name} did not answer a consumer change")

    def watch(self, clients=None):
        groups = {
            "sandbox": [self.sandbox.process.pid],
            "workers": [w.pid for w in self.workers],
            "bench": [os.getpid()],
            "postgres": named("postgres"),
            "redis": named("redis-server"),
        }
        if clients:
            groups["clients"] = clients
        return CpuWatch(groups)

    # --- rooms ----------------------------------------------------------------------

    def rooms(self, tag, count):
        """``count`` chat rooms named ``tag-<n>`` (created once): [(id, chat_id)]."""
        key = (tag, count)
        if key not in self._rooms:
            from django.utils import timezone

            from rchat.models import ChatRoom

            now = timezone.now()
            names = [f"{tag}-{n}" for n in range(count)]
            ChatRoom.objects.bulk_create(
                [
                    ChatRoom(credential=self.credential, chat_id=name, last_message_at=now)
                    for name in names
                ],
                batch_size=5000,
                ignore_conflicts=True,
            )
            found = dict(
                ChatRoom.objects.filter(credential=self.credential, chat_id__in=names).values_list(
                    "chat_id", "pk"
                )
            )
            self._rooms[key] = [(found[name], name) for name in names]
        return self._rooms[key]

    # --- the two sides ----------------------------------------------------------------

    def rchat(self, rooms, count, tag, *, label, buckets=False):
        """Deliver ``count`` messages round-robin over ``rooms`` through the workers."""
        from rchat import broker

        first = queue(rooms, count, tag)
        vacuum()
        self.sandbox.client.reset()
        broker.drain_flag_clear()
        watch = self.watch().start()
        start = time.time()
        broker.drain_wake()
        # A generous bound: far beyond the slowest rate seen (50 messages/s).
        timeout = max(self.args.max_seconds, count / 50)
        wait_delivered(first, count, label=label, timeout=timeout)
        end = time.time()
        cpu = watch.stop()
        result = self._result(count, start, end, cpu, tag)
        result["statuses"] = statuses_from(first)
        if result["statuses"].get("sent") != count:
            raise BenchError(f"{label}: not every message was sent: {result['statuses']}")
        if buckets:
            result["per_second"] = per_second(first, start)
        self.memory_sample()
        return result

    def baseline(self, rooms, count, tag, *, label):
        """Send the same bodies from the Session loops (no rows, no order)."""
        from rchat.services.delivery import idempotency_key_new

        bodies = [
            sessionloop.body(rooms[n % len(rooms)][1], TEXT.format(tag=tag, n=n), key)
            for n, key in ((n, idempotency_key_new()) for n in range(count))
        ]
        self.sandbox.client.reset()
        watch = self.watch()
        run = sessionloop.run(
            self.sandbox.url + sessionloop.SEND_PATH,
            bodies,
            processes=self.args.processes,
            threads=self.args.threads,
            on_start=watch.start,
        )
        cpu = watch.stop(extra={"clients": run["cpu_s"]})
        cpu.pop("workers", None)  # idle meanwhile; the clients did the sending
        say(f"  {label}: {count}/{count} sent")
        result = self._result(count, run["start"], run["end"], cpu, tag)
        result["statuses"] = run["statuses"]
        if run["statuses"] != {"200": count}:
            raise BenchError(f"{label}: the sandbox answered {run['statuses']}")
        return result

    def _result(self, count, start, end, cpu, tag):
        received = self.sandbox.client.received()
        repeated = self.sandbox.client.info()["repeated_keys"]
        out_of_order = order_breaks(received)
        seconds = end - start
        if len(received) != count:
            raise BenchError(f"{tag}: the sandbox received {len(received)} of {count}")
        return {
            "messages": count,
            "seconds": round(seconds, 3),
            "rate": round(count / seconds, 1),
            # CPU per message, in milliseconds, of each process group.
            "cpu_ms_per_message": {
                group: round(figure["cpu_s"] * 1000 / count, 3)
                for group, figure in cpu.items()
                if isinstance(figure, dict) and "cpu_s" in figure
            },
            "received": len(received),
            "repeated_keys": repeated,
            "out_of_order": out_of_order,
            "cpu": cpu,
        }


# --- Rows ---------------------------------------------------------------------------------


def _credential(sandbox_url):
    from django.utils import timezone

    from rchat.models import Credential

    credential, _ = Credential.objects.update_or_create(
        name="bench-outbound",
        defaults={
            "token": TOKEN,
            "base_url": sandbox_url,
            "status": Credential.Status.ACTIVE,
            "registered_at": timezone.now(),
            "send_rate": None,
        },
    )
    return credential


def queue(rooms, count, tag):
    """``count`` queued messages, message n to room n mod len(rooms); the first id.

    Written as ``services.message_send`` writes them (a new idempotency key each, due
    now), in bulk, and their rooms made due, in one transaction. Ids grow with n, so
    each room's messages are in the order of n.
    """
    from django.db import transaction
    from django.utils import timezone

    from rchat.models import Message
    from rchat.services import delivery

    now = timezone.now()
    rows = []
    for n in range(count):
        text = TEXT.format(tag=tag, n=n)
        rows.append(
            Message(
                room_id=rooms[n % len(rooms)][0],
                direction=Message.Direction.OUT,
                type="text",
                data=text,
                text=text,
                status=Message.Status.QUEUED,
                next_attempt_at=now,
                dedup_key=delivery.idempotency_key_new(),
            )
        )
    with transaction.atomic():
        made = Message.objects.bulk_create(rows, batch_size=5000)
        delivery.rooms_mark_ready(room_ids=[pk for pk, _chat in rooms[:count]], now=now)
    return made[0].pk


def vacuum():
    """VACUUM ANALYZE the delivery tables (autovacuum is off on the benchmark's server)."""
    from django.db import connection

    from rchat.models import ChatRoom, DeliveryAttempt, Message

    tables = ", ".join(
        connection.ops.quote_name(m._meta.db_table) for m in (Message, ChatRoom, DeliveryAttempt)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {tables}")


def wait_delivered(first, count, *, label, timeout):
    """Poll (every 20 ms, one index probe) until no message from ``first`` on is pending."""
    from django.db import connection

    pending = (
        "SELECT EXISTS (SELECT 1 FROM rchat_message WHERE id >= %s "
        "AND status IN ('queued', 'sending'))"
    )
    sent = "SELECT count(*) FROM rchat_message WHERE id >= %s AND status = 'sent'"
    clock = time.monotonic()
    shown = clock
    with connection.cursor() as cursor:
        while True:
            cursor.execute(pending, [first])
            if not cursor.fetchone()[0]:
                break
            now = time.monotonic()
            if now - clock > timeout:
                raise BenchError(f"{label}: still pending after {timeout:.0f} s")
            if count >= 5000 and now - shown >= 2.0:
                cursor.execute(sent, [first])
                done = cursor.fetchone()[0]
                print(f"  {label}: {done}/{count} sent, {now - clock:.0f} s", end="\r", flush=True)
                shown = now
            time.sleep(POLL_SECONDS)
    print(f"  {label}: {count}/{count} sent in {time.monotonic() - clock:.1f} s".ljust(60))


def statuses_from(first):
    from django.db.models import Count

    from rchat.models import Message

    return dict(
        Message.objects.filter(pk__gte=first, direction="out")
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )


def per_second(first, start):
    """Messages sent in each second after ``start``: [(second, count)], from sent_at."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT floor(extract(epoch FROM sent_at) - %s)::int AS s, count(*) "
            "FROM rchat_message WHERE id >= %s AND sent_at IS NOT NULL GROUP BY s ORDER BY s",
            [start, first],
        )
        return [list(row) for row in cursor.fetchall()]


def order_breaks(received):
    """How many messages reached their chat after a later one of the same chat."""
    last, breaks = {}, 0
    for each in received:
        found = NUMBER.search(str(each["message"]["data"]))
        number = int(found[1]) if found else 0
        if number < last.get(each["chat_id"], -1):
            breaks += 1
        last[each["chat_id"]] = max(number, last.get(each["chat_id"], -1))
    return breaks


def history_add(rooms, depth):
    """``depth`` old messages in each room (half inbound, half outbound and sent with a
    DeliveryAttempt each), written by PostgreSQL itself."""
    from django.db import connection

    ids = [pk for pk, _chat in rooms]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO rchat_message (room_id, direction, type, data, text, status,
                external_id, dedup_key, extra, attempts, last_error, created_at,
                next_attempt_at, sent_at, updated_at)
            SELECT r.id,
                CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END, 'text',
                to_jsonb('old ' || g), 'old ' || g,
                CASE WHEN g %% 2 = 0 THEN 'received' ELSE 'sent' END,
                'ext-' || r.id || '-' || g,
                CASE WHEN g %% 2 = 0 THEN 'in-' || r.id || '-' || g
                     ELSE 'rchat-' || md5(r.id || '-' || g) END,
                '{}', CASE WHEN g %% 2 = 0 THEN 0 ELSE 1 END, '',
                now() - make_interval(secs => %s - g), NULL,
                CASE WHEN g %% 2 = 0 THEN NULL ELSE now() - make_interval(secs => %s - g) END,
                now() - make_interval(secs => %s - g)
            FROM unnest(%s::bigint[]) AS r(id), generate_series(1, %s) AS g
            ORDER BY r.id, g
            """,
            [depth * 60, depth * 60, depth * 60, ids, depth],
        )
        cursor.execute(
            """
            INSERT INTO rchat_deliveryattempt (message_id, started_at, duration_ms,
                http_status, outcome, error_type, error)
            SELECT id, sent_at, 3, 200, 'sent', '', '' FROM rchat_message
            WHERE room_id = ANY(%s) AND direction = 'out' AND status = 'sent'
            """,
            [ids],
        )


def _worker_names(workers):
    from project.celery import app

    for _try in range(10):
        stats = app.control.inspect(timeout=2).stats() or {}
        names = {info["pid"]: name for name, info in stats.items()}
        if all(w.pid in names for w in workers):
            return names
    raise BenchError("the workers did not answer celery inspect stats")


# --- The parts ----------------------------------------------------------------------------


def _pairs(bench, rounds, sides, *, title):
    """Run ``sides`` ({name: callable(round) -> result}) ``rounds`` times, alternating
    which goes first; {name: [result per round]}."""
    runs = {name: [] for name in sides}
    names = list(sides)
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        say(f"{title}: round {number + 1}/{rounds} ({' first, then '.join(order)})")
        for name in order:
            result = sides[name](number)
            runs[name].append(result)
            say(f"    {name}: {result['rate']:.0f} msg/s; {cpu_line(result['cpu'], CPU_NAMES)}")
    return runs


CPU_NAMES = ("sandbox", "workers", "clients", "postgres", "others")


def _summary(runs, top, bottom):
    return {
        "rate": {name: spread([r["rate"] for r in results], 1) for name, results in runs.items()},
        "ratio": ratio_spread([r["rate"] for r in runs[top]], [r["rate"] for r in runs[bottom]]),
        "cpu_ms_per_message": {
            name: {
                group: spread([r["cpu_ms_per_message"][group] for r in results])
                for group in results[0]["cpu_ms_per_message"]
            }
            for name, results in runs.items()
        },
        "cpu_one_core_pct": {
            name: {
                group: spread(
                    [r["cpu"][group]["one_core_pct"] for r in results if group in r["cpu"]], 1
                )
                for group in (*CPU_NAMES, "redis", "bench", "machine")
                if any(group in r["cpu"] for r in results)
            }
            for name, results in runs.items()
        },
    }


def part_compare(bench, size):
    """rchat against the Session loops, at 1 and at 10 messages per room."""
    bench.consuming(len(bench.workers))
    count = size["compare"]
    shapes = {}
    for per_room in (1, 10):
        rooms = bench.rooms(f"cmp{per_room}", count // per_room)
        label = f"{per_room} per room"
        sides = {
            "rchat": lambda n, rooms=rooms, label=label: bench.rchat(
                rooms, count, f"r{n}", label=f"rchat, {label}"
            ),
            "baseline": lambda n, rooms=rooms, label=label: bench.baseline(
                rooms, count, f"b{n}", label=f"baseline, {label}"
            ),
        }
        runs = _pairs(bench, size["rounds"], sides, title=f"Outbound {label}")
        shapes[label] = {
            "messages": count,
            "rooms": len(rooms),
            **_summary(runs, "rchat", "baseline"),
        }
        shapes[label]["runs"] = runs
        say(f"  {label}: ratio {show(shapes[label]['ratio'])}")
    return shapes


def part_history(bench, size):
    """Rooms with 1,000 old messages each against new rooms, one message per room."""
    bench.consuming(len(bench.workers))
    count = size["history_rooms"]
    old = bench.rooms("hist", count)
    say(f"History: writing {HISTORY_DEPTH} old messages in each of {count} rooms")
    clock = time.monotonic()
    history_add(old, HISTORY_DEPTH)
    vacuum()
    say(f"  {count * HISTORY_DEPTH} old messages written in {time.monotonic() - clock:.0f} s")
    sides = {
        "history": lambda n: bench.rchat(old, count, f"h{n}", label="rooms with history"),
        # New rooms every round: none has anything but this message.
        "new": lambda n: bench.rchat(
            bench.rooms(f"new{n}", count), count, f"n{n}", label="new rooms"
        ),
    }
    runs = _pairs(bench, size["rounds"], sides, title="History")
    result = {
        "rooms": count,
        "old_messages_per_room": HISTORY_DEPTH,
        **_summary(runs, "history", "new"),
        "runs": runs,
    }
    say(f"  history / new: ratio {show(result['ratio'])}")
    return result


def part_backlog(bench, size):
    """A deep backlog (10 per room) against 1,000 messages over 1,000 rooms."""
    bench.consuming(len(bench.workers))
    deep, deep_rooms = size["backlog"]
    shallow = size["shallow"]
    sides = {
        "deep": lambda n: bench.rchat(
            bench.rooms("deep", deep_rooms), deep, f"d{n}", label="deep backlog", buckets=True
        ),
        "shallow": lambda n: bench.rchat(
            bench.rooms("shallow", shallow), shallow, f"s{n}", label="1,000 queued", buckets=True
        ),
    }
    runs = _pairs(bench, size["backlog_rounds"], sides, title="Backlog")
    result = {
        "deep": {"messages": deep, "rooms": deep_rooms},
        "shallow": {"messages": shallow, "rooms": shallow},
        **_summary(runs, "deep", "shallow"),
        "runs": runs,
    }
    say(f"  deep / shallow: ratio {show(result['ratio'])}")
    return result


def part_scaling(bench, size):
    """One worker process against two (T threads each), one message per room."""
    count = size["scaling"]
    rooms = bench.rooms("scale", count)

    def side(processes):
        def run(n):
            bench.consuming(processes)
            return bench.rchat(rooms, count, f"p{processes}-{n}", label=f"{processes} process(es)")

        return run

    runs = _pairs(bench, size["rounds"], {"two": side(2), "one": side(1)}, title="Scaling")
    bench.consuming(len(bench.workers))
    result = {"messages": count, "threads": bench.args.threads, **_summary(runs, "two", "one")}
    result["runs"] = runs
    say(f"  two / one process: ratio {show(result['ratio'])}")
    return result


def profile_pass(bench, count):
    """One more delivery of ``count`` (one per room), not counted, with py-spy on every
    worker: where the workers' CPU goes (bench/results/outbound_profile.txt)."""
    if not profile.available():
        say("Profile: py-spy is not installed (pip install py-spy); skipped")
        return {"skipped": "py-spy is not installed"}
    bench.consuming(len(bench.workers))
    rooms = bench.rooms("cmp1", count)
    say(f"Profile: {count} more messages with py-spy on the workers (not a measured round)")
    with profile.Spy([w.pid for w in bench.workers], bench.logs, "outbound") as spy:
        bench.rchat(rooms, count, f"prof{int(time.time())}", label="profiled")
    summary = spy.summary()
    (RESULTS / "outbound_profile.txt").write_text(
        profile.report(summary, f"Celery workers delivering {count} messages, one per room")
    )
    return summary


def memory_result(bench):
    """Each worker's RSS after its first 1,000 deliveries against after all of them."""
    workers = []
    for pid, state in bench.memory.items():
        samples = state["samples"]
        first = next((x for x in samples if x["deliveries"] >= 1000), None)
        if first is None or samples[-1]["deliveries"] <= first["deliveries"]:
            continue
        workers.append(
            {
                "pid": pid,
                "first": first,
                "last": samples[-1],
                "growth_ratio": round(samples[-1]["rss_mib"] / first["rss_mib"], 3),
                "samples": samples,
            }
        )
    if not workers:
        return None
    worst = max(workers, key=lambda w: w["growth_ratio"])
    return {
        "what": "RSS of each Celery worker (threads pool) after its first 1,000 "
        "deliveries and after all of them, over every outbound part",
        "threads": bench.args.threads,
        "workers": workers,
        "samples": worst["samples"],
        "first": worst["first"],
        "last": worst["last"],
        "growth_ratio": worst["growth_ratio"],
        "target": {"growth_ratio_max": 1.1},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--logs", help="keep the servers' and workers' logs in this folder")
    parser.add_argument(
        "--profile", action="store_true", help="one more pass with py-spy on the workers"
    )
    args = parser.parse_args(argv)
    args.worker_env = {}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    size = SIZES["quick" if args.quick else "full"]
    exit_on_sigterm()
    django_setup(args.database, args.broker)
    redis_db_free(args.broker, say=say)
    flush_redis(args.broker)
    clock = time.monotonic()
    results = {}
    with log_folder(args.logs) as logs, SandboxProcess(log_dir=logs) as sandbox:
        bench = Bench(args, logs, sandbox)
        say(
            f"Outbound: sandbox {sandbox.url}; {args.processes} worker processes x "
            f"{args.threads} threads against as many Session loops; VACUUM ANALYZE before "
            "every measurement (autovacuum is off)"
        )
        try:
            bench.workers_start(args.processes)
            for part in ("compare", "history", "backlog", "scaling"):
                if part in parts:
                    results[part] = globals()[f"part_{part}"](bench, size)
            if args.profile:
                results["profile"] = profile_pass(bench, size["compare"])
            memory = memory_result(bench)
        finally:
            bench.workers_stop()
    seconds = time.monotonic() - clock
    if results:
        write_json(
            "outbound",
            {
                "what": "messages/s from the wake-up to the last row sent (rchat) or the "
                "last answer (baseline), every message received by the sandbox once",
                "quick": args.quick,
                "concurrency": f"{args.processes} processes x {args.threads} threads",
                "method": "rounds alternate which side goes first; VACUUM ANALYZE of the "
                "delivery tables before every measurement (autovacuum is off); CPU from "
                "/proc over each measurement (% of one core; machine: % of all cores)",
                "seconds": round(seconds),
                **results,
            },
        )
    if memory:
        write_json("memory", memory)
    say("Outbound done in " + f"{seconds:.0f} s: " + headline(results, memory))


def headline(results, memory):
    parts = []
    for label, shape in results.get("compare", {}).items():
        parts.append(f"{label} {show(shape['ratio'])} of the Session loop")
    if "history" in results:
        parts.append(f"history/new {show(results['history']['ratio'])}")
    if "backlog" in results:
        parts.append(f"deep/shallow {show(results['backlog']['ratio'])}")
    if "scaling" in results:
        parts.append(f"2/1 processes {show(results['scaling']['ratio'])}")
    if memory:
        parts.append(f"RSS growth {memory['growth_ratio']:.2f}")
    return "; ".join(parts) or "nothing measured"


if __name__ == "__main__":
    main()
