"""`make run` (project/devrun.py): it starts on the ports asked for, refuses a taken one
before starting anything, keeps the demo working on other ports with an existing
database, and Ctrl-C in a terminal stops every process cleanly and exits 0.

The processes run on SQLite and the filesystem broker in a temporary directory, as on a
fresh clone, whatever database this test run uses.
"""

import contextlib
import fcntl
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from project import devrun
from rchat.sandbox import SandboxClient
from tests.processes import ROOT, eventually

SITE_ZONE = "Asia/Bangkok"
#: A line of the runner's output: the time, the process's name, its line.
LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\w+) +\| (.*)$")
#: A time of the processes' own (logging's asctime): the runner's stamp is the only one.
OWN_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")
STARTED = re.compile(r"\| (\w+) started \(pid (\d+)\)")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _environment(var_dir):
    """A fresh clone's environment: no database, broker or URLs of this run; the machine
    on UTC, so that a stamp in the site's TIME_ZONE cannot be the machine's by chance."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CACHE_URL",
            "RCHAT_SITE_URL",
            "RCHAT_API_BASE_URL",
            "RCHAT_LOG_FORMAT",
            "PORT",
            "SANDBOX_PORT",
        }
    }
    env.update(RCHAT_VAR_DIR=str(var_dir), TIME_ZONE=SITE_ZONE, TZ="UTC")
    return env


def _make_run(*arguments):
    """``make run`` with this interpreter's virtualenv, its install taken as done."""
    return [
        "make",
        "--no-print-directory",
        "run",
        f"BIN={Path(sys.executable).parent}",
        "-o",
        ".venv/.installed",
        *arguments,
    ]


def _started(output):
    return {name: int(pid) for name, pid in STARTED.findall(output)}


def _kill_leftovers(output):
    """After a failed test: nothing the runner started may outlive it."""
    for pid in _started(output).values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _groups_alive(output):
    alive = []
    for name, pid in _started(output).items():
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(name)
    return alive


def _wait_until_serving(read, process, port, sandbox_port):
    """Every process is up: the worker and beat said so, the site and the sandbox answer."""

    def ready(text):
        if process.poll() is not None:
            return True
        if not ("celery@" in text and " ready." in text and "beat: Starting" in text):
            return False
        try:
            site = requests.get(f"http://127.0.0.1:{port}/rchat/login/", timeout=2)
            sandbox = requests.get(f"http://127.0.0.1:{sandbox_port}/", timeout=2)
        except requests.ConnectionError:
            return False
        return site.status_code == 200 and sandbox.status_code == 200

    text = eventually(read, ready, timeout=90, what="make run to serve")
    if process.poll() is not None:
        pytest.fail(f"make run exited with {process.returncode}:\n{text[-4000:]}")
    return text


