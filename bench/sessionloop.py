"""The outbound baseline: P processes x T threads, each thread a requests.Session loop.

It sends what rchat's delivery sends, the way rchat sends it (``rchat.client``): the
same JSON body (``message``, ``chat_id``, ``idempotency_key``, UTF-8, not ASCII
escapes), the same headers (Bearer token, ``Idempotency-Key``, JSON content type), the
same time-outs, one kept-alive ``requests.Session`` per thread set up as rchat sets up
its own (``trust_env`` off, the environment's proxies looked up once per thread and
passed to each call, so neither side pays requests' walk of ``os.environ`` on every
call), and it reads each answer's JSON as rchat does. It keeps no rows, no order and no
retries: the floor of what sending costs.

Every process is started first, builds its sessions and threads, says it is ready
and waits; the clock runs from the moment all are told to go to the last answer of the
last thread, so process start-up is not counted. Each process reports its own CPU for
that span (``resource.getrusage``).
"""

import json
import multiprocessing
import resource
import threading
import time
from collections import Counter

from .common import TOKEN

SEND_PATH = "/api/v1/external/send-message"
#: rchat's defaults (RCHAT["CONNECT_TIMEOUT"], RCHAT["READ_TIMEOUT"]).
TIMEOUT = (5.0, 15.0)


def body(chat_id, text, key):
    """A Send Message body as rchat.client builds it (with the default key field)."""
    return {"message": {"type": "text", "data": text}, "chat_id": chat_id, "idempotency_key": key}


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process(url, shares, ready, start, results):
    import requests

    statuses = Counter()
    lock = threading.Lock()
    ends = []
    go = threading.Event()

    def run(bodies):
        session = requests.Session()
        session.headers["User-Agent"] = "rchat (Django)"
        session.trust_env = False
        proxies = requests.utils.get_environ_proxies(url)
        go.wait()
        for each in bodies:
            headers = {
                "Authorization": f"Bearer {TOKEN}",
                "Accept": "application/json",
                "Content-Type": "application/json; charset=utf-8",
                "Idempotency-Key": each["idempotency_key"],
            }
            data = json.dumps(each, ensure_ascii=False).encode()
            answer = session.post(
                url,
                data=data,
                headers=headers,
                timeout=TIMEOUT,
                allow_redirects=False,
                proxies=proxies,
            )
            answer.json()
            with lock:
                statuses[answer.status_code] += 1
        with lock:
            ends.append(time.time())

    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    ready.put(True)
    start.wait()
    cpu = _cpu()
    go.set()
    for thread in threads:
        thread.join()
    results.put({"end": max(ends), "cpu_s": _cpu() - cpu, "statuses": dict(statuses)})


def run(url, bodies, *, processes, threads, on_start=None):
    """Send ``bodies`` from ``processes`` x ``threads`` Session loops.

    Returns {"start", "end", "seconds", "cpu_s", "statuses"}: wall-clock start and end
    (time.time()), and the CPU all processes used while sending. Thread ``t`` of
    process ``p`` sends every ``processes * threads``-th body from ``p * threads + t``,
    so each room's bodies are spread over threads as rchat's batches spread rooms.
    ``on_start()`` is called just before the processes are told to go.
    """
    share = processes * threads
    # Not "fork": the caller has a database connection and may have threads.
    context = multiprocessing.get_context("forkserver")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    children = [
        context.Process(
            target=_process,
            args=(
                url,
                [bodies[p * threads + t :: share] for t in range(threads)],
                ready,
                start,
                results,
            ),
        )
        for p in range(processes)
    ]
    for child in children:
        child.start()
    for _child in children:
        ready.get(timeout=120)
    if on_start is not None:
        on_start()
    start_at = time.time()
    start.set()
    reports = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=30)
    statuses = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    end = max(report["end"] for report in reports)
    return {
        "start": start_at,
        "end": end,
        "seconds": end - start_at,
        "cpu_s": sum(report["cpu_s"] for report in reports),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "pids": [child.pid for child in children],
    }
