"""The webhook benchmark's method (bench/webhook.py, bench/loadgen.py, bench/common.py).

A benchmark that flatters is worse than none: these check that its ranges are the
rounds' own, that the client's CPU is the client's, that wrk sends a different valid
webhook on every request, and that a short run against the real servers writes ranges
and the client's CPU, with every 2xx accounted for by a stored row.
"""

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.common import ROOT, SIGNATURE, cpu_share, ratio_spread, run_child, show_spread, spread
from tests.conftest import _missing


def test_a_spread_is_the_median_with_the_lowest_and_highest_round():
    assert spread([3.0, 1.0, 2.0, None]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "runs": [3.0, 1.0, 2.0],
    }
    assert spread([]) == {"median": None, "min": None, "max": None, "runs": []}
    assert show_spread(spread([0.5, 0.25, 0.75])) == "0.50 (0.25-0.75)"


def test_a_ratio_is_taken_round_by_round_before_the_median():
    """The median of the rounds' ratios, not the ratio of the sides' medians."""
    figure = ratio_spread([10, 30, 40], [20, 30, 100])

    assert figure["runs"] == [0.5, 1.0, 0.4]
    assert (figure["median"], figure["min"], figure["max"]) == (0.5, 0.4, 1.0)
    # A round that could not measure the baseline is left out, not counted as 0.
    assert ratio_spread([1, 2], [0, 4])["runs"] == [0.5]


def test_a_childs_cpu_is_its_own_and_not_the_wall_clock():
    busy = run_child(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.4\n"
            "while time.process_time() < end: pass\nprint('done')",
        ],
        timeout=30,
    )
    idle = run_child([sys.executable, "-c", "import time; time.sleep(0.5)"], timeout=30)

    assert busy.returncode == 0 and busy.lines[-1] == "done"
    assert 0.35 <= busy.cpu_s <= busy.wall_s + 0.05
    assert idle.cpu_s < 0.2 < 0.5 <= idle.wall_s
    assert cpu_share(0.5, 2.0)["one_core_pct"] == 25.0


def test_a_child_past_its_timeout_is_killed_and_said_to_be():
    late = run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)

    assert late.timed_out and late.returncode != 0 and late.wall_s < 10


class _Capture(BaseHTTPRequestHandler):
    """Keeps every request's headers and body; answers as rchat's webhook does."""

    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, dict(self.headers), body))
        answer = b'{"status": "SUCCESS"}'
        # One write: headers and body apart would meet Nagle's algorithm and the
        # client's delayed ACK, and every request would take 40 ms.
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )

    def log_message(self, *args):
        pass


@pytest.fixture
def wrk():
    if shutil.which("wrk") is None:
        _missing("needs wrk: apt-get install wrk")


def test_wrk_sends_a_different_valid_webhook_on_every_request(wrk):
    from bench.loadgen import run_wrk
    from bench.webhook import HEADERS

    _Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_wrk(
            url=f"http://127.0.0.1:{server.server_port}",
            path="/rchat/webhook/",
            headers=HEADERS,
            tag="t1",
            room_prefix="bench",
            rooms=7,
            threads=2,
            connections=4,
            seconds=20,
            max_requests=300,
        )
    finally:
        server.shutdown()
        server.server_close()

    bodies = [json.loads(body) for _path, _headers, body in _Capture.seen]
    # Ended by the cap, not by the 20 s: each thread stops at its share of answers.
    assert result.capped and result.seconds < 15
    assert 300 <= result.requests <= len(bodies) <= result.sent <= 300 + 4
    assert result.statuses["2xx"] == result.requests and result.failed == 0
    assert {path for path, _h, _b in _Capture.seen} == {"/rchat/webhook/"}
    for _path, headers, _body in _Capture.seen:
        assert headers["X-Chatday-Signature-Token"] == SIGNATURE
        assert headers["Content-Type"] == "application/json; charset=utf-8"
    ids = [body["message"]["id"] for body in bodies]
    assert len(set(ids)) == len(ids) and all(i.startswith("t1-") for i in ids)
    assert {body["chat_id"] for body in bodies} == {f"bench-chat-{n}" for n in range(7)}
    first = bodies[0]
    assert first["message"]["type"] == "text" and first["channel"] == "line"
    assert first["message"]["data"].startswith("ข้อความ ")
    assert first["user"] == {"name": "สมชาย"}
    latency = result.summary()["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result.client_cpu["cpu_s"] >= 0 and result.client_cpu["threads"] == 2


@pytest.fixture
def bench_database(db):
    """A database of its own beside this test run's, migrated with bench.settings (the
    baseline's table), dropped afterwards."""
    from bench.common import database_create, database_drop, database_name, database_named
    from tests.processes import database_url

    url = database_url()
    url = database_named(url, f"{database_name(url)}_webhook_bench")
    database_create(url)
    yield url
    database_drop(url)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_short_webhook_run_reports_ranges_client_cpu_and_every_2xx_stored(
    wrk, bench_database, tmp_path
):
    """Both deployments, two rounds of a second per side."""
    done = subprocess.run(  # noqa: S603 - a fixed command line
        [
            sys.executable,
            "-m",
            "bench.webhook",
            "--database",
            bench_database,
            "--broker",
            "memory://",
            "--rounds",
            "2",
            "--seconds",
            "1",
            "--warm-seconds",
            "1",
            "--rooms",
            "20",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("Webhook ingest done in ")
    result = json.loads((tmp_path / "webhook.json").read_text())
    assert result["problems"] == []
    assert set(result["deployments"]) == {"recommended", "defaults"}
    recommended = result["deployments"]["recommended"]
    assert "--worker-class gthread --threads 4" in recommended["command"]
    assert recommended["environment"] == {"CONN_MAX_AGE": "60", "CONN_HEALTH_CHECKS": "1"}
    assert "--worker-class sync" in result["deployments"]["defaults"]["command"]
    assert result["deployments"]["defaults"]["environment"]["CONN_MAX_AGE"] == "0"
    for deployment in result["deployments"].values():
        for figure in deployment["ratios"].values():
            assert len(figure["runs"]) == 2
            assert figure["min"] <= figure["median"] <= figure["max"]
        for side in ("baseline", "webhook"):
            cpu = deployment["sides"][side]["cpu"]
            assert cpu["client"]["one_core_pct"]["median"] > 0
            assert cpu["client"]["machine_pct"]["max"] <= cpu["client"]["one_core_pct"]["max"]
            assert cpu["server"]["one_core_pct"]["median"] > 0
            for run in deployment["runs"][side]:
                ok = run["statuses"]["2xx"]
                stored = run["stored"]
                rows = (
                    [stored["baseline_rows"]]
                    if side == "baseline"
                    else [stored["messages"], stored["events"]]
                )
                assert ok > 0 and all(ok <= count <= ok + run["connections"] for count in rows)
    assert "targets" in recommended and "targets" not in result["deployments"]["defaults"]
    assert result["client_bottleneck"]["not_the_bottleneck"] is True
    assert set(result["recommended_over_defaults"]) == {"baseline", "webhook"}
