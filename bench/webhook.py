"""Webhook ingest: /rchat/webhook/ against a one-INSERT view, under two deployments.

``python -m bench.webhook --database URL --broker URL [--rounds R] [--seconds S]``
(``bench.run`` calls it on a fresh database; ``--help`` lists the rest).

Both sides (the baseline view ``/bench/baseline/`` and ``/rchat/webhook/``) are served
by the same gunicorn, settings and PostgreSQL database, and driven by the same wrk
command (bench/loadgen.py): each request a webhook of its own, a new message id, the
chat ids spread over ``--rooms`` rooms, the signature token and the JSON content type.

Two deployments are measured, each its own gunicorn, both running for the whole run:

- **recommended**, what docs/deployment.md tells a site to run: gthread workers with
  threads and keep-alive, persistent connections (``CONN_MAX_AGE=60``) checked before
  reuse (``CONN_HEALTH_CHECKS=True``);
- **defaults**, what a site gets from gunicorn's and Django's defaults: sync workers
  (one request at a time per process, the connection closed after each answer) and
  ``CONN_MAX_AGE=0`` (a new database connection per request); the same number of
  processes, so that only the worker class and the connection handling differ.

Each round measures the four (deployment, side) pairs back to back; odd rounds run them
in the reverse order, so neither side nor deployment always goes first. Before every
measurement the tables both sides write are VACUUM ANALYZEd (the PostgreSQL these runs
use has autovacuum off; dead tuples and stale statistics from the previous measurement
would otherwise weigh on the next). Each round gives one ratio per figure
(webhook / baseline, same deployment); the JSON keeps every round and reports each
ratio as its median with the lowest and highest (``bench.common.spread``).

The client is shown not to be the bottleneck by its CPU: wrk's own CPU seconds (from
the kernel when it exits) as a share of one core and of the machine, beside the
server's (gunicorn's master and workers, from /proc), PostgreSQL's (every postgres
process, with the backends that ended meanwhile), this process's and the whole
machine's over the same span; what is left of the machine's is "other": work that is
not the benchmark's, which says how quiet the machine was.

Every answer must be 2xx, and the rows stored afterwards must account for every 2xx (a
2xx that stored nothing fails the run): the baseline's rows, the webhook's inbound
messages and WebhookEvents, counted by the tag each measurement puts in its message ids.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime

from .common import (
    CORES,
    RESULTS,
    SIGNATURE,
    TOKEN,
    BenchError,
    cpu_share,
    cpu_used,
    django_setup,
    gunicorn,
    machine_cpu_seconds,
    named_cpu_seconds,
    ratio_spread,
    rounds_meeting,
    say,
    show_spread,
    spread,
    tree_cpu_seconds,
    wait_for_http,
    write_json,
)
from .loadgen import run_wrk, wrk_path

HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-Chatday-Signature-Token": SIGNATURE,
}
SIDES = {"baseline": "/bench/baseline/", "webhook": "/rchat/webhook/"}
# The recommended deployment is docs/deployment.md's ("Web nodes" and "PostgreSQL"):
# keep the two in step.
DEPLOYMENTS = {
    "recommended": {
        "label": "gunicorn gthread, 2 workers x 4 threads, keep-alive 30 s; "
        "CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True",
        "gunicorn": {
            "workers": 2,
            "threads": 4,
            "worker_class": "gthread",
            "conn_max_age": 60,
            "conn_health_checks": True,
        },
    },
    "defaults": {
        "label": "gunicorn sync, 2 workers (no keep-alive); CONN_MAX_AGE=0, "
        "CONN_HEALTH_CHECKS=False (Django's defaults)",
        "gunicorn": {
            "workers": 2,
            "worker_class": "sync",
            "conn_max_age": 0,
            "conn_health_checks": False,
        },
    },
}
#: Under the recommended deployment.
TARGETS = {"throughput_ratio_min": 0.8, "p99_ratio_max": 1.3}
PERCENTILES = ("p50", "p90", "p99")
#: A wrk thread busier than this share of a core would be near its limit (one event
#: loop per thread); below it the client has room to send more than it is answered.
CLIENT_BUSY_LIMIT = 0.7


def credential_create():
    from django.utils import timezone

    from rchat import crypto
    from rchat.models import Credential

    return Credential.objects.update_or_create(
        name="bench",
        defaults={
            "token": TOKEN,
            "signature_token": SIGNATURE,
            "signature_digest": crypto.digest(SIGNATURE),
            "status": Credential.Status.ACTIVE,
            "registered_at": timezone.now(),
        },
    )[0]


def _models():
    from bench.models import BaselineRow
    from rchat.models import ChatRoom, Message, WebhookEvent

    return BaselineRow, ChatRoom, Message, WebhookEvent


def stored_counts():
    """What the two sides have stored so far: baseline rows, inbound messages, events."""
    BaselineRow, _ChatRoom, Message, WebhookEvent = _models()
    return {
        "baseline_rows": BaselineRow.objects.count(),
        "messages": Message.objects.filter(direction=Message.Direction.IN).count(),
        "events": WebhookEvent.objects.count(),
    }


def settled_counts(*, timeout=15.0):
    """``stored_counts`` once three readings 0.25 s apart agree, so that the requests wrk
    abandoned when it stopped have ended before the next measurement starts."""
    deadline = time.monotonic() + timeout
    readings = [stored_counts()]
    while time.monotonic() < deadline:
        time.sleep(0.25)
        readings.append(stored_counts())
        if len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3]:
            break
    return readings[-1]


#: Tells this run's rows from those of an earlier run on the same database.
RUN_ID = uuid.uuid4().hex[:8]


def tag_of(sequence):
    """The tag in every message id a measurement sends, by which its rows are counted."""
    return f"b{RUN_ID}r{sequence}x"


# Rows per measurement, by the tag in the message id of the body each row came from;
# one scan per table, after the last measurement (every abandoned request has ended).
TAG_PATTERN = f"b{RUN_ID}r([0-9]+)x-"


def stored_by_run():
    """``{sequence: {"baseline_rows", "messages", "events"}}`` for this run's tags."""
    from django.db import connection

    BaselineRow, _ChatRoom, Message, WebhookEvent = _models()
    quote = connection.ops.quote_name
    # Table names from _meta, quoted; every value a parameter.
    by_body = "SELECT substring(convert_from(body, 'UTF8') from %s), count(*) FROM {} GROUP BY 1"
    by_id = (
        "SELECT substring(external_id from %s), count(*) FROM {} WHERE direction = %s GROUP BY 1"
    )
    queries = {
        "baseline_rows": (by_body.format(quote(BaselineRow._meta.db_table)), [TAG_PATTERN]),
        "messages": (
            by_id.format(quote(Message._meta.db_table)),
            [TAG_PATTERN, Message.Direction.IN],
        ),
        "events": (by_body.format(quote(WebhookEvent._meta.db_table)), [TAG_PATTERN]),
    }
    found = {}
    with connection.cursor() as cursor:
        for key, (sql, params) in queries.items():
            cursor.execute(sql, params)
            for sequence, count in cursor.fetchall():
                if sequence is not None:
                    found.setdefault(int(sequence), {}).setdefault(key, count)
    return found


