"""Fault scenarios: for each, how many messages were sent, lost and duplicated.

``python -m bench.faults [--quick]`` (``make faults``) runs them on PostgreSQL and
Redis from DATABASE_URL / CELERY_BROKER_URL, in a database of its own. Each scenario
is also a function taking a ``Context`` (database and broker URLs, a log folder), so
tests/test_faults.py runs the same code with small counts.

"Lost" counts what the site accepted but never reached its destination: an outbound
message queued but never received by the sandbox, or an authenticated webhook call
answered without its event (or its message) being stored. "Duplicated" counts extra
copies: the same message received twice by the sandbox, or stored twice by the site.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    PYTHON,
    RESULTS,
    ROOT,
    SIGNATURE,
    BenchError,
    PrivateRedis,
    SandboxProcess,
    database_create,
    database_name,
    database_named,
    django_setup,
    flush_redis,
    gunicorn,
    log_tail,
    progress,
    say,
    services_from_environment,
    start_worker,
    stop_process,
    write_json,
)
from .loadgen import run_load, webhook_body

# rchat's waits shortened so that every scenario ends within minutes (bench.settings
# reads these for the workers and the site; the scenario sets them for itself too).
FAST_RCHAT = {
    "RCHAT_BENCH_STALE_AFTER_SECONDS": "5",
    "RCHAT_BENCH_CONNECT_TIMEOUT": "2",
    "RCHAT_BENCH_READ_TIMEOUT": "5",
}


@dataclass
class Context:
    database: str
    broker: str
    logs: str
    env: dict = field(default_factory=dict)


@dataclass
class Outcome:
    scenario: str
    sent: int
    lost: int
    duplicated: int
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def line(self):
        return (
            f"{self.scenario:<34} sent {self.sent:>6}  lost {self.lost:>3}  "
            f"duplicated {self.duplicated:>3}  {self.detail}"
        )


# --- Helpers ------------------------------------------------------------------------------


def _credential(base_url=""):
    from django.utils import timezone

    from rchat import crypto
    from rchat.models import Credential

    from .common import TOKEN

    credential, _ = Credential.objects.update_or_create(
        name="faults",
        defaults={
            "token": TOKEN,
            "base_url": base_url,
            "signature_token": SIGNATURE,
            "signature_digest": crypto.digest(SIGNATURE),
            "status": Credential.Status.ACTIVE,
            "registered_at": timezone.now(),
            "last_error": "",
        },
    )
    return credential


def _rooms(credential, count, tag):
    from rchat.models import ChatRoom

    return [
        ChatRoom.objects.get_or_create(credential=credential, chat_id=f"{tag}-{n}")[0]
        for n in range(count)
    ]


def _queue(rooms, count, tag, *, start=0):
    """Queue ``count`` messages through ``services.message_send``; their texts."""
    from rchat import services

    texts = []
    for n in range(start, start + count):
        room = rooms[n % len(rooms)]
        text = f"{tag} ข้อความ {n}"
        services.message_send(room=room, type="text", data=text)
        texts.append((room.chat_id, text))
    return texts


def _wait_terminal(tag, total, *, timeout, workers, sweep_every=2.0):
    """Play Celery beat (the stale sweep) and the workers' supervisor until ``tag``'s
    messages are sent or failed."""
    from rchat import services
    from rchat.models import Message

    deadline = time.monotonic() + timeout
    last_sweep, shown = 0.0, None
    while True:
        states = Counter(
            Message.objects.filter(direction="out", text__startswith=tag + " ").values_list(
                "status", flat=True
            )
        )
        done = states["sent"] + states["failed"]
        if done != shown:
            progress(f"{tag}: sent or failed", min(done, total), total)
            shown = done
        if done >= total:
            return states
        if time.monotonic() > deadline:
            print()
            return states
        workers.revive()
        if time.monotonic() - last_sweep > sweep_every:
            services.message_requeue_stale()
            last_sweep = time.monotonic()
        time.sleep(0.5)


def _count_outbound(tag, texts, sandbox, states):
    received = [
        (m.get("chat_id"), str(m.get("message", {}).get("data")))
        for m in sandbox.client.received()
        if str(m.get("message", {}).get("data", "")).startswith(tag + " ")
    ]
    seen = Counter(received)
    lost = sum(1 for text in texts if text not in seen)
    duplicated = sum(count - 1 for count in seen.values())
    detail = ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
    return lost, duplicated, detail


class _Workers:
    """Celery workers kept running the way a process supervisor keeps them running.

    ``revive()`` restarts a worker that exited on its own, as systemd's
    ``Restart=always`` would: with Redis as the broker, kombu can end a worker
    ("Unrecoverable error") when Redis goes away while the worker holds unacknowledged
    wake-ups. What that worker held is the stale sweep's to wake again.
    """

    def __init__(self, ctx, *, count=2, concurrency=4, broker=None):
        self.ctx = ctx
        self.broker = broker or ctx.broker
        self.concurrency = concurrency
        self.processes = [self.start() for _ in range(count)]
        self.exits = []

    def start(self):
        return start_worker(
            self.ctx.database,
            self.broker,
            concurrency=self.concurrency,
            log_dir=self.ctx.logs,
            env_extra=self.ctx.env,
        )

    def revive(self):
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                self.exits.append(f"exit {process.returncode}: {log_tail(process, 1)}")
                self.processes[index] = self.start()

    def describe(self):
        if not self.exits:
            return ""
        return f"; {len(self.exits)} worker exit(s), restarted ({'; '.join(self.exits)})"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for process in self.processes:
            stop_process(process)


# --- Outbound scenarios ------------------------------------------------------------------


def outage_503(ctx, *, sends=1000, outage_seconds=30.0, rooms=100, timeout=600.0):
    """The sandbox answers 503 to every Send Message for ``outage_seconds`` during the sends."""
    tag = f"o503-{int(time.time())}"
    with SandboxProcess(log_dir=ctx.logs) as sandbox, _Workers(ctx) as workers:
        credential = _credential(sandbox.url)
        targets = _rooms(credential, rooms, tag)
        sandbox.client.inject(status=503, on="send")
        clear = threading.Timer(outage_seconds, sandbox.client.clear_faults)
        clear.start()
        try:
            texts = _queue(targets, sends, tag)
            states = _wait_terminal(tag, sends, timeout=timeout, workers=workers)
        finally:
            clear.cancel()
            sandbox.client.clear_faults()
        refused = sum(1 for call in sandbox.client.calls() if call.get("status") == 503)
        lost, duplicated, detail = _count_outbound(tag, texts, sandbox, states)
    return Outcome(
        f"R-Chat 503 for {outage_seconds:g} s",
        sends,
        lost,
        duplicated,
        f"{detail}; {refused} calls answered 503{workers.describe()}",
        {"answered_503": refused},
    )


def broker_down(ctx, *, sends=1000, rooms=50, down_seconds=5.0, timeout=300.0):
    """Redis is stopped while messages are queued, then started again."""
    tag = f"redis-{int(time.time())}"
    saved = os.environ.get("CELERY_BROKER_URL")
    with PrivateRedis(log_dir=ctx.logs) as broker, SandboxProcess(log_dir=ctx.logs) as sandbox:
        # Celery reads this variable before its settings, also for wake-ups sent here.
        os.environ["CELERY_BROKER_URL"] = broker.url
        try:
            credential = _credential(sandbox.url)
            targets = _rooms(credential, rooms, tag)
            sandbox.client.inject(latency_ms=20, on="send")
            with _Workers(ctx, broker=broker.url) as workers:
                half = sends // 2
                texts = _queue(targets, half, tag)
                broker.stop()
                texts += _queue(targets, sends - half, tag, start=half)
                time.sleep(down_seconds)
                broker.start()
                states = _wait_terminal(tag, sends, timeout=timeout, workers=workers)
            lost, duplicated, detail = _count_outbound(tag, texts, sandbox, states)
            detail += workers.describe()
        finally:
            if saved is None:
                os.environ.pop("CELERY_BROKER_URL", None)
            else:
                os.environ["CELERY_BROKER_URL"] = saved
    return Outcome("Redis stopped while queued", sends, lost, duplicated, detail)


def worker_killed(ctx, *, sends=1000, rooms=50, timeout=300.0):
    """A worker is killed with SIGKILL mid-batch; a new one takes its place."""
    import signal

    tag = f"kill-{int(time.time())}"
    with SandboxProcess(log_dir=ctx.logs) as sandbox, _Workers(ctx) as workers:
        credential = _credential(sandbox.url)
        targets = _rooms(credential, rooms, tag)
        sandbox.client.inject(latency_ms=30, on="send")
        texts = _queue(targets, sends, tag)
        from rchat.models import Message

        while (
            Message.objects.filter(text__startswith=tag + " ", status="sent").count() < sends // 3
        ):
            time.sleep(0.1)
        stop_process(workers.processes[0], signal.SIGKILL)
        workers.processes[0] = workers.start()
        states = _wait_terminal(tag, sends, timeout=timeout, workers=workers)
        lost, duplicated, detail = _count_outbound(tag, texts, sandbox, states)
    return Outcome(
        "worker SIGKILL mid-batch",
        sends,
        lost,
        duplicated,
        detail
        + "; a duplicate is a send R-Chat got before the worker could record it"
        + workers.describe(),
    )


# --- Inbound scenarios -------------------------------------------------------------------

HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-Chatday-Signature-Token": SIGNATURE,
}


def duplicate_webhooks(ctx, *, calls=1000, clients=8):
    """The same webhook ``calls`` times in parallel, with R-Chat's message id and without."""
    from rchat.models import Message, WebhookEvent

    _credential()
    outcomes = []
    with gunicorn(ctx.database, ctx.broker, log_dir=ctx.logs, env_extra=ctx.env) as server:
        for with_id in (True, False):
            tag = f"dup{'id' if with_id else 'body'}-{int(time.time())}"
            body = webhook_body(tag, 0, 0, 1, with_id=with_id)
            chat_id = json.loads(body)["chat_id"]
            events_before = WebhookEvent.objects.count()
            result = run_load(
                port=server.port,
                path="/rchat/webhook/",
                headers=HEADERS,
                tag=tag,
                requests=calls,
                clients=clients,
                rooms=1,
                max_seconds=120,
                body=body,
            )
            stored = Message.objects.filter(room__chat_id=chat_id).count()
            events = WebhookEvent.objects.count() - events_before
            answered = result.statuses.get(200, 0)
            lost = (answered - min(answered, events)) + (0 if stored else 1)
            outcomes.append(
                Outcome(
                    f"{calls} duplicate webhooks ({'message id' if with_id else 'same body'})",
                    result.requests,
                    lost,
                    max(0, stored - 1),
                    f"statuses {dict(result.statuses)}, {events} events, {stored} message",
                )
            )
    return outcomes


