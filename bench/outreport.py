"""The outbound, broadcast and bot results as summary rows and SVG figures.

``summary(load)`` reads outbound.json, memory.json, broadcast.json and botrt.json
(``load(name)`` returns one as a dict, or None when that part did not run) and returns
the rows for bench/results/summary.md's table, the headline figures, notes to print
under the table, and the figures as {name: SVG text}. Every ratio is shown as its
median over the rounds with the lowest and highest round in brackets.
"""

from . import figures
from .measure import show

#: What "as fast as" means for history and backlog: within 10% of the other side.
SAME_RATE = 0.9


def _verdict(ok):
    """None: a figure reported, with no target to meet."""
    return "-" if ok is None else "met" if ok else "**missed**"


def _row(name, rchat, baseline, ratio, target, ok):
    return f"| {name} | {rchat} | {baseline} | {ratio} | {target} | {_verdict(ok)} |"


def _rate(figure):
    return show(figure, "", 0)


def _sender(side):
    return "clients" if side == "baseline" else "workers"


def summary(load):
    rows, heads, notes, svgs = [], [], [], {}
    outbound = load("outbound")
    if outbound:
        _outbound(outbound, rows, heads, notes, svgs)
    memory = load("memory")
    if memory:
        first, last = memory["first"], memory["last"]
        ok = memory["growth_ratio"] <= memory["target"]["growth_ratio_max"]
        rows.append(
            _row(
                f"Worker RSS (MiB) after {last['deliveries']:,} / {first['deliveries']:,} "
                "deliveries",
                f"{last['rss_mib']}",
                f"{first['rss_mib']}",
                f"{memory['growth_ratio']:.2f}",
                "<= 1.1",
                ok,
            )
        )
        heads.append(f"memory {memory['growth_ratio']:.2f}")
        svgs["worker_memory"] = figures.line(
            "One Celery worker's RSS",
            "MiB",
            [s["deliveries"] for s in memory["samples"]],
            [s["rss_mib"] for s in memory["samples"]],
            "deliveries",
        )
    broadcast = load("broadcast")
    if broadcast:
        ratio = broadcast["ratio"]
        ok = ratio["min"] is not None and abs(ratio["min"] - 1) <= 0.05
        ok = ok and abs(ratio["max"] - 1) <= 0.05
        rows.append(
            _row(
                f"Broadcast to {broadcast['rooms']:,} rooms: rate beyond the burst (msg/s)",
                show(broadcast["achieved_rate"], "", 1),
                f"{broadcast['configured_rate']:g} set",
                show(ratio, "", 3),
                "within 5%",
                ok,
            )
        )
        heads.append(f"broadcast {show(ratio, '', 3)}")
        rate = broadcast["configured_rate"]
        svgs["broadcast"] = figures.lines(
            f"Broadcast to {broadcast['rooms']:,} rooms: received per second",
            "messages/s",
            {
                f"round {n + 1}": [tuple(p) for p in run["per_second"]]
                for n, run in enumerate(broadcast["runs"])
            },
            "seconds since the first message",
            reference=(rate, f"send_rate {rate:g}/s"),
        )
    botrt = load("botrt")
    if botrt:
        p50, p99 = botrt["p50_ms"], botrt["p99_ms"]
        for side, label in (
            ("rchat", "connection per task"),
            ("rchat_pooled", "pooled connections"),
        ):
            ratio = botrt["p99_ratio"][side]
            rows.append(
                _row(
                    f"Bot reply round trip p99 / p50 (ms), workers with {label}, "
                    f"{botrt['rate']:g} webhooks/s",
                    f"{show(p99[side], '', 1)} / {show(p50[side], '', 1)}",
                    f"{show(p99['inline'], '', 1)} / {show(p50['inline'], '', 1)} inline",
                    f"p99 {show(ratio)}",
                    "p99 <= 3",
                    ratio["median"] is not None and ratio["median"] <= 3,
                )
            )
            heads.append(f"bot p99 ({label}) {show(ratio)}")
        svgs["botrt"] = figures.lines(
            "Bot reply: end user's webhook to the reply at R-Chat's API",
            "ms",
            {
                "inline (floor)": _cdf(botrt["runs"]["inline"]),
                "Celery bot": _cdf(botrt["runs"]["rchat"]),
                "Celery bot, pooled connections": _cdf(botrt["runs"]["rchat_pooled"]),
            },
            "percentile (every round; up to p99.9)",
        )
    return rows, heads, notes, svgs


def _cdf(runs):
    trips = sorted(t for run in runs for t in run["trips_ms"])
    if not trips:
        return []
    # Up to p99.9: the single slowest reply would set the scale for all the rest.
    shares = [*range(0, 100), 99.5, 99.9]
    return [
        (share, trips[min(len(trips) - 1, round(share / 100 * (len(trips) - 1)))])
        for share in shares
    ]


