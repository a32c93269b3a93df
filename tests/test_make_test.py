"""What `make test` prints: pip's install as progress and one line (its output in a log),
and, at the end, every skipped test named under the reason it was skipped for."""

import os
import re
import subprocess
import sys

import pytest

from tests.processes import ROOT

PIP_INSTALL = ROOT / "project" / "pip_install.py"


def _pip_install(log, *arguments):
    """project/pip_install.py as the Makefile runs it."""
    return subprocess.run(  # noqa: S603 - this project's own script
        [sys.executable, str(PIP_INSTALL), "--log", str(log), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_pip_install_shows_one_line_and_keeps_pips_output_in_the_log(tmp_path):
    log = tmp_path / "var" / "pip.log"

    # Nothing to download or change: Django is installed; --no-index keeps pip offline.
    result = _pip_install(log, "--no-index", "--no-deps", "Django")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"    0 package(s) installed, 1 already there (pip's output: {log})\n"
    assert result.stderr == ""
    written = log.read_text("utf-8")
    assert "-m pip install --disable-pip-version-check --progress-bar off --no-index" in written
    assert "Requirement already satisfied: Django" in written


def test_a_failed_pip_install_shows_pips_last_lines_and_where_its_log_is(tmp_path):
    log = tmp_path / "pip.log"
    missing = tmp_path / "no-such-requirements.txt"

    result = _pip_install(log, "--no-index", "-r", str(missing))

    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"    pip failed (exit status {result.returncode}); its last lines:"
    assert any("Could not open requirements file" in line for line in lines[1:-1])
    assert lines[-1] == f"    The whole of pip's output: {log}"
    assert "Could not open requirements file" in log.read_text("utf-8")


def test_pip_install_without_anything_to_install_says_so():
    result = _pip_install("unused.log")

    assert result.returncode == 2
    assert "say what to install" in result.stderr


#: One test per reason a test is skipped on a machine without servers.
SKIPPED = {
    "tests/test_webhook_worker.py::test_the_worker_runs_the_bot_hook_once_per_new_message": (
        "needs PostgreSQL and Redis: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        " and CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
    ),
    "tests/test_broker.py::test_a_wake_up_is_published_by_name_with_its_arguments": (
        "needs Redis: set CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
    ),
    "tests/test_ingest.py::test_inside_a_transaction_the_work_waits_for_its_commit": (
        "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
    ),
    "tests/test_search.py::test_the_migration_created_the_trigram_indexes": (
        "trigram indexes exist on PostgreSQL only"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["2", "0"], ids=["xdist", "one-process"])
def test_every_skipped_test_is_named_under_its_reason(tmp_path, workers):
    """As `make test` runs on a machine with no server: with xdist's two workers (their
    reports reach the main process as lists, not tuples) and in one process."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTEST_")
        and key
        not in {"DATABASE_URL", "CELERY_BROKER_URL", "RCHAT_AMQP_URL", "RCHAT_REQUIRE_SERVICES"}
    }
    env["RCHAT_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(  # noqa: S603 - pytest on this project's tests
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"),
            *("-n", workers, "--dist", "loadfile", *SKIPPED),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout

    assert result.returncode == 0, output[-3000:]
    lines = output.splitlines()
    (start,) = [i for i, line in enumerate(lines) if re.match(r"^=+ 4 skipped, and why =+$", line)]
    named = {}
    reason = None
    for line in lines[start + 1 :]:
        if not line:
            continue
        if line.startswith("    "):
            named[line.strip()] = reason
        elif match := re.match(r"^(.*) \((\d+)\):$", line):
            reason = match[1]
        else:
            break
    assert named == SKIPPED, output[-3000:]