def _fuzz_strategy():
    from tests.strategies import webhook_bodies

    return webhook_bodies(max_binary=500)


def fuzzed_webhooks(ctx, *, bodies=10000):
    """``bodies`` hypothesis-made webhook bodies with a valid token: no 5xx, each call kept."""
    from django.db.models import Count
    from hypothesis import HealthCheck, Phase, given, settings

    from rchat.models import Message, WebhookEvent

    _credential()
    statuses = Counter()
    events_before = WebhookEvent.objects.count()
    with gunicorn(ctx.database, ctx.broker, log_dir=ctx.logs, env_extra=ctx.env) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

        @settings(
            max_examples=bodies,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(_fuzz_strategy())
        def post(body):
            nonlocal connection
            try:
                connection.request("POST", "/rchat/webhook/", body, HEADERS)
                response = connection.getresponse()
                response.read()
                statuses[response.status] += 1
                if response.will_close:
                    raise ConnectionResetError
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            done = sum(statuses.values())
            progress("fuzzed webhook bodies", done, bodies, every=500)

        post()
        connection.close()
    sent = sum(statuses.values())
    events = WebhookEvent.objects.count() - events_before
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    repeated = (
        Message.objects.filter(direction="in")
        .exclude(dedup_key="")
        .values("room_id", "dedup_key")
        .order_by()
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    return Outcome(
        f"{bodies} fuzzed webhook bodies",
        sent,
        max(0, sent - events),
        repeated,
        f"statuses {dict(sorted(statuses.items()))}, {events} events, {server_errors} 5xx",
        {"server_errors": server_errors},
    )


def schemathesis_api(ctx, *, examples=50, max_seconds=300, phases="examples,fuzzing"):
    """schemathesis against /rchat/api/schema/, authenticated as a superuser: no 5xx.

    ``examples`` per operation and phase; the run stops after ``max_seconds`` in all.
    The only check is ``not_a_server_error``, so every failed test case is a 5xx.
    (schemathesis 4.32's "coverage" phase crashes inside schemathesis on this schema
    with a SystemError from Python's ast module, so it is left out by default.)
    """
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from rchat import services

    user, _ = get_user_model().objects.get_or_create(
        username="faults-agent", defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=user)
    credential = _credential("http://127.0.0.1:9")
    for room in _rooms(credential, 3, "api"):
        # An earlier run may have closed it through the API.
        services.room_reopen(room=room)
        services.message_send(room=room, type="text", data="สวัสดี")
    with gunicorn(ctx.database, ctx.broker, log_dir=ctx.logs, env_extra=ctx.env) as server:
        command = [
            PYTHON,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/rchat/api/schema/",
            "-H",
            f"Authorization: Token {token.key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--max-time",
            str(max_seconds),
            "--workers",
            "2",
            "--no-color",
            "--seed",
            "7",
            "--phases",
            phases,
        ]
        binary = shutil.which("schemathesis", path=os.path.dirname(PYTHON))
        if binary:
            command[0:3] = [binary]
        result = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=max_seconds + 120,
            check=False,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
    output = result.stdout + result.stderr
    log = Path(ctx.logs) / "schemathesis.log"
    log.write_text(output)
    # Its summary says "Test cases:" then "N generated, N passed[, N failed]".
    cases = next(
        (line.strip() for line in output.splitlines() if " generated, " in line), "no summary"
    )
    counts = {}
    for part in cases.split(","):
        words = part.split()
        if len(words) == 2 and words[0].isdigit():
            counts[words[1]] = int(words[0])
    # Its failure summary names the check: "ST101 Server error: N". Older summaries
    # only said "N failed" (with one check, every failure is a 5xx).
    named = re.search(r"Server error: (\d+)", output)
    server_errors = int(named[1]) if named else counts.get("failed", 0)
    # A non-zero exit without a server error is schemathesis's own trouble (a crash,
    # no schema): reported, and the test still fails on the exit code.
    return Outcome(
        "schemathesis on the REST API",
        counts.get("generated", 0),
        0,
        0,
        f"exit {result.returncode}: {cases} test cases, {server_errors} 5xx",
        {"server_errors": server_errors, "exit_code": result.returncode, "log": str(log)},
    )


# --- The command -------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (about 3 minutes)")
    args = parser.parse_args(argv)
    try:
        database, broker = services_from_environment()
    except BenchError as exc:
        sys.exit(f"make faults: {exc}")
    faults_db = database_named(database, f"{database_name(database)}_faults")
    say("Fault scenarios: creating the database " + faults_db.rsplit("/", 1)[-1])
    database_create(faults_db)
    os.environ.update(FAST_RCHAT)
    # The scenarios provoke warnings by the hundred (a broker that is down); the counts
    # below say what happened.
    os.environ["RCHAT_LOG_LEVEL"] = "CRITICAL"
    django_setup(faults_db, broker)
    flush_redis(broker)
    q = args.quick
    outcomes = []
    with tempfile.TemporaryDirectory() as logs:
        ctx = Context(faults_db, broker, logs, env=dict(FAST_RCHAT))
        plan = [
            (
                "R-Chat answers 503",
                outage_503,
                {"sends": 100 if q else 1000, "outage_seconds": 5 if q else 30},
            ),
            ("Redis stopped", broker_down, {"sends": 100 if q else 1000}),
            ("worker killed", worker_killed, {"sends": 150 if q else 1000}),
            ("duplicate webhooks", duplicate_webhooks, {"calls": 100 if q else 1000}),
            ("fuzzed webhooks", fuzzed_webhooks, {"bodies": 500 if q else 10000}),
            (
                "schemathesis",
                schemathesis_api,
                {"examples": 10, "max_seconds": 30} if q else {"examples": 100, "max_seconds": 240},
            ),
        ]
        for number, (name, scenario, kwargs) in enumerate(plan, 1):
            say(f"[{number}/{len(plan)}] {name}: {kwargs}")
            clock = time.monotonic()
            result = scenario(ctx, **kwargs)
            for outcome in result if isinstance(result, list) else [result]:
                outcome.extra["seconds"] = round(time.monotonic() - clock, 1)
                if "log" in outcome.extra:
                    # The temporary folder goes; the report stays with the results.
                    kept = RESULTS / f"faults_{Path(outcome.extra['log']).name}"
                    shutil.copyfile(outcome.extra["log"], kept)
                    outcome.extra["log"] = str(kept.relative_to(ROOT))
                outcomes.append(outcome)
                say("  " + outcome.line())
    write_json(
        "faults",
        {
            "quick": q,
            "rchat_settings": FAST_RCHAT,
            "scenarios": [outcome.__dict__ for outcome in outcomes],
        },
    )
    say("")
    for outcome in outcomes:
        say(outcome.line())
    lost = sum(outcome.lost for outcome in outcomes)
    server_errors = sum(outcome.extra.get("server_errors", 0) for outcome in outcomes)
    # A scenario that sent nothing proved nothing (schemathesis found no schema, say).
    empty = sum(1 for outcome in outcomes if outcome.sent == 0)
    say(
        f"Faults done: {len(outcomes)} scenarios, {sum(o.sent for o in outcomes)} sent, "
        f"{lost} lost, {sum(o.duplicated for o in outcomes)} duplicated, {server_errors} 5xx"
        + (f", {empty} scenario(s) sent nothing." if empty else ".")
    )
    if lost or server_errors or empty:
        sys.exit(1)


if __name__ == "__main__":
    main()