def _outbound(outbound, rows, heads, notes, svgs):
    compare = outbound.get("compare")
    if compare:
        for label, shape in compare.items():
            rate, ratio = shape["rate"], shape["ratio"]
            rows.append(
                _row(
                    f"Outbound, {label} ({shape['messages']:,} messages, msg/s)",
                    _rate(rate["rchat"]),
                    _rate(rate["baseline"]),
                    show(ratio),
                    ">= 0.8",
                    ratio["median"] >= 0.8,
                )
            )
            heads.append(f"outbound ({label}) {show(ratio)}")
        svgs["outbound"] = figures.bars_range(
            "Outbound: queued to received by the sandbox (median, range over rounds)",
            "messages/s",
            list(compare),
            {
                "requests.Session loop": [s["rate"]["baseline"] for s in compare.values()],
                "rchat (Celery workers)": [s["rate"]["rchat"] for s in compare.values()],
            },
        )
        groups, sandbox, sender, database = [], [], [], []
        for label, shape in compare.items():
            for side, name in (("baseline", "Session loop"), ("rchat", "rchat")):
                cpu = shape["cpu_ms_per_message"][side]
                groups.append(f"{name}, {label}")
                sandbox.append(cpu["sandbox"]["median"])
                sender.append(cpu[_sender(side)]["median"])
                database.append(cpu["postgres"]["median"])
        svgs["outbound_cpu"] = figures.bars(
            "Outbound: CPU per message (median of the rounds)",
            "ms of CPU",
            groups,
            {
                "sandbox": sandbox,
                "sending processes": sender,
                "PostgreSQL (whole server)": database,
            },
        )
        notes.append(
            "Outbound CPU per message (ms, median of the rounds): "
            + "; ".join(
                f"{label}: Session loop {c['baseline']['clients']['median']:.2f} + sandbox "
                f"{c['baseline']['sandbox']['median']:.2f}, rchat workers "
                f"{c['rchat']['workers']['median']:.2f} + PostgreSQL "
                f"{c['rchat']['postgres']['median']:.2f} + sandbox "
                f"{c['rchat']['sandbox']['median']:.2f}"
                for label, c in ((k, v["cpu_ms_per_message"]) for k, v in compare.items())
            )
            + "."
        )
    history = outbound.get("history")
    if history:
        ratio = history["ratio"]
        rows.append(
            _row(
                f"Outbound to rooms with {history['old_messages_per_room']:,} old messages "
                f"against new rooms ({history['rooms']:,} rooms, msg/s)",
                _rate(history["rate"]["history"]),
                _rate(history["rate"]["new"]),
                show(ratio),
                f">= {SAME_RATE}",
                ratio["median"] >= SAME_RATE,
            )
        )
        heads.append(f"history {show(ratio)}")
    backlog = outbound.get("backlog")
    if backlog:
        ratio = backlog["ratio"]
        deep, shallow = backlog["deep"], backlog["shallow"]
        rows.append(
            _row(
                f"Outbound backlog {deep['messages']:,} over {deep['rooms']:,} rooms against "
                f"{shallow['messages']:,} over {shallow['rooms']:,} (msg/s)",
                _rate(backlog["rate"]["deep"]),
                _rate(backlog["rate"]["shallow"]),
                show(ratio),
                f">= {SAME_RATE}",
                ratio["median"] >= SAME_RATE,
            )
        )
        heads.append(f"backlog {show(ratio)}")
        shallow_rate = backlog["rate"]["shallow"]["median"]
        svgs["outbound_backlog"] = figures.lines(
            f"Backlog of {deep['messages']:,}: messages sent per second",
            "messages/s",
            {
                f"round {n + 1}": [tuple(p) for p in run["per_second"] if p[0] >= 0]
                for n, run in enumerate(backlog["runs"]["deep"])
            },
            "seconds since the wake-up",
            reference=(shallow_rate, f"{shallow['messages']:,} queued: {shallow_rate:.0f}/s"),
        )
    scaling = outbound.get("scaling")
    if scaling:
        rows.append(
            _row(
                f"Outbound, 2 worker processes against 1 ({scaling['messages']:,} messages, msg/s)",
                _rate(scaling["rate"]["two"]),
                _rate(scaling["rate"]["one"]),
                show(scaling["ratio"]),
                "none",
                None,
            )
        )
        heads.append(f"2/1 processes {show(scaling['ratio'])}")
    ratios = [
        (f"{label.split()[0]}/room : loop", shape["ratio"])
        for label, shape in (compare or {}).items()
    ]
    for name, part in (
        ("history : new", history),
        ("deep : 1,000", backlog),
        ("2 : 1 processes", scaling),
    ):
        if part:
            ratios.append((name, part["ratio"]))
    if ratios:
        svgs["outbound_ratios"] = figures.bars_range(
            "Outbound ratios (median, range over rounds)",
            "ratio",
            [name for name, _ratio in ratios],
            {"ratio of the two sides": [ratio for _name, ratio in ratios]},
            reference=(1.0, "1.0"),
        )
