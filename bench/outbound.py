"""Outbound delivery through Celery against a plain requests.Session loop; worker memory.

``python -m bench.outbound --database URL --broker URL [--messages N] [--memory N]``
(``bench.run`` calls it on a fresh database and an emptied Redis database).

Both sides post to the same sandbox (its own process) with the same concurrency:
``--processes`` worker processes of ``--threads`` threads each for Celery, as many
processes and threads each holding a requests.Session for the baseline. The Celery
side starts with N rows ``queued`` (as ``services.message_send`` leaves them) and its
clock runs from the first wake-up to the last message marked sent.
"""

import argparse
import multiprocessing
import tempfile
import threading
import time
from collections import Counter

from .common import (
    TOKEN,
    SandboxProcess,
    django_setup,
    flush_redis,
    progress,
    rss_bytes,
    say,
    start_worker,
    stop_process,
    write_json,
)

SEND_PATH = "/api/v1/external/send-message"


def credential_and_rooms(sandbox_url, rooms):
    from django.utils import timezone

    from rchat.models import ChatRoom, Credential

    credential, _ = Credential.objects.update_or_create(
        name="bench-outbound",
        defaults={
            "token": TOKEN,
            "base_url": sandbox_url,
            "status": Credential.Status.ACTIVE,
            "registered_at": timezone.now(),
        },
    )
    existing = set(ChatRoom.objects.filter(credential=credential).values_list("chat_id", flat=True))
    ChatRoom.objects.bulk_create(
        ChatRoom(credential=credential, chat_id=f"out-{n}", last_message_at=timezone.now())
        for n in range(rooms)
        if f"out-{n}" not in existing
    )
    return list(
        ChatRoom.objects.filter(credential=credential).order_by("pk").values_list("pk", flat=True)
    )


def queue_rows(room_ids, count, tag):
    """``count`` queued outbound text messages, round-robin over the rooms; their ids."""
    from django.utils import timezone

    from rchat.models import Message

    now = timezone.now()
    rows = [
        Message(
            room_id=room_ids[n % len(room_ids)],
            direction=Message.Direction.OUT,
            type="text",
            data=f"{tag} ข้อความ {n}",
            text=f"{tag} ข้อความ {n}",
            status=Message.Status.QUEUED,
            next_attempt_at=now,
        )
        for n in range(count)
    ]
    created = []
    for start in range(0, len(rows), 1000):
        created.extend(Message.objects.bulk_create(rows[start : start + 1000]))
    return [row.pk for row in created]


def wake(message_ids):
    """One wake-up per message, as ``message_send`` sends them, over one connection."""
    from rchat.tasks import deliver_message

    with deliver_message.app.producer_or_acquire() as producer:
        for message_id in message_ids:
            deliver_message.apply_async((message_id,), producer=producer)


def wait_sent(total, *, timeout, label, first_id=0):
    """Wait until ``total`` outbound messages from ``first_id`` on are sent."""
    from rchat.models import Message

    deadline = time.monotonic() + timeout
    while True:
        sent = Message.objects.filter(direction="out", status="sent", pk__gte=first_id).count()
        progress(label, min(sent, total), total)
        if sent >= total:
            return sent
        if time.monotonic() > deadline:
            states = Counter(Message.objects.values_list("status", flat=True))
            print()
            raise TimeoutError(f"{label}: {sent}/{total} sent after {timeout:.0f} s ({states})")
        time.sleep(0.25)


def duplicates(received):
    seen = Counter((m.get("chat_id"), str(m.get("message", {}).get("data"))) for m in received)
    return sum(count - 1 for count in seen.values() if count > 1)


# --- The baseline -----------------------------------------------------------------------


