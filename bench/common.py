"""What the benchmarks and fault scenarios share: services, databases, processes, and
the two measuring helpers every benchmark reports with: a figure's range over rounds
(``spread``, ``ratio_spread``, ``show_spread``) and the CPU a process used
(``run_child`` for a child that runs to its end, such as a load generator;
``cpu_seconds``, ``tree_cpu_seconds``, ``named_cpu_seconds`` and
``machine_cpu_seconds`` read at both ends of a span for processes that outlive it,
such as a server or PostgreSQL; ``cpu_share`` to report any of them).

Nothing here imports Django at module level, so the runner can check its input and
prepare databases before any settings are read.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
SETTINGS = "bench.settings"
# The Chatday-Token the benchmark's credential uses with the sandbox.
TOKEN = "chatday-bench-token"  # noqa: S105 - the sandbox's, public
SIGNATURE = "sig-bench-" + "x" * 24
LOOPBACK = "127.0.0.1"


class BenchError(Exception):
    """A one-line reason the run cannot go on."""


def say(text):
    print(text, flush=True)


def progress(label, done, total, *, every=1):
    """Print ``label: done/total`` on one line, ending with a newline when complete."""
    if done % every and done != total:
        return
    end = "\n" if done >= total else "\r"
    print(f"  {label}: {done}/{total}", end=end, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(port, *, timeout=30.0, process=None, what="the server"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise BenchError(f"{what} exited with code {process.returncode}") from None
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{what} did not listen on port {port} in {timeout:.0f} s"
                ) from None
            time.sleep(0.1)


def wait_for_http(url, *, timeout=60.0, answers=4):
    """Wait until ``url`` has given ``answers`` HTTP answers in a row, whatever their
    status: a server's port may be open (gunicorn's master listens) before its workers
    have loaded the site."""
    import http.client

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    answered = 0
    while answered < answers:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            connection.request("GET", parts.path or "/")
            connection.getresponse().read()
            answered += 1
        except (OSError, http.client.HTTPException):
            answered = 0
            if time.monotonic() > deadline:
                raise BenchError(f"{url} gave no answer in {timeout:.0f} s") from None
            time.sleep(0.2)
        finally:
            connection.close()


# --- Services -----------------------------------------------------------------------------


def services_from_environment(environ=os.environ):
    """(DATABASE_URL, CELERY_BROKER_URL), or BenchError saying which one is unusable."""
    database = environ.get("DATABASE_URL", "")
    broker = environ.get("CELERY_BROKER_URL", "")
    if not database.startswith(("postgres://", "postgresql://")):
        raise BenchError(
            "needs PostgreSQL: set DATABASE_URL=postgres://USER@HOST:PORT/NAME "
            f"(got {redact_url(database) or 'nothing'})"
        )
    if not broker.startswith("redis://"):
        raise BenchError(
            "needs Redis: set CELERY_BROKER_URL=redis://HOST:PORT/DB "
            f"(got {redact_url(broker) or 'nothing'})"
        )
    for url, name in ((database, "PostgreSQL"), (broker, "Redis")):
        parts = urlsplit(url)
        default = 5432 if name == "PostgreSQL" else 6379
        try:
            with socket.create_connection((parts.hostname, parts.port or default), timeout=2):
                pass
        except OSError as exc:
            raise BenchError(f"{name} at {redact_url(url)} does not answer ({exc})") from None
    return database, broker


def redact_url(url):
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def database_named(url, name):
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(url):
    return urlsplit(url).path.lstrip("/") or "postgres"


def _admin_connection(url):
    import psycopg

    # libpq reads postgres:// and postgresql:// alike.
    return psycopg.connect(database_named(url, "postgres"), autocommit=True)


def database_exists(url):
    with _admin_connection(url) as connection:
        row = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database_name(url)]
        ).fetchone()
        return row is not None


def database_create(url, *, fresh=True):
    """Create the database of ``url`` (dropping it first when ``fresh``), then migrate it."""
    from psycopg import sql

    name = database_name(url)
    with _admin_connection(url) as connection:
        if fresh:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    result = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--settings", SETTINGS, "-v", "0", "--no-input"],
        cwd=ROOT,
        env=child_env(url, None),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise BenchError(f"migrate failed on {name}: {result.stderr.strip().splitlines()[-1:]}")


def database_drop(url):
    """Drop the database of ``url`` if it exists, ending its connections."""
    from psycopg import sql

    with _admin_connection(url) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database_name(url))
            )
        )


def child_env(database_url, broker_url, **extra):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONUNBUFFERED": "1"}
    if database_url:
        env["DATABASE_URL"] = database_url
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    env.update({key: str(value) for key, value in extra.items()})
    return env


def django_setup(database_url, broker_url=None):
    """Point this process at ``database_url`` and set Django up (once per process)."""
    os.environ["DATABASE_URL"] = database_url
    if broker_url:
        os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django

    django.setup()


def flush_redis(url):
    import redis

    redis.Redis.from_url(url).flushdb()


# --- Processes ----------------------------------------------------------------------------


def stop_process(process, how=signal.SIGTERM, *, timeout=20):
    """Stop ``process`` and its process group; SIGKILL it if it will not go."""
    if process.poll() is not None:
        return process.returncode
    try:
        os.killpg(process.pid, how)
    except ProcessLookupError:
        return process.wait()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


def _spawn(command, *, env, log):
    out = open(log, "wb")  # noqa: SIM115 - the child writes to it until it stops
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    process.log = Path(log)
    out.close()
    return process


def log_tail(process, lines=20):
    try:
        return "\n".join(process.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def gunicorn(
    database_url,
    broker_url,
    *,
    workers=2,
    threads=4,
    worker_class="gthread",
    conn_max_age=60,
    conn_health_checks=True,
    log_dir,
    env_extra=None,
):
    """The site under gunicorn on a free loopback port; yields the process.

    The defaults are the deployment docs/deployment.md recommends: gthread workers
    with keep-alive, persistent database connections (``CONN_MAX_AGE``, read by
    project/settings.py) checked before reuse (``CONN_HEALTH_CHECKS``, read by
    bench/settings.py). ``worker_class="sync"`` is gunicorn's own default: one request
    at a time per process and no keep-alive; ``threads`` is then not passed, since
    gunicorn turns a sync worker with threads into a gthread one. ``env_extra`` wins
    over these variables. The process carries ``port``, ``url``, ``command`` (the
    gunicorn arguments) and ``database_env`` (the two variables as set).
    """
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "project.wsgi:application",
        "--bind",
        f"{LOOPBACK}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        # A sync worker closes the connection after each answer, and ignores both.
        *(["--threads", str(threads), "--keep-alive", "30"] if worker_class != "sync" else []),
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    ]
    database_env = {
        "CONN_MAX_AGE": str(conn_max_age),
        "CONN_HEALTH_CHECKS": "1" if conn_health_checks else "0",
    }
    env = child_env(database_url, broker_url, **{**database_env, **(env_extra or {})})
    process = _spawn(command, env=env, log=Path(log_dir) / f"gunicorn-{port}.log")
    process.port = port
    process.url = f"http://{LOOPBACK}:{port}"
    process.command = ["gunicorn", *command[3:]]
    process.database_env = database_env
    try:
        wait_for_port(port, process=process, what="gunicorn")
        yield process
    finally:
        stop_process(process)


def start_worker(database_url, broker_url, *, concurrency=4, log_dir, env_extra=None):
    """A Celery worker (threads pool) for rchat's tasks; returns once it is ready."""
    name = f"rchat-bench-{uuid.uuid4().hex[:8]}@%h"
    command = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "project",
        "worker",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "-l",
        "info",
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    env = child_env(database_url, broker_url, RCHAT_LOG_LEVEL="WARNING", **(env_extra or {}))
    process = _spawn(command, env=env, log=Path(log_dir) / f"worker-{uuid.uuid4().hex[:6]}.log")
    deadline = time.monotonic() + 60
    while b"ready." not in process.log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise BenchError(f"a Celery worker did not start: {log_tail(process, 3)}")
        time.sleep(0.2)
    return process