def vacuum_analyze():
    """VACUUM ANALYZE every table either side writes; returns the seconds it took."""
    from django.db import connection

    clock = time.monotonic()
    with connection.cursor() as cursor:
        for model in _models():
            # Outside a transaction: Django's connection is in autocommit here.
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    return time.monotonic() - clock


def measure(server, side, *, sequence, args, warm_up=False):
    """One wrk run against one side of one server: its figures and CPU.

    A warm-up (``warm_up``) is shorter and not in the figures; its rows are checked all
    the same (``check_rows``, once every measurement is done)."""
    settled_counts()
    vacuum_s = vacuum_analyze()
    server_before, postgres_before = tree_cpu_seconds(server.pid), named_cpu_seconds("postgres")
    own_before, (busy0, _total0) = _own_cpu(), machine_cpu_seconds()
    clock = time.monotonic()
    result = run_wrk(
        url=server.url,
        path=SIDES[side],
        headers=HEADERS,
        tag=tag_of(sequence),
        room_prefix="bench",
        rooms=args.rooms,
        threads=args.threads,
        connections=args.connections,
        seconds=args.warm_seconds if warm_up else args.seconds,
        max_requests=args.max_requests // 4 if warm_up else args.max_requests,
    )
    wall = time.monotonic() - clock
    used = {
        "client": result.client_cpu["cpu_s"],
        "server": cpu_used(server_before, tree_cpu_seconds(server.pid)),
        "postgres": named_cpu_seconds("postgres") - postgres_before,
        "bench": _own_cpu() - own_before,
    }
    busy = machine_cpu_seconds()[0] - busy0
    run = {"sequence": sequence, "side": side, **result.summary()}
    run["cpu"] = {
        **{who: cpu_share(seconds, wall) for who, seconds in used.items()},
        # Whatever else the machine ran meanwhile: how busy it was with other work.
        "other": cpu_share(max(0.0, busy - sum(used.values())), wall),
        "machine": cpu_share(busy, wall),
    }
    run["cpu"]["client"].update(result.client_cpu)
    run["vacuum_s"] = round(vacuum_s, 3)
    run["connections"] = result.connections
    run["failed"] = result.failed
    return run


