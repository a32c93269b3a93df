"""Load generators on loopback, each bounded by a count and a deadline, whichever first.

``run_wrk`` drives the webhook benchmark with wrk, a C load generator (epoll, one event
loop per thread), so that the client costs a small fraction of what the server does and
cannot be what limits the throughput; its CPU is measured and reported beside the
server's. A Lua script written for each run gives every request a body of its own.

``run_load`` is a Python one (several processes, each a keep-alive HTTP/1.1 client)
for the fault scenarios, which need exact bodies and every answer's status.
"""

import http.client
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .common import BenchError, percentile, run_child


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


# --- wrk ------------------------------------------------------------------------------------

#: Printed by a wrk thread once it has had its share of answers, and before the summary.
THREAD_DONE = "wrk-thread-done"
RESULT = "wrk-result "

# One R-Chat webhook per request, of the shape webhook_body() builds: a message id of its
# own, a chat id among ROOMS (requests spread evenly over them), the Thai text and name.
# Each wrk thread has a Lua state of its own: its counters are globals, which done()
# (run in the main thread's state) reads back with thread:get().
WEBHOOK_LUA = """\
-- Written by bench/loadgen.py for one wrk run.
local TAG, ROOM_PREFIX, ROOMS, THREADS, CAP = {tag}, {room_prefix}, {rooms}, {threads}, {cap}
local PATH, HEADERS = {path}, {headers}
local threads = {{}}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

sent, answered, s2xx, s3xx, s4xx, s5xx, stopped = 0, 0, 0, 0, 0, 0, false

function request()
  local seq = sent * THREADS + tid
  sent = sent + 1
  local body = '{{"message": {{"type": "text", "data": "ข้อความ ' .. seq .. ' / message '
    .. seq .. '", "id": "' .. TAG .. '-' .. seq .. '"}}, "chat_id": "' .. ROOM_PREFIX
    .. '-chat-' .. (seq % ROOMS) .. '", "channel": "line", "user": {{"name": "สมชาย"}}}}'
  return wrk.format("POST", PATH, HEADERS, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status < 300 and status >= 200 then s2xx = s2xx + 1
  elseif status < 400 then s3xx = s3xx + 1
  elseif status < 500 then s4xx = s4xx + 1
  else s5xx = s5xx + 1 end
  if CAP > 0 and answered >= CAP and not stopped then
    stopped = true
    io.write("{thread_done}\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local c = {{sent = 0, s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0}}
  for _, t in ipairs(threads) do
    for key, _ in pairs(c) do c[key] = c[key] + t:get(key) end
  end
  local e = summary.errors
  io.write(string.format(
    '{result}{{"requests": %d, "duration_us": %d, "bytes": %d, "sent": %d, '
    .. '"2xx": %d, "3xx": %d, "4xx": %d, "5xx": %d, '
    .. '"errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, '
    .. '"latency_us": {{"p50": %d, "p90": %d, "p99": %d, "p99.9": %d, "mean": %.1f, '
    .. '"max": %d}}}}\\n',
    summary.requests, summary.duration, summary.bytes, c.sent,
    c.s2xx, c.s3xx, c.s4xx, c.s5xx,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


def lua_string(text):
    """``text`` as a Lua string literal (UTF-8 kept; quotes, backslashes, controls escaped)."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\{ord(char):03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def webhook_lua(*, path, headers, tag, room_prefix, rooms, threads, cap):
    """The Lua script for ``run_wrk`` (see WEBHOOK_LUA); ``cap`` 0 means no cap."""
    header_table = (
        "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()) + "}"
    )
    return WEBHOOK_LUA.format(
        tag=lua_string(tag),
        room_prefix=lua_string(room_prefix),
        rooms=int(rooms),
        threads=int(threads),
        cap=int(cap),
        path=lua_string(path),
        headers=header_table,
        thread_done=THREAD_DONE,
        result=RESULT,
    )


