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
    TOKEN,
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
    messages are sent or failed (or, unsupervised, until no worker is left)."""
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
        if not workers.alive():
            print()
            return states  # none left to send, and none will be started
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
    """Celery workers, kept running the way a process supervisor keeps them running.

    ``revive()`` records a worker that exited on its own and, with ``supervise`` (the
    default), starts a new one, as systemd's ``Restart=always`` would; what the exited
    worker held is the stale sweep's to wake again. Without ``supervise`` an exited
    worker stays dead, so a scenario can prove that its workers live through the fault.
    """

    def __init__(self, ctx, *, count=2, concurrency=4, broker=None, supervise=True):
        self.ctx = ctx
        self.broker = broker or ctx.broker
        self.concurrency = concurrency
        self.supervise = supervise
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
            if process.poll() is not None and not getattr(process, "counted", False):
                self.exits.append(f"exit {process.returncode}: {log_tail(process, 1)}")
                process.counted = True
                if self.supervise:
                    self.processes[index] = self.start()

    def alive(self):
        return sum(1 for process in self.processes if process.poll() is None)

    def reconnected(self):
        """How many workers logged "Connected to" after their last lost connection."""
        count = 0
        for process in self.processes:
            text = process.log.read_text(errors="replace")
            lost = text.rfind("Connection to broker lost")
            count += lost >= 0 and "Connected to" in text[lost:]
        return count

    def describe(self):
        if not self.exits:
            return ""
        restarted = ", restarted" if self.supervise else ""
        return f"; {len(self.exits)} worker exit(s){restarted} ({'; '.join(self.exits)})"

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
    """Redis is stopped while messages are queued, then started again.

    No supervisor here: the workers must reconnect and go on delivering, and a worker
    that exits is counted (``extra["worker_exits"]``) and fails the scenario.
    """
    tag = f"redis-{int(time.time())}"
    saved = os.environ.get("CELERY_BROKER_URL")
    with PrivateRedis(log_dir=ctx.logs) as broker, SandboxProcess(log_dir=ctx.logs) as sandbox:
        # Celery reads this variable before its settings, also for wake-ups sent here.
        os.environ["CELERY_BROKER_URL"] = broker.url
        try:
            credential = _credential(sandbox.url)
            targets = _rooms(credential, rooms, tag)
            sandbox.client.inject(latency_ms=20, on="send")
            with _Workers(ctx, broker=broker.url, supervise=False) as workers:
                half = sends // 2
                texts = _queue(targets, half, tag)
                broker.stop()
                texts += _queue(targets, sends - half, tag, start=half)
                time.sleep(down_seconds)
                broker.start()
                states = _wait_terminal(tag, sends, timeout=timeout, workers=workers)
                # A drain running through the outage can send everything queued meanwhile
                # (the rows are in the database): wait for the workers to be back on the
                # broker, then prove it with a message per room queued after the restart.
                deadline = time.monotonic() + 30
                while workers.reconnected() < workers.alive() and time.monotonic() < deadline:
                    time.sleep(0.5)
                texts += _queue(targets, len(targets), tag, start=sends)
                states = _wait_terminal(tag, sends + len(targets), timeout=timeout, workers=workers)
                workers.revive()  # counts a worker that exited at the very end
                reconnected = workers.reconnected()
            sends += len(targets)
            lost, duplicated, detail = _count_outbound(tag, texts, sandbox, states)
            exits = len(workers.exits)
            count = len(workers.processes)
            detail += f"; {exits} worker exits, {reconnected} of {count} workers reconnected"
            detail += workers.describe()
        finally:
            if saved is None:
                os.environ.pop("CELERY_BROKER_URL", None)
            else:
                os.environ["CELERY_BROKER_URL"] = saved
    return Outcome(
        "Redis stopped while queued",
        sends,
        lost,
        duplicated,
        detail,
        {"worker_exits": exits, "workers_reconnected": reconnected, "workers": count},
    )


def _sandbox(*, log_dir, idempotent=True):
    """The sandbox process; ``--ignore-idempotency-key`` unless ``idempotent``."""
    if idempotent:
        return SandboxProcess(log_dir=log_dir)
    return SandboxProcess(
        log_dir=log_dir, options=["--ignore-idempotency-key"], name="sandbox-not-idempotent"
    )


def worker_killed(ctx, *, sends=1000, rooms=50, timeout=300.0, idempotent=True, latency_ms=30):
    """A worker is killed with SIGKILL mid-batch; a new one takes its place.

    A send the killed worker made but could not record is made again, with the same
    Idempotency-Key. ``idempotent``: the sandbox honours the key as R-Chat does (a
    repeat is answered as the first call and shown once), so a duplicate is a failure;
    otherwise (``--ignore-idempotency-key``) every repeat shows, and is counted.
    ``latency_ms``: how long the sandbox takes to answer a send.
    """
    import signal

    tag = f"kill{'' if idempotent else 'x'}-{int(time.time())}"
    with _sandbox(log_dir=ctx.logs, idempotent=idempotent) as sandbox, _Workers(ctx) as workers:
        credential = _credential(sandbox.url)
        targets = _rooms(credential, rooms, tag)
        sandbox.client.inject(latency_ms=latency_ms, on="send")
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
        repeated = sandbox.client.info()["repeated_keys"]
    if idempotent:
        name = "worker SIGKILL (idempotent R-Chat)"
        detail += f"; {repeated} repeated send(s) answered by their Idempotency-Key"
    else:
        name = "worker SIGKILL (key ignored)"
        detail += "; each duplicate is a send repeated after the kill (expected here)"
    return Outcome(
        name,
        sends,
        lost,
        duplicated,
        detail + workers.describe(),
        {"platform_idempotent": idempotent, "repeated_keys": repeated},
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


def _post(connection, body, headers):
    """POST ``body`` to the webhook: (status, its JSON answer or None, will_close).

    Bytes go with a Content-Length; an iterator of bytes chunked, without one.
    """
    connection.request("POST", "/rchat/webhook/", body, headers)
    response = connection.getresponse()
    raw = response.read()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    return response.status, answer, response.will_close


def _chunks(body, parts=3):
    """``body`` in ``parts`` pieces, sent one chunk each (no Content-Length)."""
    size = -(-len(body) // parts)
    return iter([body[n : n + size] for n in range(0, len(body), size)])


def chunked_webhooks(ctx, *, calls=1000, clients=4, rooms=20):
    """``calls`` webhooks sent with Transfer-Encoding: chunked and no Content-Length.

    Under gunicorn each must be stored once. A server that cannot read a body of
    unknown length must answer 411 with a reason (the sender was told: not lost);
    any other answer, or a 200 without the stored message, counts as lost.
    """
    from django.db.models import Count

    from rchat.models import Message

    _credential()
    tag = f"chunked-{int(time.time())}"
    statuses, answers = Counter(), Counter()
    expected = {}  # (chat_id, text) -> status
    lock = threading.Lock()

    def client(number, share):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for each in range(share):
            body = webhook_body(tag, number, each, rooms)
            payload = json.loads(body)
            key = (payload["chat_id"], payload["message"]["data"])
            try:
                status, answer, closes = _post(connection, _chunks(body), HEADERS)
            except (OSError, http.client.HTTPException) as exc:
                status, answer, closes = f"error:{type(exc).__name__}", None, True
            with lock:
                statuses[status] += 1
                expected[key] = status
                if status == 411 and (answer or {}).get("detail"):
                    answers["411 with a reason"] += 1
            if closes:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.close()

    with gunicorn(ctx.database, ctx.broker, log_dir=ctx.logs, env_extra=ctx.env) as server:
        threads = [
            threading.Thread(target=client, args=(n, calls // clients + (n < calls % clients)))
            for n in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stored = Counter(
        {
            (chat_id, text): n
            for chat_id, text, n in Message.objects.filter(
                direction="in", room__chat_id__startswith=tag + "-"
            )
            .values_list("room__chat_id", "text")
            .annotate(n=Count("id"))
            .values_list("room__chat_id", "text", "n")
        }
    )
    told = answers["411 with a reason"]
    lost = sum(1 for key, status in expected.items() if status == 200 and not stored[key])
    lost += sum(n for status, n in statuses.items() if status not in (200, 411))
    lost += statuses[411] - told
    server_errors = sum(n for code, n in statuses.items() if isinstance(code, int) and code >= 500)
    return Outcome(
        f"{calls} chunked webhooks (no length)",
        sum(statuses.values()),
        lost,
        sum(n - 1 for n in stored.values() if n > 1),
        f"statuses {dict(statuses)}, {sum(1 for n in stored.values() if n)} stored, "
        f"{told} answered 411 with a reason",
        {"server_errors": server_errors, "answered_411": told},
    )


def _poison_bodies():
    """(name, body): webhook bodies no message can be stored from, each a new chat."""

    def message(name, data, *, extra=""):
        chat = f"poison-{name}".replace(" ", "-")
        return (
            f'{{"chat_id": "{chat}", "channel": "line"{extra}, '
            f'"message": {{"type": "text", "data": {data}}}}}'
        ).encode()

    return [
        ("arrays 500 deep", message("a500", "[" * 500 + "]" * 500)),
        ("objects 700 deep", message("o700", '{"a": ' * 700 + "1" + "}" * 700)),
        ("arrays 900 deep", message("a900", "[" * 900 + '"x"' + "]" * 900)),
        ("arrays 5000 deep", message("a5000", "[" * 5000 + "]" * 5000)),
        ("1e400", message("1e400", "1e400")),
        ("-1e400 in a field", message("m1e400", '"hi"', extra=', "score": -1e400')),
        ("NaN", message("nan", "NaN")),
        ("Infinity", message("inf", '{"x": Infinity}')),
        ("integer of 5000 digits", message("bigint", "9" * 5000)),
    ]


def _repaired_bodies(tag):
    """(chat_id, body): text PostgreSQL refuses, which rchat stores with U+FFFD instead."""
    return [
        (f"{tag}-{name}", f'{{"chat_id": "{tag}-{name}", "message": {data}}}'.encode())
        for name, data in (
            ("nul", '{"type": "text", "data": "a\\u0000b"}'),
            ("surrogate", '{"type": "text", "data": "a\\ud800b"}'),
        )
    ]


def poison_webhooks(ctx, *, rounds=10):
    """Poison bodies (deep nesting, numbers out of range), each ``rounds`` times, then
    bodies with a NUL or a lone surrogate in the text, then one normal message.

    Every poison call must be answered 4xx with a JSON reason and kept as a failed
    WebhookEvent (its error said), never 5xx, and nothing of it stored as a message.
    Text the database refuses is not poison: rchat stores it with U+FFFD in place (and
    the raw body as it came), once however often it comes. The normal message after
    them all must be stored once.
    """
    from rchat.models import Message, WebhookEvent

    _credential()
    bodies = _poison_bodies()
    tag = f"afterpoison-{int(time.time())}"
    repaired = _repaired_bodies(tag)
    statuses, wrong = Counter(), []

    def post(body):
        nonlocal connection
        try:
            status, answer, closes = _post(connection, body, HEADERS)
        except (OSError, http.client.HTTPException) as exc:
            status, answer, closes = f"error:{type(exc).__name__}", None, True
        if closes:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        return status, answer

    failed_before = WebhookEvent.objects.filter(outcome="failed").exclude(error="").count()
    with gunicorn(ctx.database, ctx.broker, log_dir=ctx.logs, env_extra=ctx.env) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for _round in range(rounds):
            for name, body in bodies:
                status, answer = post(body)
                statuses[status] += 1
                reason = answer.get("detail") if isinstance(answer, dict) else None
                if not (isinstance(status, int) and 400 <= status < 500 and reason):
                    wrong.append(f"{name}: {status}")
        for _round in range(rounds):
            for chat_id, body in repaired:
                status, _answer = post(body)
                if status != 200:
                    wrong.append(f"{chat_id}: {status}")
        normal = webhook_body(tag, 0, 0, 1)
        after, _answer = post(normal)
        connection.close()
    poisoned = len(bodies) * rounds
    kept = WebhookEvent.objects.filter(outcome="failed").exclude(error="").count() - failed_before
    stored_poison = Message.objects.filter(room__chat_id__startswith="poison-").count()
    stored_repaired = [
        list(Message.objects.filter(room__chat_id=chat_id).values_list("text", flat=True))
        for chat_id, _body in repaired
    ]
    # "a", U+FFFD in place of what could not be stored (one per byte of a surrogate), "b".
    repaired_ok = sum(
        1 for texts in stored_repaired if len(texts) == 1 and re.fullmatch("a\ufffd+b", texts[0])
    )
    stored_after = Message.objects.filter(room__chat_id=json.loads(normal)["chat_id"]).count()
    server_errors = sum(n for code, n in statuses.items() if isinstance(code, int) and code >= 500)
    lost = max(0, poisoned - kept) + (len(repaired) - repaired_ok)
    lost += 0 if after == 200 and stored_after else 1
    return Outcome(
        f"{poisoned} poison webhook bodies",
        poisoned + len(repaired) * rounds + 1,
        lost,
        max(0, stored_after - 1) + sum(max(0, len(texts) - 1) for texts in stored_repaired),
        f"{len(bodies)} kinds x {rounds}: statuses {dict(statuses)}, {kept} kept as failed "
        f"events, {stored_poison} stored; NUL and lone surrogate stored with U+FFFD "
        f"{repaired_ok} of {len(repaired)}; the message after them {after}, stored {stored_after}"
        + (f"; wrong answers: {', '.join(sorted(set(wrong)))}" if wrong else ""),
        {"server_errors": server_errors, "wrong_answers": len(wrong) + stored_poison},
    )


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
    parser.add_argument("--quick", action="store_true", help="small counts (about 5 minutes)")
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
            (
                "worker killed, Idempotency-Key ignored",
                worker_killed,
                {"sends": 150 if q else 1000, "idempotent": False},
            ),
            ("duplicate webhooks", duplicate_webhooks, {"calls": 100 if q else 1000}),
            ("chunked webhooks", chunked_webhooks, {"calls": 100 if q else 1000}),
            ("poison webhook bodies", poison_webhooks, {"rounds": 3 if q else 20}),
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
    # Duplicates against an idempotent R-Chat (the sandbox by default) fail the run;
    # against one ignoring Idempotency-Key they are expected, and reported apart.
    honoured = [o for o in outcomes if o.extra.get("platform_idempotent", True)]
    duplicated = sum(o.duplicated for o in honoured)
    ignored = sum(o.duplicated for o in outcomes if o not in honoured)
    server_errors = sum(outcome.extra.get("server_errors", 0) for outcome in outcomes)
    # A poison body answered other than 4xx with a reason, or stored as a message.
    wrong = sum(outcome.extra.get("wrong_answers", 0) for outcome in outcomes)
    # A worker that exits on a fault it should ride out (Redis restarting) fails the run.
    worker_exits = sum(outcome.extra.get("worker_exits", 0) for outcome in outcomes)
    # A scenario that sent nothing proved nothing (schemathesis found no schema, say).
    empty = sum(1 for outcome in outcomes if outcome.sent == 0)
    say(
        f"Faults done: {len(outcomes)} scenarios, {sum(o.sent for o in outcomes)} sent, "
        f"{lost} lost, {duplicated} duplicated ({ignored} more where R-Chat ignores "
        f"Idempotency-Key), {server_errors} 5xx, {wrong} wrong answers to poison bodies, "
        f"{worker_exits} worker exits" + (f", {empty} scenario(s) sent nothing." if empty else ".")
    )
    if lost or duplicated or server_errors or wrong or worker_exits or empty:
        sys.exit(1)


if __name__ == "__main__":
    main()