def _baseline_process(job):
    import requests

    url, jobs_per_thread = job
    statuses = Counter()
    lock = threading.Lock()

    def run(bodies):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        for body in bodies:
            answer = session.post(url, json=body, timeout=30)
            with lock:
                statuses[answer.status_code] += 1

    threads = [threading.Thread(target=run, args=(bodies,)) for bodies in jobs_per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def baseline_run(sandbox_url, messages, rooms, processes, threads):
    bodies = [
        {"message": {"type": "text", "data": f"base ข้อความ {n}"}, "chat_id": f"out-{n % rooms}"}
        for n in range(messages)
    ]
    share = processes * threads
    jobs = [
        (sandbox_url + SEND_PATH, [bodies[p * threads + t :: share] for t in range(threads)])
        for p in range(processes)
    ]
    clock = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        outcomes = pool.map(_baseline_process, jobs)
    seconds = time.perf_counter() - clock
    statuses = sum(outcomes, Counter())
    return seconds, statuses


# --- The parts ----------------------------------------------------------------------------


def outbound(args, sandbox, logs):
    from rchat.models import Message

    room_ids = credential_and_rooms(sandbox.url, args.rooms)
    # Older pending messages would hold newer ones back (per-room order).
    Message.objects.filter(direction="out").delete()
    sides = {}

    sandbox.client.reset()
    seconds, statuses = baseline_run(
        sandbox.url, args.messages, args.rooms, args.processes, args.threads
    )
    received = sandbox.client.received()
    sides["baseline"] = {
        "messages": args.messages,
        "seconds": round(seconds, 3),
        "per_second": round(args.messages / seconds, 1),
        "received": len(received),
        "duplicated": duplicates(received),
        "statuses": {str(k): v for k, v in statuses.items()},
    }
    say(f"  baseline: {sides['baseline']['per_second']} messages/s")

    sandbox.client.reset()
    workers = [
        start_worker(args.database, args.broker, concurrency=args.threads, log_dir=logs)
        for _ in range(args.processes)
    ]
    try:
        ids = queue_rows(room_ids, args.messages, "celery")
        clock = time.perf_counter()
        wake(ids)
        wait_sent(len(ids), timeout=args.max_seconds, label="celery: sent", first_id=ids[0])
        seconds = time.perf_counter() - clock
    finally:
        for worker in workers:
            stop_process(worker)
    received = sandbox.client.received()
    sides["celery"] = {
        "messages": args.messages,
        "seconds": round(seconds, 3),
        "per_second": round(args.messages / seconds, 1),
        "received": len(received),
        "duplicated": duplicates(received),
    }
    say(f"  celery: {sides['celery']['per_second']} messages/s")
    ratio = round(sides["celery"]["per_second"] / sides["baseline"]["per_second"], 3)
    payload = {
        "what": "messages/s from queued to received by the sandbox: Celery against requests",
        "concurrency": f"{args.processes} processes x {args.threads} threads on each side",
        "rooms": args.rooms,
        "sides": sides,
        "ratio": ratio,
        "target": {"ratio_min": 0.7},
    }
    write_json(args.out, payload)
    say(
        f"Outbound done: Celery {sides['celery']['per_second']} vs requests "
        f"{sides['baseline']['per_second']} messages/s (ratio {ratio}), "
        f"{sides['celery']['received']} received, {sides['celery']['duplicated']} duplicated."
    )


def memory(args, sandbox, logs):
    from rchat.models import Message

    room_ids = credential_and_rooms(sandbox.url, args.rooms)
    Message.objects.filter(direction="out").delete()
    checkpoints = sorted({100, *(c for c in (1000, 2500, 5000) if c < args.memory), args.memory})
    worker = start_worker(args.database, args.broker, concurrency=args.threads, log_dir=logs)
    samples = []
    try:
        done = 0
        for checkpoint in checkpoints:
            sandbox.client.reset()
            ids = queue_rows(room_ids, checkpoint - done, f"mem{checkpoint}")
            wake(ids)
            wait_sent(
                checkpoint - done,
                timeout=args.max_seconds,
                label="worker memory: sent",
                first_id=ids[0],
            )
            done = checkpoint
            time.sleep(1.0)  # let the pool's threads go idle before reading RSS
            samples.append(
                {"deliveries": checkpoint, "rss_mib": round(rss_bytes(worker.pid) / 2**20, 1)}
            )
            say(f"    after {checkpoint} deliveries: RSS {samples[-1]['rss_mib']} MiB")
    finally:
        stop_process(worker)
    growth = round(samples[-1]["rss_mib"] / samples[0]["rss_mib"], 3)
    write_json(
        "memory",
        {
            "what": "RSS of one Celery worker (threads pool) after N deliveries",
            "concurrency": args.threads,
            "samples": samples,
            "growth_ratio": growth,
            "target": {"growth_ratio_max": 1.1},
        },
    )
    say(
        f"Worker memory done: {samples[0]['rss_mib']} MiB after {samples[0]['deliveries']}, "
        f"{samples[-1]['rss_mib']} MiB after {samples[-1]['deliveries']} deliveries "
        f"(ratio {growth})."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--memory", type=int, default=10000, help="deliveries for the RSS check")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", default="outbound", help="the results file's name")
    args = parser.parse_args(argv)
    django_setup(args.database, args.broker)
    flush_redis(args.broker)
    with tempfile.TemporaryDirectory() as logs, SandboxProcess(log_dir=logs) as sandbox:
        say(f"Outbound: sandbox {sandbox.url}, {args.messages} messages over {args.rooms} rooms")
        outbound(args, sandbox, logs)
        if not args.skip_memory:
            say(f"Worker memory: {args.memory} deliveries")
            memory(args, sandbox, logs)


if __name__ == "__main__":
    main()