def rss_bytes(pid):
    """Resident memory of ``pid`` and its children, in bytes (Linux /proc)."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _children(pid):
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in path.read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


class SandboxProcess:
    """``manage.py rchat_sandbox`` in its own process, so it competes with neither side."""

    def __init__(self, *, log_dir, webhook_url=None, env=None, options=(), name="sandbox"):
        command = [PYTHON, "manage.py", "rchat_sandbox", "--port", "0", "--token", TOKEN]
        if webhook_url:
            command += ["--webhook-url", webhook_url]
        command += list(options)
        self.process = _spawn(
            command, env=env or child_env(None, None), log=Path(log_dir) / f"{name}.log"
        )
        deadline = time.monotonic() + 30
        while True:
            first = self.process.log.read_text(errors="replace").splitlines()[:1]
            if first and "listening on" in first[0]:
                self.url = first[0].rsplit(" ", 1)[-1].strip()
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                stop_process(self.process)
                raise BenchError(f"the sandbox did not start: {log_tail(self.process, 3)}")
            time.sleep(0.1)
        from rchat.sandbox import SandboxClient

        self.client = SandboxClient(self.url, timeout=120)

    def stop(self):
        stop_process(self.process)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


class PrivateRedis:
    """A redis-server of our own on a spare port, which may be stopped and started again.

    The shared Redis is never touched: the fault scenarios stop this one.
    """

    def __init__(self, *, log_dir):
        self.port = free_port()
        self.log_dir = Path(log_dir)
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.process = None

    def start(self):
        command = [
            "redis-server",
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_dir),
        ]
        try:
            self.process = _spawn(command, env=dict(os.environ), log=self.log_dir / "redis.log")
        except FileNotFoundError:
            raise BenchError(
                "redis-server is not installed (apt-get install redis-server)"
            ) from None
        wait_for_port(self.port, process=self.process, what="redis-server")
        return self

    def stop(self):
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def write_json(name, payload, *, directory=RESULTS):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def percentile(values, share):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


# --- Ranges over rounds -------------------------------------------------------------------
# A benchmark measures its two sides back to back in each round (alternating which goes
# first), so each round gives one ratio; a ratio is reported as the median of those with
# the lowest and the highest, never as one number.


def spread(values, digits=3):
    """``{"median", "min", "max", "runs"}`` of one figure over the rounds.

    ``values`` holds one number per round, in round order; ``None`` (a round that could
    not measure it) is left out. ``runs`` keeps the rounds' values (rounded), so a
    reader can see the rounds themselves. No values: every key is ``None`` and ``runs``
    is empty. The same shape is used by every benchmark's JSON.
    """
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def ratio_spread(numerators, denominators, digits=3):
    """``spread`` of the per-round ratios ``numerators[i] / denominators[i]``.

    The two lists are paired by round (the side and its baseline measured in the same
    round); a round where either is missing or the baseline is 0 is left out. The median
    of the ratios, not the ratio of the medians: each ratio compares two measurements
    made minutes apart at most, under the same load of the machine.
    """
    return spread(
        [
            a / b if a is not None and b else None
            for a, b in zip(numerators, denominators, strict=True)
        ],
        digits,
    )


def show_spread(figure, digits=2, unit=""):
    """A spread as text, the median then the range: ``0.91 (0.88-0.95)``; ``n/a`` if empty."""
    if figure["median"] is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    median, low, high = (f.format(figure[key]) for key in ("median", "min", "max"))
    return f"{median}{unit} ({low}-{high})"


def rounds_meeting(figure, *, at_least=None, at_most=None):
    """How many of a spread's rounds meet a target: ``(met, rounds)``."""
    runs = figure["runs"]
    if at_least is not None:
        return sum(v >= at_least for v in runs), len(runs)
    return sum(v <= at_most for v in runs), len(runs)


