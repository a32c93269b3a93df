"""``make bench``: every benchmark, each against a baseline measured in the same run.

    python -m bench.run [--quick] [--scale S] [--only webhook,outbound,broadcast,botrt,inbox]

Needs PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL); the benchmarks use
databases of their own named after DATABASE_URL's (``<name>_bench``,
``<name>_inbox_<rooms>r_<messages>m``, kept for the next run) and empty the Redis
database given. Writes bench/results/*.json, bench/results/summary.md and SVG figures.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from . import figures, outreport
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
    show_spread,
)
from .loadgen import wrk_path

PARTS = ("webhook", "outbound", "broadcast", "botrt", "inbox")
# Per measurement: wrk's seconds and a cap on requests; 4 measurements a round (two
# deployments x two sides). Quick: about 50 s in all; full: about 4 minutes.
WEBHOOK_QUICK = ("--rounds", 2, "--seconds", 3, "--max-requests", 10_000, "--warm-seconds", 2)
WEBHOOK_FULL = ("--rounds", 5, "--seconds", 10, "--max-requests", 50_000, "--warm-seconds", 3)
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
        if "webhook" in only:
            wrk_path()
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
                *(WEBHOOK_QUICK if q else WEBHOOK_FULL),
                database=bench_db,
            )
        mine = [part for part in ("outbound", "broadcast", "botrt") if part in only]
        if mine:
            database_create(bench_db)
        titles = {
            "outbound": "Outbound delivery: against a Session loop, history, backlog, "
            "scaling, worker memory",
            "broadcast": "Broadcast under a send rate",
            "botrt": "Bot reply round trip",
        }
        for part in mine:
            say(f"== {titles[part]} ({'quick' if q else 'full'})")
            _run(
                f"bench.{part}",
                "--database",
                bench_db,
                "--broker",
                broker,
                # A full run also profiles the workers, in a pass of its own.
                *(["--quick"] if q else ["--profile"] if part != "broadcast" else []),
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
    webhook_notes = []
    if webhook and "deployments" in webhook:
        heads, webhook_notes = _webhook_summary(webhook, lines)
        headline += heads
    rows, heads, notes, svgs = outreport.summary(_load)
    lines += rows
    headline += heads
    for name, svg in svgs.items():
        _figure(name, svg)
    small, large = _load("inbox_small"), _load("inbox_large")
    if small and large:
        for page, figure in large["pages"].items():
            base = small["pages"].get(page)
            if base is None:
                continue  # a page the small database's results (an older run) lack
            if page.startswith(("search", "room list q")) and "runs" in figure:
                lines.append(_search_row(page, large, figure, base))
                continue
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
        "gunicorn, settings and database, under each deployment); Celery delivery "
        "against a requests.Session loop "
        "with the same processes x threads posting the same bodies to the same sandbox; "
        "rooms with history, a deep backlog and two worker processes against new rooms, "
        "1,000 queued and one process; a broadcast's rate against the send_rate set; the "
        "bot's reply through Celery against the same reply posted inline; the inbox on a "
        "large database against the same pages on a small one; worker memory after many "
        "deliveries against after its first measurement (at least 1,000). A range is the "
        "lowest and highest of the rounds.",
        "",
        *webhook_notes,
        *notes,
        *([""] if notes or webhook_notes else []),
    ]
    for svg in sorted(RESULTS.glob("*.svg")):
        lines.append(f"![{svg.stem}]({svg.name})")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    return "ratios " + ", ".join(headline) + "; bench/results/summary.md written"


#: The issue's bound for a search on the large database, in milliseconds.
SEARCH_MS_MAX = 1000


def _spread(values):
    values = sorted(values)
    return {"median": statistics.median(values), "min": values[0], "max": values[-1]}


def _search_row(page, large, figure, base):
    """A search's row: milliseconds on each database (median, range over the rounds),
    the ratio of round n on the large database to round n on the small one, and
    whether every round stayed under SEARCH_MS_MAX."""
    ratios = [big / small for big, small in zip(figure["runs"], base["runs"], strict=False)]
    slowest = max(figure["runs"])
    return (
        f"| {page} ({large['rooms']} rooms, {large['messages']} msgs): ms / queries | "
        f"{show_spread(_spread(figure['runs']), 1)} / {figure['queries']} | "
        f"{show_spread(_spread(base['runs']), 1)} / {base['queries']} | "
        f"{show_spread(_spread(ratios))} | every round < {SEARCH_MS_MAX} ms | "
        f"{_verdict(slowest < SEARCH_MS_MAX)} |"
    )


def _pct(figure, digits=0):
    return show_spread(figure, digits, "%")


DEPLOYMENT_NAMES = {"recommended": "recommended", "defaults": "Django's defaults"}


def _webhook_summary(webhook, lines):
    """The webhook's rows (each deployment: throughput, latency), its notes (the client's
    CPU beside the server's) and its figures; returns (headline parts, notes)."""
    heads, notes = [], []
    deployments = webhook["deployments"]
    for name, result in deployments.items():
        label = DEPLOYMENT_NAMES.get(name, name)
        w, b = result["sides"]["webhook"], result["sides"]["baseline"]
        ratios, targets = result["ratios"], result.get("targets")
        throughput = (
            (
                f">= {targets['throughput_ratio_min']}",
                f"{_verdict(targets['throughput_met'])} "
                f"(met in {targets['throughput_rounds_met']} rounds)",
            )
            if targets
            else ("none", "-")
        )
        lines.append(
            f"| Webhook throughput, {label} (req/s) | {show_spread(w['throughput_rps'], 0)} | "
            f"{show_spread(b['throughput_rps'], 0)} | {show_spread(ratios['throughput'])} | "
            f"{throughput[0]} | {throughput[1]} |"
        )
        p99 = (
            (
                f"p99 <= {targets['p99_ratio_max']}",
                f"{_verdict(targets['p99_met'])} (met in {targets['p99_rounds_met']} rounds)",
            )
            if targets
            else ("none", "-")
        )
        lines.append(
            f"| Webhook latency p50 / p90 / p99, {label} (ms) | "
            + " / ".join(f"{w[f'{p}_ms']['median']:.1f}" for p in ("p50", "p90", "p99"))
            + " | "
            + " / ".join(f"{b[f'{p}_ms']['median']:.1f}" for p in ("p50", "p90", "p99"))
            + f" | p99 {show_spread(ratios['p99'])} | {p99[0]} | {p99[1]} |"
        )
        heads.append(f"webhook ({label}) {show_spread(ratios['throughput'])}")
        cpu = {side: result["sides"][side]["cpu"] for side in ("baseline", "webhook")}
        notes.append(
            f"Webhook, {label} ({result['label']}): CPU in % of one core, median (lowest-"
            "highest) over the rounds; "
            + "; ".join(
                f"{side} side: wrk {_pct(c['client']['one_core_pct'], 1)} "
                f"(of the machine: {_pct(c['client']['machine_pct'], 1)}), gunicorn "
                f"{_pct(c['server']['one_core_pct'])}, PostgreSQL "
                f"{_pct(c['postgres']['one_core_pct'])}, other work "
                f"{_pct(c['other']['one_core_pct'])}, the whole machine "
                f"{_pct(c['machine']['one_core_pct'])} of {100 * webhook['machine']['cores']}%"
                for side, c in cpu.items()
            )
            + "."
        )
    client = webhook["client_bottleneck"]
    notes.append(
        f"Webhook client: {webhook['client']['tool']}, {webhook['client']['threads']} threads, "
        f"{webhook['client']['connections']} connections, {webhook['rounds']} rounds of "
        f"{webhook['client']['seconds']} s per side; its busiest run used "
        f"{100 * client['busiest_thread_share']:.0f}% of each of its threads' cores "
        f"({'not' if client['not_the_bottleneck'] else '**may be**'} the bottleneck)"
        + (f"; **{len(webhook['problems'])} problem(s)**" if webhook["problems"] else "")
        + "."
    )
    names = list(deployments)
    labels = [DEPLOYMENT_NAMES.get(name, name) for name in names]
    sides = {"baseline view": "baseline", "/rchat/webhook/": "webhook"}
    _figure(
        "webhook_throughput",
        figures.bars_range(
            "Webhook ingest: throughput (median, whiskers: lowest-highest round)",
            "requests/s",
            labels,
            {
                legend: [deployments[n]["sides"][side]["throughput_rps"] for n in names]
                for legend, side in sides.items()
            },
        ),
    )
    for name, label in zip(names, labels, strict=True):
        _figure(
            "webhook_latency" + ("" if name == "recommended" else f"_{name}"),
            figures.bars_range(
                f"Webhook ingest: latency, {label} (median, lowest-highest round)",
                "ms",
                ["p50", "p90", "p99"],
                {
                    legend: [
                        deployments[name]["sides"][side][f"{p}_ms"] for p in ("p50", "p90", "p99")
                    ]
                    for legend, side in sides.items()
                },
            ),
        )
    _figure(
        "webhook_ratios",
        figures.bars_range(
            "Webhook / baseline, per round (median, lowest-highest)",
            "ratio",
            ["throughput", "p50", "p90", "p99"],
            {
                label: [deployments[n]["ratios"][k] for k in ("throughput", "p50", "p90", "p99")]
                for n, label in zip(names, labels, strict=True)
            },
            reference=(1.0, "same as the baseline"),
        ),
    )
    # A blank line between notes: each its own paragraph.
    return heads, [line for note in notes for line in (note, "")][:-1]


def _figure(name, svg):
    (RESULTS / f"{name}.svg").write_text(svg)


if __name__ == "__main__":
    main()