def _own_cpu():
    """This process's CPU seconds so far (it reads the database between measurements)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_rows(run, stored):
    """Set ``run["stored"]`` and ``run["problems"]``: why the run cannot be trusted.

    Every request must be answered 2xx, and every 2xx must have stored its rows (the
    baseline's row; the webhook's inbound message and WebhookEvent). Requests wrk
    abandoned when it stopped may be stored without being answered, so up to one per
    connection more than the 2xx is expected; fewer is a failure of the run."""
    stored = {key: stored.get(key, 0) for key in ("baseline_rows", "messages", "events")}
    run["stored"] = stored
    problems = []
    ok = run["statuses"]["2xx"]
    if run["failed"]:
        problems.append(
            f"{run['failed']} request(s) not answered 2xx: statuses {run['statuses']}, "
            f"errors {run['errors']}"
        )
    if run["side"] == "baseline":
        rows = {"baseline rows": stored["baseline_rows"]}
        if stored["messages"] or stored["events"]:
            problems.append("webhook rows carry the baseline's tag")
    else:
        rows = {"messages": stored["messages"], "events": stored["events"]}
        if stored["baseline_rows"]:
            problems.append("baseline rows carry the webhook's tag")
    for what, count in rows.items():
        if count < ok:
            problems.append(f"{ok} answered 2xx but {count} {what} stored")
        elif count > ok + run["connections"]:
            problems.append(f"{count} {what} stored for {ok} answered 2xx")
    run["problems"] = problems
    return problems


def _order(number, names):
    return list(names) if number % 2 == 0 else list(reversed(names))


def _line(run):
    lat, cpu = run["latency_ms"], run["cpu"]
    return (
        f"{run['throughput_rps']:.0f} req/s, p50 {lat['p50']:.1f} / p90 {lat['p90']:.1f} / "
        f"p99 {lat['p99']:.1f} ms, {run['statuses']['2xx']} 2xx; CPU % of one core: "
        f"wrk {cpu['client']['one_core_pct']:.0f}, gunicorn {cpu['server']['one_core_pct']:.0f}, "
        f"PostgreSQL {cpu['postgres']['one_core_pct']:.0f}, other "
        f"{cpu['other']['one_core_pct']:.0f}; machine {cpu['machine']['one_core_pct']:.0f} "
        f"of {100 * CORES}"
    )


def _side_figures(runs):
    figures = {
        "throughput_rps": spread([r["throughput_rps"] for r in runs], 1),
        **{f"{p}_ms": spread([r["latency_ms"][p] for r in runs], 2) for p in PERCENTILES},
        "cpu": {},
    }
    for who in ("client", "server", "postgres", "bench", "other", "machine"):
        figures["cpu"][who] = {
            unit: spread([r["cpu"][who][unit] for r in runs], 1)
            for unit in ("one_core_pct", "machine_pct")
        }
    return figures


def _deployment_summary(name, runs):
    base, hook = runs["baseline"], runs["webhook"]
    ratios = {
        "throughput": ratio_spread(
            [r["throughput_rps"] for r in hook], [r["throughput_rps"] for r in base]
        ),
        **{
            p: ratio_spread([r["latency_ms"][p] for r in hook], [r["latency_ms"][p] for r in base])
            for p in PERCENTILES
        },
    }
    summary = {
        "sides": {side: _side_figures(runs[side]) for side in SIDES},
        "ratios": ratios,
    }
    if name == "recommended":
        met, rounds = rounds_meeting(ratios["throughput"], at_least=TARGETS["throughput_ratio_min"])
        p99_met, _ = rounds_meeting(ratios["p99"], at_most=TARGETS["p99_ratio_max"])
        summary["targets"] = {
            **TARGETS,
            "throughput_met": ratios["throughput"]["median"] is not None
            and ratios["throughput"]["median"] >= TARGETS["throughput_ratio_min"],
            "p99_met": ratios["p99"]["median"] is not None
            and ratios["p99"]["median"] <= TARGETS["p99_ratio_max"],
            "throughput_rounds_met": f"{met} of {rounds}",
            "p99_rounds_met": f"{p99_met} of {rounds}",
        }
    return summary


def _client_verdict(all_runs, threads):
    """The most wrk used of each of its threads, over every measured run."""
    busiest = max(r["cpu"]["client"]["one_core_pct"] for r in all_runs) / 100 / threads
    server = min(r["cpu"]["server"]["one_core_pct"] for r in all_runs)
    client = max(r["cpu"]["client"]["one_core_pct"] for r in all_runs)
    return {
        "busiest_thread_share": round(busiest, 3),
        "limit": CLIENT_BUSY_LIMIT,
        "client_max_one_core_pct": client,
        "server_min_one_core_pct": server,
        "not_the_bottleneck": busiest < CLIENT_BUSY_LIMIT and client < server,
    }


def _versions():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    wrk = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True, check=False)
    import gunicorn as gunicorn_package

    return {
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].split(" Copyright")[0].strip(),
        "gunicorn": gunicorn_package.__version__,
        "postgresql": postgres,
        "autovacuum": autovacuum,
        "cores": CORES,
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10, help="per measurement (wrk -d)")
    parser.add_argument(
        "--max-requests", type=int, default=50_000, help="per measurement, whichever first"
    )
    parser.add_argument("--warm-seconds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS))
    parser.add_argument("--out", default=str(RESULTS), help="directory for webhook.json")
    args = parser.parse_args(argv)
    try:
        payload = run(args)
    except BenchError as exc:
        sys.exit(f"bench.webhook: {exc}")
    if payload["problems"]:
        sys.exit("bench.webhook: " + "; ".join(payload["problems"][:5]))


def run(args):
    chosen = [d.strip() for d in args.deployments.split(",") if d.strip()]
    unknown = sorted(set(chosen) - set(DEPLOYMENTS))
    if unknown or not chosen:
        raise BenchError(f"unknown deployment(s) {unknown}; known: {', '.join(DEPLOYMENTS)}")
    if args.rounds < 1 or args.seconds < 1:
        raise BenchError("--rounds and --seconds must be at least 1")
    wrk_path()
    django_setup(args.database, args.broker)
    credential_create()
    started, clock = datetime.now(UTC), time.monotonic()
    versions = _versions()
    runs = {name: {side: [] for side in SIDES} for name in chosen}
    warm, problems = [], []
    total = args.rounds * len(chosen) * len(SIDES)
    say(
        f"Webhook ingest: {args.rounds} round(s) x {len(chosen)} deployment(s) x 2 sides, "
        f"{args.seconds} s each (at most {args.max_requests} requests); wrk "
        f"{args.threads} threads, {args.connections} connections, {args.rooms} chat rooms; "
        f"{CORES} cores, load average {versions['load_average_before'][0]}"
    )
    with tempfile.TemporaryDirectory() as logs, ExitStack() as stack:
        servers = {}
        for name in chosen:
            settings = DEPLOYMENTS[name]["gunicorn"]
            servers[name] = stack.enter_context(
                gunicorn(args.database, args.broker, log_dir=logs, **settings)
            )
            say(f"  {name}: {' '.join(servers[name].command)} ({servers[name].url})")
        for server in servers.values():
            wait_for_http(server.url + SIDES["baseline"])
        sequence = 0
        for name in chosen:
            for side in SIDES:
                result = measure(servers[name], side, sequence=sequence, args=args, warm_up=True)
                sequence += 1
                warm.append({"deployment": name, **result})
                say(f"  warm-up {name} {side}: {_line(result)}")
        for number in range(args.rounds):
            for name in _order(number, chosen):
                for side in _order(number, SIDES):
                    result = measure(servers[name], side, sequence=sequence, args=args)
                    sequence += 1
                    result["round"] = number + 1
                    runs[name][side].append(result)
                    say(
                        f"  [{sequence - len(warm):>2}/{total}] round {number + 1} "
                        f"{name:<11} {side:<8}: {_line(result)}"
                    )
            # The load itself must not have ended a server: every gunicorn still up.
            for name, server in servers.items():
                if server.poll() is not None:
                    raise BenchError(f"gunicorn ({name}) exited with code {server.returncode}")
        settled_counts()
    stored = stored_by_run()
    for result in warm:
        problems += [
            f"warm-up {result['deployment']} {result['side']}: {p}"
            for p in check_rows(result, stored.get(result["sequence"], {}))
        ]
    for name in chosen:
        for side in SIDES:
            for result in runs[name][side]:
                problems += [
                    f"round {result['round']} {name} {side}: {p}"
                    for p in check_rows(result, stored.get(result["sequence"], {}))
                ]
    deployments = {}
    for name in chosen:
        deployments[name] = {
            "label": DEPLOYMENTS[name]["label"],
            "command": " ".join(servers[name].command),
            "environment": servers[name].database_env,
            **_deployment_summary(name, runs[name]),
            "runs": runs[name],
        }
    measured = [r for name in chosen for side in SIDES for r in runs[name][side]]
    payload = {
        "what": "POST /rchat/webhook/ against a bare Django view inserting one row "
        "(/bench/baseline/), same gunicorn, settings and PostgreSQL database",
        "run_at": f"{started:%Y-%m-%d %H:%M} UTC",
        "seconds": round(time.monotonic() - clock),
        "method": (
            "wrk (closed loop, keep-alive where the server allows it), a different webhook "
            "per request; rounds alternate the order of deployments and sides; VACUUM "
            "ANALYZE of the four tables before every measurement (autovacuum is off); "
            "ratio = webhook / baseline in the same round and deployment, reported as "
            "median (min-max) over the rounds; client CPU = wrk's own (os.wait4), server "
            "CPU = gunicorn master and workers (/proc), machine = /proc/stat, all over the "
            "same span; percentages of one core (100 = one core) and of the machine"
        ),
        "client": {
            "tool": versions["wrk"],
            "threads": args.threads,
            "connections": args.connections,
            "seconds": args.seconds,
            "max_requests": args.max_requests,
            "rooms": args.rooms,
            "headers": sorted(HEADERS),
        },
        "rounds": args.rounds,
        "machine": versions,
        "deployments": deployments,
        "client_bottleneck": _client_verdict(measured, args.threads),
        "warm_up": warm,
        "stored": stored_counts(),
        "problems": problems,
    }
    if set(chosen) == set(DEPLOYMENTS):
        payload["recommended_over_defaults"] = {
            side: ratio_spread(
                [r["throughput_rps"] for r in runs["recommended"][side]],
                [r["throughput_rps"] for r in runs["defaults"][side]],
            )
            for side in SIDES
        }
    write_json("webhook", payload, directory=args.out)
    say(one_line(payload))
    return payload


def one_line(payload):
    """The run in one line: each deployment's ratios with their ranges, the client's CPU."""
    parts = []
    for name, figures in payload["deployments"].items():
        ratios = figures["ratios"]
        part = (
            f"{name}: throughput {show_spread(ratios['throughput'])}, "
            f"p99 {show_spread(ratios['p99'])}x of the baseline"
        )
        if "targets" in figures:
            t = figures["targets"]
            part += (
                f" (targets >= {t['throughput_ratio_min']}: "
                f"{'met' if t['throughput_met'] else 'missed'}, "
                f"<= {t['p99_ratio_max']}x: {'met' if t['p99_met'] else 'missed'})"
            )
        parts.append(part)
    client = payload["client_bottleneck"]
    problems = payload["problems"]
    return (
        f"Webhook ingest done in {payload['seconds']} s: "
        + "; ".join(parts)
        + f"; wrk at most {client['client_max_one_core_pct']:.0f}% of one core "
        f"(gunicorn at least {client['server_min_one_core_pct']:.0f}%); "
        + (f"{len(problems)} problem(s)" if problems else "every 2xx stored")
        + "."
    )


if __name__ == "__main__":
    main()