# --- CPU ----------------------------------------------------------------------------------
# From the kernel's counters, so the load generator can be shown not to be the
# bottleneck: its CPU beside the server's and the whole machine's over the same span.

TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def cpu_seconds(pid):
    """User + system CPU seconds used so far by process ``pid`` (all its threads), or
    None once it is gone. Children are not included: see ``tree_cpu_seconds``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after the
    # last ")" are fixed: utime and stime are the 14th and 15th of the line.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid):
    """``{pid: cpu seconds}`` for ``pid`` and every descendant alive now (a gunicorn
    master and its workers). Read it at both ends of a span and subtract per pid
    (``cpu_used``): a process that ended meanwhile is not counted, so measure only
    processes that live through the span."""
    found = {}
    for each in [pid, *_children(pid)]:
        seconds = cpu_seconds(each)
        if seconds is not None:
            found[each] = seconds
    return found


def cpu_used(before, after):
    """CPU seconds used between two ``tree_cpu_seconds`` readings (pids in both, plus
    any pid born meanwhile counted from 0)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def named_cpu_seconds(*names):
    """CPU seconds so far of every process whose command name is one of ``names`` (such
    as "postgres"), with what their ended children used.

    A PostgreSQL backend that ends is reaped by the postmaster, and its CPU moves into
    the postmaster's "children" counters, so the difference of two readings counts
    every backend that ran in between, even one born and gone within the span (a new
    connection per request). Compare readings of the same names only."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, rest = text.rpartition(")")
        if head.partition("(")[2] not in names:
            continue
        fields = rest.split()
        # utime, stime, cutime, cstime: the 14th to 17th fields of the line.
        total += sum(int(v) for v in fields[11:15]) / TICKS
    return total


def machine_cpu_seconds():
    """``(busy, total)`` CPU seconds of the whole machine so far, all cores together
    (/proc/stat; idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is counted in user).
    total = sum(values[:8])
    return (total - values[3] - values[4]) / TICKS, total / TICKS