class Terminal:
    """``make run`` in a pseudo-terminal of its own, as a newcomer types it."""

    def __init__(self, argv, env):
        master, slave = pty.openpty()
        self.process = subprocess.Popen(  # noqa: S603 - make with fixed arguments
            argv,
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            # The pty becomes the new session's controlling terminal, so that ^C
            # typed into it is the terminal's SIGINT to its foreground process group.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.master = master
        self.buffer = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.buffer.extend(data)

    @property
    def output(self):
        return bytes(self.buffer).decode("utf-8", "replace").replace("\r\n", "\n")

    def type_ctrl_c(self):
        os.write(self.master, b"\x03")

    def close(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _kill_leftovers(self.output)
        self.reader.join(timeout=5)
        os.close(self.master)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_in_a_terminal_stops_every_process_cleanly_and_make_run_exits_0(tmp_path):
    """Also: every line of every process is stamped once, in the site's TIME_ZONE."""
    port, sandbox_port = _free_ports(2)
    terminal = Terminal(
        _make_run(f"PORT={port}", f"SANDBOX_PORT={sandbox_port}"), _environment(tmp_path)
    )
    try:
        _wait_until_serving(lambda: terminal.output, terminal.process, port, sandbox_port)
        now = datetime.now(zoneinfo.ZoneInfo(SITE_ZONE))
        terminal.type_ctrl_c()
        pressed = time.monotonic()
        status = terminal.process.wait(timeout=40)
        took = time.monotonic() - pressed
        terminal.reader.join(timeout=5)
        output = terminal.output
    finally:
        terminal.close()

    assert status == 0, output[-4000:]
    assert took < devrun.STOP_SECONDS, output[-4000:]
    assert sorted(_started(output)) == ["beat", "sandbox", "web", "worker"]
    assert _groups_alive(output) == [], output[-4000:]
    assert "Stopped: web, worker, beat, sandbox." in output
    for bad in ("signal 15", "SIGTERM", "SIGKILL", "Error", "Traceback", "exited with"):
        assert bad not in output, (bad, output[-4000:])
    # The processes' URLs follow the ports.
    assert f"Admin:   http://127.0.0.1:{port}/admin/" in output
    assert f"Webhooks to:   http://127.0.0.1:{port}/rchat/webhook/" in output
    assert f"R-Chat sandbox listening on http://127.0.0.1:{sandbox_port}" in output

    # "^C" is the terminal's echo of the key.
    lines = [line.removeprefix("^C") for line in output.splitlines() if line]
    parsed = [LINE.match(line) for line in lines]
    assert [line for line, match in zip(lines, parsed, strict=True) if not match] == []
    assert {match[2] for match in parsed} == {"run", "setup", "web", "worker", "beat", "sandbox"}
    # The machine is on UTC (TZ=UTC), seven hours from Bangkok: these are the site's.
    for match in parsed:
        stamp = datetime.strptime(match[1], "%H:%M:%S").time()
        shown = datetime.combine(now.date(), stamp, now.tzinfo)
        gap = min(abs(shown - now + timedelta(days=d)) for d in (-1, 0, 1))
        assert gap < timedelta(minutes=5), match[0]
    # Nothing logs a time of its own: not Django, not Celery (nor its pool), not beat.
    assert [line for line in lines if OWN_STAMP.search(line)] == []
    assert any(m[2] == "worker" and m[3].startswith("INFO celery") for m in parsed)
    assert any(m[2] == "web" and m[3].startswith("INFO django.server") for m in parsed)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_on_other_ports_with_an_existing_database_the_demo_bot_still_answers(tmp_path):
    """A first run on some ports, a second on others: the credential, the sandbox's
    webhooks and the site's replies follow the ports, and SIGTERM stops it cleanly."""
    first_sandbox, port, sandbox_port = _free_ports(3)
    env = _environment(tmp_path)
    first = subprocess.run(
        [sys.executable, "manage.py", "rchat_demo_setup"],
        cwd=ROOT,
        env={**env, "RCHAT_API_BASE_URL": f"http://127.0.0.1:{first_sandbox}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen(  # noqa: S603 - this project's own runner
            [
                *(sys.executable, "-m", "project.devrun"),
                *("--port", str(port), "--sandbox-port", str(sandbox_port)),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    read = lambda: log.read_text("utf-8", "replace")  # noqa: E731
    try:
        _wait_until_serving(read, runner, port, sandbox_port)
        sandbox = SandboxClient(f"http://127.0.0.1:{sandbox_port}")
        sent = sandbox.send_as_user("demo-web", "ราคา", channel="web", name="Somchai")
        assert sent["webhook"]["status"] == 200, sent
        replies = eventually(
            lambda: sandbox.received("demo-web"),
            lambda messages: any("290" in str(m) for m in messages),
            timeout=60,
            what="the shop bot's price reply to reach the sandbox",
        )
        os.killpg(runner.pid, signal.SIGTERM)
        status = runner.wait(timeout=40)
        output = read()
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
        _kill_leftovers(read())

    assert "credential 'demo' already registered" in output
    assert any("290" in str(m) for m in replies)
    assert status == 0, output[-4000:]
    assert _groups_alive(output) == []
    assert "Stopped: web, worker, beat, sandbox." in output


@pytest.fixture
def taken_port():
    """A port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def fresh_environment(tmp_path, monkeypatch):
    for key in ("PORT", "SANDBOX_PORT"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


@pytest.mark.parametrize("which", ["PORT", "SANDBOX_PORT"])
def test_a_taken_port_is_named_in_one_line_and_nothing_starts(
    fresh_environment, taken_port, which, monkeypatch, capfd
):
    other = "SANDBOX_PORT" if which == "PORT" else "PORT"
    # The environment's variables, as `PORT=8001 make run` gives them.
    monkeypatch.setenv(which, str(taken_port))
    monkeypatch.setenv(other, str(_free_ports(1)[0]))

    status = devrun.main([])

    out, err = capfd.readouterr()
    assert status == 2
    assert out == ""  # rchat_demo_setup did not run: its first line is "[1/4] Migrating"
    (line,) = err.splitlines()
    assert f"Port {taken_port} " in line
    assert "is taken by another program" in line
    assert re.search(rf"make run {which}=\d+\.$", line), line


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "http"], "PORT must be a port number from 1 to 65535, not 'http'."),
        (["--sandbox-port", "70000"], "SANDBOX_PORT must be a port number from 1 to 65535"),
        (["--port", "8123", "--sandbox-port", "8123"], "PORT and SANDBOX_PORT must differ"),
    ],
)
def test_a_port_that_is_not_one_is_refused_with_the_reason(
    fresh_environment, arguments, message, capfd
):
    status = devrun.main(arguments)

    out, err = capfd.readouterr()
    assert status == 2
    assert out == ""
    assert message in err
    assert len(err.splitlines()) == 1


def test_the_procfile_runs_in_this_virtualenv_on_the_ports_given():
    commands = dict(
        devrun.read_procfile(devrun.PROCFILE, {"PORT": 8001, "SANDBOX_PORT": 8766, "VAR_DIR": "/v"})
    )

    assert list(commands) == ["web", "worker", "beat", "sandbox"]
    assert commands["web"] == [sys.executable, "manage.py", "runserver", "127.0.0.1:8001"]
    assert commands["worker"][:3] == [sys.executable, "-m", "celery"]
    assert "--schedule=/v/celerybeat-schedule" in commands["beat"]
    assert commands["sandbox"][-4:] == [
        *("--port", "8766"),
        *("--webhook-url", "http://127.0.0.1:8001/rchat/webhook/"),
    ]


def test_a_procfile_line_without_a_name_is_refused_with_its_number(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: python manage.py runserver\n\npython manage.py oops\n")

    with pytest.raises(devrun.UsageError, match=r"Procfile, line 3: expected 'name: command'"):
        devrun.read_procfile(procfile, {})
