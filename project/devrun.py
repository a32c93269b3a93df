"""`make run`: the demo's processes (the Procfile) started together, stopped together.

    python -m project.devrun [--port 8000] [--sandbox-port 8765]

Before anything starts it checks that both ports are free (one line naming a taken port
and how to pick another, exit status 2), then runs ``rchat_demo_setup`` and starts every
Procfile line. Each line of their output is shown once, stamped with the time in the
site's TIME_ZONE (the processes log without times of their own: RCHAT_LOG_FORMAT).

Why not honcho: on Ctrl-C it sends SIGTERM to each process's whole group, so Celery's
prefork children die under their parent (which logs "exited with 'signal 15 (SIGTERM)'"),
the worker misses honcho's five seconds and is killed, and make reports Error 130. Here
each process gets a session of its own, as if it had a terminal of its own, and on Ctrl-C
(or SIGTERM, SIGHUP) it gets what that terminal would send: SIGINT to its group, so
runserver's autoreloader and its server stop, and beat and the sandbox. The Celery worker
is the exception: its main process alone gets SIGTERM, a warm shutdown that stops the
pool children itself and exits 0 (after SIGINT it would exit 1). Only a process still
running after STOP_SECONDS gets SIGTERM, then SIGKILL.

From a terminal, the runner also makes itself the terminal's foreground process group
while it runs, so that Ctrl-C reaches it alone, not make: make then exits with the
runner's status, 0 after a clean stop, instead of being interrupted.
"""

import argparse
import contextlib
import os
import shlex
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import zoneinfo
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_SANDBOX_PORT = 8765
#: How long the processes have to stop on their own after Ctrl-C, then after SIGTERM.
STOP_SECONDS = 15
TERM_SECONDS = 5
#: Each record of the processes' logs, without a time: the runner stamps every line.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: The runner's own lines are shown under this name.
SELF = "run"

# Filled in by main() once Django's settings are loaded (the messages are translated).
_ = str


class UsageError(Exception):
    """A port or the Procfile is not usable: the message says why, in one line."""


def parse_port(value, variable):
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise UsageError(
            _("%(variable)s must be a port number from 1 to 65535, not %(value)r.")
            % {"variable": variable, "value": value}
        )
    return port


