"""Measuring the outbound, broadcast and bot benchmarks: CPU of groups of processes
over a span, and the few things those benchmarks need around it.

The primitives are bench.common's (``cpu_seconds``, ``named_cpu_seconds``,
``machine_cpu_seconds``, ``cpu_share``; ``spread`` and ``ratio_spread`` for a figure's
range over rounds). ``CpuWatch`` reads them for named groups at the start and the end
of one measurement, so a benchmark can say which process was busy: the sandbox is one
Python process, bound by its GIL near one core; a side limited by its own client shows
the client there instead; "others" is what the machine did besides (other work on a
shared machine).
"""

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .common import (
    cpu_seconds,
    cpu_share,
    machine_cpu_seconds,
    named_cpu_seconds,
    show_spread,
    tree_cpu_seconds,
)


def named(*names):
    """A group: every process with one of these command names, with the children they
    reaped (a PostgreSQL backend that ended is counted in the postmaster's)."""
    return lambda: named_cpu_seconds(*names)


def tree(pid):
    """A group: ``pid`` and its descendants alive (a gunicorn master and its workers)."""
    return lambda: sum(tree_cpu_seconds(pid).values())


class CpuWatch:
    """CPU used by groups of processes between ``start()`` and ``stop()``.

    ``groups`` maps a name to a list of pids (processes that live through the span) or
    to a callable giving the group's CPU seconds so far (``named``, ``tree``). The
    shared servers (PostgreSQL, Redis) are counted whole, whoever used them.
    """

    def __init__(self, groups):
        self.groups = groups
        self._start = None

    def _read(self):
        totals = {}
        for name, group in self.groups.items():
            if callable(group):
                totals[name] = group()
            else:
                totals[name] = sum(cpu_seconds(pid) or 0.0 for pid in group)
        return time.monotonic(), machine_cpu_seconds(), totals

    def start(self):
        self._start = self._read()
        return self

    def stop(self, *, extra=None):
        """{group: cpu_share} plus "others", "machine" and "wall_s"; ``extra`` adds
        groups measured elsewhere (a child reporting its own CPU) as {name: cpu s}."""
        wall0, (busy0, _total0), before = self._start
        wall1, (busy1, _total1), after = self._read()
        wall = max(wall1 - wall0, 1e-9)
        used = {name: max(0.0, total - before[name]) for name, total in after.items()}
        used.update(extra or {})
        report = {"wall_s": round(wall, 3)}
        report.update({name: cpu_share(seconds, wall) for name, seconds in used.items()})
        report["others"] = cpu_share(max(0.0, busy1 - busy0 - sum(used.values())), wall)
        report["machine"] = cpu_share(busy1 - busy0, wall)
        return report


def show(figure, unit="", digits=2):
    """A spread as text: ``0.91 (0.88-0.95)``: the median, then the lowest and highest."""
    return show_spread(figure, digits, unit)


def cpu_line(report, names):
    """ "sandbox 97%, workers 61%, ..." of one core, for the progress output."""
    parts = [f"{name} {report[name]['one_core_pct']:.0f}%" for name in names if name in report]
    parts.append(f"machine {report['machine']['machine_pct']:.0f}%")
    return "CPU (% of one core): " + ", ".join(parts)


def redis_db_free(url, *, wait=120.0, say=print):
    """Wait until no other client uses the Redis database of ``url``; BenchError if one
    still does after ``wait`` seconds.

    The benchmark empties that database and its workers take every task published to
    it: a test run or another benchmark on the same database would take the
    benchmark's wake-ups (and lose its own).
    """
    import redis

    from .common import BenchError, redact_url

    client = redis.Redis.from_url(url)
    me = client.client_id()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    deadline = time.monotonic() + wait
    told = False
    while True:
        others = [c for c in client.client_list() if int(c["db"]) == db and int(c["id"]) != me]
        if not others:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"{len(others)} other client(s) still use Redis database {db} "
                f"({redact_url(url)}): give the benchmark a database of its own"
            )
        if not told:
            say(f"  waiting for {len(others)} other client(s) to leave Redis database {db}")
            told = True
        time.sleep(2.0)


@contextmanager
def log_folder(path=None):
    """The folder for the servers' and workers' logs: ``path`` if given (kept, to read
    after the run), else a temporary one removed at the end."""
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield str(path)
        return
    with tempfile.TemporaryDirectory() as folder:
        yield folder


def exit_on_sigterm():
    """Make SIGTERM end the run through its ``finally`` blocks, so the workers, servers
    and sandbox it started are stopped too (they run in sessions of their own)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def database_sessions():
    """Connections made to this process's database so far (PostgreSQL's own count).

    Each is a new server process: a worker that connects per task pays that, in CPU
    that no long-lived process shows.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]