def wrk_path():
    """Where wrk is, or BenchError saying how to install it."""
    found = shutil.which("wrk")
    if not found:
        raise BenchError("needs wrk, the HTTP load generator: apt-get install wrk")
    return found


@dataclass
class WrkResult:
    """One wrk run: its counts, latencies (µs), and the CPU wrk itself used."""

    requests: int
    seconds: float
    sent: int
    statuses: dict
    errors: dict
    latency_us: dict
    client_cpu: dict
    capped: bool
    threads: int
    connections: int

    @property
    def throughput(self):
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self):
        """Answers outside 2xx plus socket errors and time-outs (wrk's "status" errors
        are the 4xx and 5xx answers, already counted)."""
        e = self.errors
        return (
            self.requests
            - self.statuses["2xx"]
            + e["connect"]
            + e["read"]
            + e["write"]
            + e["timeout"]
        )

    def summary(self):
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "sent": self.sent,
            "capped": self.capped,
            "statuses": self.statuses,
            "errors": self.errors,
            "latency_ms": {k: round(v / 1000, 3) for k, v in self.latency_us.items()},
            "client_cpu": self.client_cpu,
        }


def run_wrk(
    *,
    url,
    path,
    headers,
    tag,
    room_prefix,
    rooms,
    threads=2,
    connections=8,
    seconds=10,
    max_requests=0,
):
    """POST webhooks to ``url + path`` with wrk for ``seconds`` (whole seconds, wrk's
    unit) or until ``max_requests`` answers (0: no cap), whichever comes first.

    wrk is a closed loop: each of ``connections`` keep-alive connections sends its next
    request once the last is answered (it reconnects when the server closes). The cap is
    split over the threads; a thread that reaches its share stops, and once all have,
    wrk is interrupted (SIGINT) so that its duration, and the throughput, end there.
    Requests still in flight then are abandoned; the server may yet store them, so the
    caller counts rows afterwards, allowing up to ``connections`` more than answered.
    Latency is wrk's (from sending a request to its answer, µs, percentiles over every
    answer). The client's CPU is wrk's own, from the kernel when it exits.
    """
    if connections < threads:
        raise BenchError(
            f"wrk needs at least one connection per thread ({connections} < {threads})"
        )
    per_thread = -(-max_requests // threads) if max_requests else 0
    script = webhook_lua(
        path=path,
        headers=headers,
        tag=tag,
        room_prefix=room_prefix,
        rooms=rooms,
        threads=threads,
        cap=per_thread,
    )
    with tempfile.TemporaryDirectory(prefix="rchat-wrk-") as scratch:
        lua = Path(scratch) / "webhook.lua"
        lua.write_text(script, encoding="utf-8")
        command = [
            wrk_path(),
            "--threads",
            str(threads),
            "--connections",
            str(connections),
            "--duration",
            f"{max(1, int(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "--script",
            str(lua),
            url.rstrip("/") + path,
        ]
        finished = []

        def on_line(line, process):
            if line.strip() == THREAD_DONE:
                finished.append(line)
                if len(finished) == threads:
                    os.kill(process.pid, signal.SIGINT)

        child = run_child(command, timeout=seconds + 60, on_line=on_line)
    found = [line[len(RESULT) :] for line in child.lines if line.startswith(RESULT)]
    if child.returncode or not found:
        tail = "; ".join(child.lines[-5:])
        raise BenchError(f"wrk failed (exit {child.returncode}): {tail}")
    report = json.loads(found[-1])
    return WrkResult(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        sent=report["sent"],
        statuses={key: report[key] for key in ("2xx", "3xx", "4xx", "5xx")},
        errors=report["errors"],
        latency_us=report["latency_us"],
        client_cpu={**child.cpu, "wall_s": round(child.wall_s, 3), "threads": threads},
        capped=len(finished) == threads,
        threads=threads,
        connections=connections,
    )