def port_is_free(port, host=HOST):
    """Whether a server could listen on ``host:port`` now (SO_REUSEADDR, as theirs do)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def next_free_port(port, taken=()):
    for candidate in range(port + 1, min(port + 200, 65536)):
        if candidate not in taken and port_is_free(candidate):
            return candidate
    return None


def check_ports(ports):
    """``ports``: [(variable, what, port)]; raise UsageError naming the first taken one."""
    numbers = [port for _variable, _what, port in ports]
    if len(set(numbers)) != len(numbers):
        raise UsageError(
            _("PORT and SANDBOX_PORT must differ (both are %(port)d).") % {"port": numbers[0]}
        )
    for variable, what, port in ports:
        if port_is_free(port):
            continue
        other = next_free_port(port, taken=numbers)
        raise UsageError(
            _(
                "Port %(port)d (%(what)s) is taken by another program: stop it, or choose "
                "another port with make run %(variable)s=%(other)s."
            )
            % {"port": port, "what": what, "variable": variable, "other": other or "…"}
        )


def read_procfile(path, variables):
    """[(name, argv)] from a Procfile, with $NAME replaced from ``variables``.

    ``python`` and ``celery`` at the start of a line are this interpreter's, so the
    processes run in the virtualenv that runs the runner.
    """
    processes = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise UsageError(
                _("%(path)s, line %(number)d: expected 'name: command', not %(line)r.")
                % {"path": path.name, "number": number, "line": line}
            )
        try:
            argv = shlex.split(string.Template(command).substitute(variables))
        except (KeyError, ValueError) as exc:
            raise UsageError(
                _("%(path)s, line %(number)d: cannot expand %(line)r (%(reason)s).")
                % {"path": path.name, "number": number, "line": line, "reason": exc}
            ) from exc
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "celery":
            argv[:1] = [sys.executable, "-m", "celery"]
        processes.append((name.strip(), argv))
    return processes


class Process:
    """One Procfile line, in a session of its own, its output stamped and shown."""

    def __init__(self, name, argv, runner):
        self.name, self.argv, self.runner = name, argv, runner
        self.popen = None
        self.reader = None
        # A Celery worker exits with status 1 after SIGINT and 0 after SIGTERM, the same
        # warm shutdown otherwise: it gets SIGTERM, its main process alone (its pool
        # children are its to stop), and SIGQUIT (cold shutdown) on a second Ctrl-C.
        self.celery_worker = argv[1:3] == ["-m", "celery"] and "worker" in argv

    def ask_to_stop(self, again=False):
        if not self.celery_worker:
            self.signal_group(signal.SIGINT)
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGQUIT if again else signal.SIGTERM)

    def start(self, env):
        self.popen = subprocess.Popen(  # noqa: S603 - the Procfile's own commands
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own session: no terminal's signal reaches it, only what we send.
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._show_output, daemon=True)
        self.reader.start()

    def _show_output(self):
        for raw in self.popen.stdout:
            self.runner.show(self.name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    @property
    def pid(self):
        return self.popen.pid

    def poll(self):
        return self.popen.poll()

    def signal_group(self, signum):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def group_alive(self):
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Runner:
    """Start the processes, wait for Ctrl-C (or one of them to exit), stop them all."""

    def __init__(self, processes, *, zone, out=None):
        self.zone = zone
        self.out = out or sys.stdout
        self.width = max(len(SELF), len("setup"), *(len(name) for name, _argv in processes))
        self.processes = [Process(name, argv, self) for name, argv in processes]
        self.lock = threading.Lock()
        self.stops = 0  # how many times we were asked to stop (Ctrl-C, SIGTERM, SIGHUP)
        self.wake = threading.Event()

    def show(self, name, line):
        stamp = datetime.now(self.zone).strftime("%H:%M:%S")
        with self.lock:
            self.out.write(f"{stamp} {name:<{self.width}} | {line}\n")
            self.out.flush()

    def say(self, message):
        self.show(SELF, message)

    def ask_to_stop(self, signum, frame):
        self.stops += 1
        self.wake.set()

    def run(self, env):
        for process in self.processes:
            process.start(env)
            self.say(
                _("%(name)s started (pid %(pid)d)") % {"name": process.name, "pid": process.pid}
            )
        first_exit = None
        while not self.stops:
            exited = [p for p in self.processes if p.poll() is not None]
            if exited:
                first_exit = exited[0]
                self.say(
                    _("%(name)s exited with status %(status)d: stopping the others")
                    % {"name": first_exit.name, "status": first_exit.poll()}
                )
                break
            self.wake.wait(0.2)
        return self.stop(first_exit)

    def stop(self, first_exit=None):
        if self.stops:
            self.say(_("Stopping (Ctrl-C again to hurry the worker) …"))
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.ask_to_stop()
        stops_seen = self.stops
        deadline = time.monotonic() + STOP_SECONDS
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            if self.stops > stops_seen:
                # Ctrl-C again: pass it on (Celery's second Ctrl-C is its cold shutdown).
                stops_seen = self.stops
                for process in running:
                    if process.poll() is None:
                        process.ask_to_stop(again=True)
            self.wake.clear()
            self.wake.wait(0.1)
        forced = self._force([p for p in running if p.poll() is None])
        for process in self.processes:
            process.reader.join(timeout=2)
            if process.group_alive():
                # A child left behind by its parent: it has no one to stop it but us.
                process.signal_group(signal.SIGKILL)
        failed = [
            p
            for p in self.processes
            if p not in forced and p.poll() not in (0, -signal.SIGINT) and p is not first_exit
        ]
        for process in failed:
            self.say(
                _("%(name)s stopped with status %(status)d")
                % {"name": process.name, "status": process.poll()}
            )
        if forced or failed:
            return 1
        if first_exit is not None:
            return first_exit.poll() or 1
        self.say(_("Stopped: %(names)s.") % {"names": ", ".join(p.name for p in self.processes)})
        return 0

    def _force(self, left):
        for process in left:
            self.say(
                _("%(name)s did not stop within %(seconds)d s: sending SIGTERM")
                % {"name": process.name, "seconds": STOP_SECONDS}
            )
            process.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + TERM_SECONDS
        while any(p.poll() is None for p in left) and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in left:
            if process.poll() is None:
                self.say(_("%(name)s still running: sending SIGKILL") % {"name": process.name})
                process.signal_group(signal.SIGKILL)
                process.popen.wait()
        return left


@contextlib.contextmanager
def foreground_group():
    """While it runs, make the runner the terminal's foreground process group (see above).

    Nothing happens without a terminal, or when the runner is not in the foreground
    (``make run &``): then whoever signals make's group stops make as well.
    """
    try:
        fd = sys.stdin.fileno()
        ours = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError):
        ours = False
    if not ours:
        yield
        return
    previous = os.getpgrp()
    # Changing the terminal's foreground group from a group that then is in the
    # background raises SIGTTOU: ignored for the two calls.
    old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        signal.signal(signal.SIGTTOU, old_ttou)
        yield
        return
    signal.signal(signal.SIGTTOU, old_ttou)
    try:
        yield
    finally:
        old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)
        signal.signal(signal.SIGTTOU, old_ttou)


def environment(port, sandbox_port, settings):
    """What every process runs with: the demo's URLs on these ports, one clock, one log format.

    A variable already set wins (RCHAT_SITE_URL for a tunnel, RCHAT_API_BASE_URL for
    another sandbox).
    """
    env = dict(os.environ)
    env.setdefault("RCHAT_SITE_URL", f"http://{HOST}:{port}")
    env.setdefault("RCHAT_API_BASE_URL", f"http://{HOST}:{sandbox_port}")
    env["RCHAT_LOG_FORMAT"] = LOG_FORMAT
    env["TZ"] = settings.TIME_ZONE
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main(argv=None):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.apps import apps
    from django.conf import settings

    if not apps.ready:
        django.setup()
    global _  # translated once the apps are ready
    from django.utils.translation import gettext

    _ = gettext

    parser = argparse.ArgumentParser(
        prog="make run",
        description=_("Run the demo: web, Celery worker and beat, and the R-Chat sandbox."),
    )
    parser.add_argument(
        "--port",
        default=os.environ.get("PORT") or DEFAULT_PORT,
        help=_("The site's port (PORT; default %(default)s)."),
    )
    parser.add_argument(
        "--sandbox-port",
        default=os.environ.get("SANDBOX_PORT") or DEFAULT_SANDBOX_PORT,
        help=_("The sandbox's port (SANDBOX_PORT; default %(default)s)."),
    )
    parser.add_argument("--procfile", type=Path, default=PROCFILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        port = parse_port(args.port, "PORT")
        sandbox_port = parse_port(args.sandbox_port, "SANDBOX_PORT")
        processes = read_procfile(
            args.procfile,
            {"PORT": port, "SANDBOX_PORT": sandbox_port, "VAR_DIR": settings.VAR_DIR},
        )
        check_ports(
            [("PORT", _("the site"), port), ("SANDBOX_PORT", _("the sandbox"), sandbox_port)]
        )
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2

    env = environment(port, sandbox_port, settings)
    runner = Runner(processes, zone=zoneinfo.ZoneInfo(settings.TIME_ZONE))
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, runner.ask_to_stop)
    with foreground_group():
        # Its lines (where to go, the demo login) are stamped like everyone's.
        setup = Process("setup", [sys.executable, "manage.py", "rchat_demo_setup"], runner)
        setup.start(env)
        interrupted = 0
        while setup.poll() is None:
            if runner.stops > interrupted:
                interrupted = runner.stops
                setup.signal_group(signal.SIGINT)
            runner.wake.clear()
            runner.wake.wait(0.1)
        setup.reader.join(timeout=2)
        if runner.stops:
            return 0
        if setup.poll():
            runner.say(_("rchat_demo_setup failed: nothing else was started."))
            return setup.poll()
        return runner.run(env)


if __name__ == "__main__":
    sys.exit(main())
