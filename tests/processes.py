"""Helpers for tests that run real processes: Celery workers, the sandbox, polling."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url():
    """This test run's database (test_<name>), for a subprocess to share it."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{quote(db['USER'] or 'postgres')}{password}@{host}:{port}/{db['NAME']}"


def eventually(read, done, *, timeout=60.0, what="the condition"):
    """Poll ``read()`` until ``done(value)``; return the value (fail with the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Waited {timeout:g}s for {what}; last seen: {value!r}")
        time.sleep(0.1)


def stop(process, how=signal.SIGTERM):
    """Stop a process started with ``start_new_session`` and its children."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, how)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_worker(*, broker_url, log, concurrency=4):
    """``celery -A project worker`` on this run's database; returns once it is ready.

    A threads pool (no forks to clean up), and no gossip, mingle or heartbeat: the
    test's workers need nothing from each other.
    """
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "RCHAT_LOG_LEVEL": "INFO",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [
                *(sys.executable, "-m", "celery", "-A", "project", "worker"),
                *("-P", "threads", "-c", str(concurrency), "-l", "info"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("-n", f"rchat-test-{uuid.uuid4().hex[:8]}@%h"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop it whole
        )
    process.log = log
    eventually(
        log.read_bytes,
        lambda text: b"ready." in text or process.poll() is not None,
        what="the worker to start",
    )
    if process.poll() is not None:
        pytest.fail(f"The worker did not start:\n{log.read_text()[-3000:]}")
    return process
