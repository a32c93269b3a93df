"""A load generator: several processes, each a keep-alive HTTP/1.1 client on loopback.

The same generator drives both sides of a comparison. Each process sends its share of
the requests one after another on one connection (reconnecting only when the server
closes it) and records every request's latency; the load is bounded by a count and a
deadline, whichever comes first.
"""

import http.client
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field

from .common import percentile


def webhook_body(tag, client, number, rooms, *, with_id=True):
    """An R-Chat webhook body as the sandbox sends it: unique message id, ``rooms`` chats."""
    sequence = client * 1_000_000 + number
    message = {"type": "text", "data": f"ข้อความ {sequence} / message {sequence}"}
    if with_id:
        message["id"] = f"{tag}-{sequence}"
    return json.dumps(
        {
            "message": message,
            "chat_id": f"{tag}-chat-{sequence % rooms}",
            "channel": "line",
            "user": {"name": "สมชาย"},
        },
        ensure_ascii=False,
    ).encode()


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)

    @property
    def throughput(self):
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self):
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 2),
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
        }


def _client(job):
    port, path, headers, tag, client, count, rooms, deadline, fixed_body = job
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, statuses = [], Counter()
    started = time.time()
    for number in range(count):
        if time.time() > deadline:
            break
        body = fixed_body if fixed_body is not None else webhook_body(tag, client, number, rooms)
        clock = time.perf_counter()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            statuses[f"error:{type(exc).__name__}"] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - clock)
        statuses[response.status] += 1
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    finished = time.time()
    connection.close()
    return started, finished, latencies, statuses


def run_load(*, port, path, headers, tag, requests, clients, rooms, max_seconds, body=None):
    """POST ``requests`` bodies to ``path`` from ``clients`` processes; a LoadResult.

    Each body is ``webhook_body(tag, ...)`` unless ``body`` fixes one for every call.
    """
    clients = max(1, min(clients, requests))
    deadline = time.time() + max_seconds
    jobs = [
        (
            port,
            path,
            headers,
            tag,
            client,
            requests // clients + (client < requests % clients),
            rooms,
            deadline,
            body,
        )
        for client in range(clients)
    ]
    # Not "fork": the caller may have threads (a test run does), and forking a
    # multi-threaded process can deadlock the child (Python 3.12+ warns about it).
    context = multiprocessing.get_context("forkserver")
    with context.Pool(clients) as pool:
        outcomes = pool.map(_client, jobs)
    result = LoadResult()
    result.seconds = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    for _started, _finished, latencies, statuses in outcomes:
        result.latencies.extend(latencies)
        result.statuses.update(statuses)
    result.requests = len(result.latencies)
    return result
