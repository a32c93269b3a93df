"""``make bench``: every benchmark, each against a baseline measured in the same run.

    python -m bench.run [--quick] [--scale S] [--only webhook,outbound,inbox]

Needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL); the benchmarks use
databases of their own named after DATABASE_URL's (``<name>_bench``,
``<name>_inbox_<rooms>r_<messages>m``, kept for the next run) and empty the Redis
database given. Writes bench/results/*.json, bench/results/summary.md and SVG figures.
"""

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

from . import figures
from .common import (
    PYTHON,
    RESULTS,
    ROOT,
    BenchError,
    child_env,
    database_create,
    database_exists,
    database_name,
    database_named,
    say,
    services_from_environment,
)

PARTS = ("webhook", "outbound", "inbox")
INBOX_FULL = (10_000, 1_000_000)
INBOX_SMALL = (100, 10_000)


def _run(module, *args, database):
    command = [PYTHON, "-m", module, *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, env=child_env(database, None), check=False)
    if result.returncode:
        raise BenchError(f"{module} failed (exit {result.returncode}); see its output above")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, small database")
    parser.add_argument(
        "--scale", type=float, help="inbox database size, 1.0 = 10k rooms / 1M messages"
    )
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args(argv)
    only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(only) - set(PARTS))
    try:
        if unknown:
            raise BenchError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
        database, broker = services_from_environment()
        scale = args.scale if args.scale is not None else (0.05 if args.quick else 1.0)
        if not 0 < scale <= 1:
            raise BenchError(f"--scale must be in (0, 1], not {scale}")
        clock = time.monotonic()
        base = database_name(database)
        bench_db = database_named(database, f"{base}_bench")
        q = args.quick
        if "webhook" in only:
            say(f"== Webhook ingest ({'quick' if q else 'full'})")
            database_create(bench_db)
            _run(
                "bench.webhook",
                "--database",
                bench_db,
                "--broker",
                broker,
                "--requests",
                2000 if q else 8000,
                "--rounds",
                1 if q else 3,
                "--max-seconds",
                20 if q else 60,
                database=bench_db,
            )
        if "outbound" in only:
            say("== Outbound delivery and worker memory")
            database_create(bench_db)
            messages = 1000 if q else 5000
            _run(
                "bench.outbound",
                "--database",
                bench_db,
                "--broker",
                broker,
                "--messages",
                messages,
                "--rooms",
                messages,
                "--memory",
                2000 if q else 10000,
                "--out",
                "outbound",
                database=bench_db,
            )
            _run(
                "bench.outbound",
                "--database",
                bench_db,
                "--broker",
                broker,
                "--messages",
                messages,
                "--rooms",
                messages // 10,
                "--skip-memory",
                "--out",
                "outbound_burst",
                database=bench_db,
            )
        if "inbox" in only:
            say(f"== Inbox reads (scale {scale:g})")
            large = (max(10, int(INBOX_FULL[0] * scale)), max(100, int(INBOX_FULL[1] * scale)))
            for label, (rooms, count) in (("inbox_small", INBOX_SMALL), ("inbox_large", large)):
                inbox_db = database_named(database, f"{base}_inbox_{rooms}r_{count}m")
                if not database_exists(inbox_db):
                    database_create(inbox_db)
                _run(
                    "bench.inbox",
                    "--database",
                    inbox_db,
                    "--rooms",
                    rooms,
                    "--messages",
                    count,
                    "--out",
                    label,
                    database=inbox_db,
                )
        summary = write_summary(quick=q, scale=scale)
    except BenchError as exc:
        sys.exit(f"make bench: {exc}")
    say(f"Bench done in {time.monotonic() - clock:.0f} s: {summary}")


def _load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(ok):
    return "met" if ok else "**missed**"


