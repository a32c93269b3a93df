"""What the benchmarks and fault scenarios share: services, databases, processes.

Nothing here imports Django at module level, so the runner can check its input and
prepare databases before any settings are read.
"""

import json
import os
import signal
import socket
import subprocess
import sys
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
def gunicorn(database_url, broker_url, *, workers=2, threads=4, log_dir, env_extra=None):
    """The site under gunicorn (gthread, keep-alive) on a free loopback port; yields it."""
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
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    ]
    env = child_env(database_url, broker_url, CONN_MAX_AGE=60, **(env_extra or {}))
    process = _spawn(command, env=env, log=Path(log_dir) / f"gunicorn-{port}.log")
    process.port = port
    process.url = f"http://{LOOPBACK}:{port}"
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


def write_json(name, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path


def percentile(values, share):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]