def cpu_share(cpu_s, wall_s):
    """``{"cpu_s", "one_core_pct", "machine_pct"}``: CPU seconds over a span of
    ``wall_s`` seconds, as a percentage of one core (100 = one core busy all along) and
    of the whole machine (100 = every core busy all along)."""
    wall_s = max(wall_s, 1e-9)
    return {
        "cpu_s": round(cpu_s, 3),
        "one_core_pct": round(100 * cpu_s / wall_s, 1),
        "machine_pct": round(100 * cpu_s / wall_s / CORES, 1),
    }


class ChildRun:
    """What ``run_child`` returns: ``returncode``, ``lines`` (stdout and stderr, in
    order), ``wall_s`` (spawn to exit), ``cpu_s`` (user + system, all its threads),
    ``timed_out``."""

    def __init__(self, returncode, lines, wall_s, cpu_s, timed_out):
        self.returncode = returncode
        self.lines = lines
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        self.timed_out = timed_out

    @property
    def cpu(self):
        """``cpu_share`` of the child over its own life."""
        return cpu_share(self.cpu_s, self.wall_s)


def run_child(command, *, timeout, on_line=None, env=None):
    """Run ``command`` to its end and measure the CPU it used; a ``ChildRun``.

    The CPU is the child's own, from the kernel's accounting when it is reaped
    (``os.wait4``): exact for this child alone, unlike ``RUSAGE_CHILDREN``, which would
    also count any other child reaped meanwhile. The child must not start processes of
    its own (their CPU would count only if it waited for them). ``on_line(line,
    process)`` is called for each line of output as it comes (for instance to signal
    the child); after ``timeout`` seconds the child is killed and ``timed_out`` set.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    expired = threading.Event()

    def kill():
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines = []
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if on_line is not None:
                on_line(line, process)
    finally:
        process.stdout.close()
        timer.cancel()
        _pid, status, usage = os.wait4(process.pid, 0)
    # Popen did not reap it; tell it the outcome so it never waits for it again.
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        process.returncode,
        lines,
        time.monotonic() - started,
        usage.ru_utime + usage.ru_stime,
        expired.is_set(),
    )