def write_summary(*, quick, scale):
    """bench/results/summary.md and the figures, from whatever results are there."""
    lines = [
        "# rchat benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"`{'make bench BENCH_ARGS=--quick' if quick else 'make bench'}` "
        f"(inbox scale {scale:g}). Ratios compare two sides measured in the same run.",
        "",
        "| Benchmark | rchat | Baseline | Ratio | Target | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    headline = []
    webhook = _load("webhook")
    if webhook:
        w, b = webhook["sides"]["webhook"], webhook["sides"]["baseline"]
        lines.append(
            f"| Webhook throughput (req/s) | {w['throughput_rps']:.0f} | "
            f"{b['throughput_rps']:.0f} | {webhook['throughput_ratio']:.2f} | >= 0.8 | "
            f"{_verdict(webhook['throughput_ratio'] >= 0.8)} |"
        )
        lines.append(
            f"| Webhook latency p50 / p99 (ms) | {w['p50_ms']:.1f} / {w['p99_ms']:.1f} | "
            f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} | p99 {webhook['p99_ratio']:.2f} | "
            f"p99 <= 1.5 | {_verdict(webhook['p99_ratio'] <= 1.5)} |"
        )
        headline.append(f"webhook {webhook['throughput_ratio']:.2f}")
        _figure(
            "webhook_throughput",
            figures.bars(
                "Webhook ingest: throughput",
                "requests/s",
                ["throughput"],
                {"baseline view": [b["throughput_rps"]], "/rchat/webhook/": [w["throughput_rps"]]},
            ),
        )
        _figure(
            "webhook_latency",
            figures.bars(
                "Webhook ingest: latency",
                "ms",
                ["p50", "p99"],
                {
                    "baseline view": [b["p50_ms"], b["p99_ms"]],
                    "/rchat/webhook/": [w["p50_ms"], w["p99_ms"]],
                },
            ),
        )
    bars = {}
    for name, label in (("outbound", "1 per room"), ("outbound_burst", "10 per room")):
        result = _load(name)
        if not result:
            continue
        c, b = result["sides"]["celery"], result["sides"]["baseline"]
        lines.append(
            f"| Outbound, {label} (messages/s) | {c['per_second']:.0f} | "
            f"{b['per_second']:.0f} | {result['ratio']:.2f} | >= 0.7 | "
            f"{_verdict(result['ratio'] >= 0.7)} |"
        )
        bars[label] = (b["per_second"], c["per_second"])
        headline.append(f"outbound ({label}) {result['ratio']:.2f}")
    if bars:
        _figure(
            "outbound",
            figures.bars(
                "Outbound: queued to received by the sandbox",
                "messages/s",
                list(bars),
                {
                    "requests.Session loop": [v[0] for v in bars.values()],
                    "Celery worker": [v[1] for v in bars.values()],
                },
            ),
        )
    memory = _load("memory")
    if memory:
        first, last = memory["samples"][0], memory["samples"][-1]
        lines.append(
            f"| Worker RSS (MiB) after {last['deliveries']} / {first['deliveries']} deliveries"
            f" | {last['rss_mib']} | {first['rss_mib']} | {memory['growth_ratio']:.2f} | "
            f"<= 1.1 | {_verdict(memory['growth_ratio'] <= 1.1)} |"
        )
        headline.append(f"memory {memory['growth_ratio']:.2f}")
        _figure(
            "worker_memory",
            figures.line(
                "Celery worker RSS",
                "MiB",
                [s["deliveries"] for s in memory["samples"]],
                [s["rss_mib"] for s in memory["samples"]],
                "deliveries",
            ),
        )
    small, large = _load("inbox_small"), _load("inbox_large")
    if small and large:
        for page, figure in large["pages"].items():
            base = small["pages"][page]
            lines.append(
                f"| {page} ({large['rooms']} rooms, {large['messages']} msgs): ms / queries | "
                f"{figure['ms']:.1f} / {figure['queries']} | {base['ms']:.1f} / "
                f"{base['queries']} | {figure['ms'] / base['ms']:.2f} | same queries | "
                f"{_verdict(figure['queries'] == base['queries'])} |"
            )
        _figure(
            "inbox",
            figures.bars(
                "Inbox and API: server time",
                "ms",
                list(large["pages"]),
                {
                    f"{small['rooms']} rooms / {small['messages']} msgs": [
                        f["ms"] for f in small["pages"].values()
                    ],
                    f"{large['rooms']} rooms / {large['messages']} msgs": [
                        f["ms"] for f in large["pages"].values()
                    ],
                },
            ),
        )
    lines += [
        "",
        "Baselines: the webhook against a bare Django view that inserts one row (same "
        "gunicorn, settings and database); Celery delivery against a requests.Session loop "
        "with the same processes x threads posting to the same sandbox; the inbox on a "
        "large database against the same pages on a small one; worker memory after many "
        "deliveries against after 100.",
        "",
    ]
    for svg in sorted(RESULTS.glob("*.svg")):
        lines.append(f"![{svg.stem}]({svg.name})")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    return "ratios " + ", ".join(headline) + "; bench/results/summary.md written"


def _figure(name, svg):
    (RESULTS / f"{name}.svg").write_text(svg)


if __name__ == "__main__":
    main()
