"""Webhook ingest: /rchat/webhook/ against the baseline view, same server and database.

``python -m bench.webhook --database URL --broker URL [--requests N] [--rounds R]``
(``bench.run`` calls it on a fresh database). Rounds alternate which side goes first;
each side's figure is the median over the rounds.
"""

import argparse
import statistics
import tempfile

from .common import SIGNATURE, TOKEN, django_setup, gunicorn, progress, say, write_json
from .loadgen import run_load

HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "X-Chatday-Signature-Token": SIGNATURE,
}
SIDES = {"baseline": "/bench/baseline/", "webhook": "/rchat/webhook/"}


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    django_setup(args.database, args.broker)
    from bench.models import BaselineRow
    from rchat.models import Message

    credential_create()
    runs = {side: [] for side in SIDES}
    accepted = {side: 0 for side in SIDES}
    with (
        tempfile.TemporaryDirectory() as logs,
        gunicorn(args.database, args.broker, log_dir=logs) as server,
    ):
        say(f"Webhook ingest: gunicorn {server.url}, {args.clients} client processes")
        for side, path in SIDES.items():
            warm = run_load(
                port=server.port,
                path=path,
                headers=HEADERS,
                tag=f"warm-{side}",
                requests=400,
                clients=args.clients,
                rooms=args.rooms,
                max_seconds=20,
            )
            accepted[side] += warm.statuses.get(200, 0)
        for number in range(args.rounds):
            order = list(SIDES) if number % 2 == 0 else list(reversed(SIDES))
            for side in order:
                result = run_load(
                    port=server.port,
                    path=SIDES[side],
                    headers=HEADERS,
                    tag=f"r{number}-{side}",
                    requests=args.requests,
                    clients=args.clients,
                    rooms=args.rooms,
                    max_seconds=args.max_seconds,
                )
                accepted[side] += result.statuses.get(200, 0)
                runs[side].append(result.summary())
                progress(f"round {number + 1} {side}", number + 1, args.rounds)
                say(
                    f"    {side}: {result.throughput:.0f} req/s, "
                    f"p50 {runs[side][-1]['p50_ms']} ms, p99 {runs[side][-1]['p99_ms']} ms, "
                    f"statuses {runs[side][-1]['statuses']}"
                )
    stored = {
        "baseline": BaselineRow.objects.count(),
        "webhook": Message.objects.filter(direction="in").count(),
    }
    figures = {}
    for side in SIDES:
        figures[side] = {
            key: statistics.median(run[key] for run in runs[side])
            for key in ("throughput_rps", "p50_ms", "p99_ms")
        }
    payload = {
        "what": "POST /rchat/webhook/ against a bare Django view inserting one row",
        "server": "gunicorn gthread, 2 workers x 4 threads, keep-alive, CONN_MAX_AGE=60",
        "clients": args.clients,
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "rooms": args.rooms,
        "sides": figures,
        "runs": runs,
        "accepted": accepted,
        "stored": stored,
        "throughput_ratio": round(
            figures["webhook"]["throughput_rps"] / figures["baseline"]["throughput_rps"], 3
        ),
        "p99_ratio": round(figures["webhook"]["p99_ms"] / figures["baseline"]["p99_ms"], 3),
        "targets": {"throughput_ratio_min": 0.8, "p99_ratio_max": 1.5},
    }
    write_json("webhook", payload)
    say(
        f"Webhook ingest done: {figures['webhook']['throughput_rps']:.0f} vs "
        f"{figures['baseline']['throughput_rps']:.0f} req/s (ratio "
        f"{payload['throughput_ratio']}), p99 ratio {payload['p99_ratio']}; "
        f"{stored['webhook']} messages stored for {accepted['webhook']} accepted calls."
    )


if __name__ == "__main__":
    main()
