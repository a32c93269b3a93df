"""The test suite on each supported Django, each with its own Python.

    nox                             every cell (`make matrix`)
    nox -s "tests(django='6.1')"    one cell
    nox -s "tests(django='6.1')" -- -k webhook    arguments after -- go to pytest

Each cell installs requirements/dev.txt (Django 5.2 and everything else, pinned), then
the cell's Django pin over it, then rchat itself; the virtualenvs live under .nox/.
The services come from the environment as for `make test` (DATABASE_URL,
CELERY_BROKER_URL, RCHAT_REQUIRE_SERVICES).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

# (Python, Django, the pins file that overrides dev.txt's Django, or None for 5.2)
CELLS = [
    ("3.11", "5.2", None),
    ("3.12", "6.0", "requirements/django-6.0.txt"),
    ("3.13", "6.1", "requirements/django-6.1.txt"),
]

nox.options.sessions = ["tests"]


def _pyenv_bin(version):
    """The bin directory of pyenv's newest Python ``version`` (e.g. "3.12"), or None."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    pyenv = shutil.which("pyenv") or root / "bin" / "pyenv"
    try:
        prefix = subprocess.run(  # noqa: S603 - a fixed command line
            [str(pyenv), "prefix", version], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        prefix = ""
    if prefix:
        return Path(prefix.split(os.pathsep)[0]) / "bin"
    # No pyenv command: look in its versions directory (3.12.0, 3.12.1, ... newest wins).
    pattern = re.compile(rf"{re.escape(version)}\.(\d+)")
    found = []
    for path in (root / "versions").glob(f"{version}.*"):
        if match := pattern.fullmatch(path.name):
            found.append((int(match.group(1)), path))
    return max(found)[1] / "bin" if found else None


# pyenv's shims answer only for the versions it has selected, so put each cell's
# interpreter itself on PATH, where nox looks for "3.12" and the like.
_extra = [str(path) for python, _, _ in CELLS if (path := _pyenv_bin(python)) and path.is_dir()]
os.environ["PATH"] = os.pathsep.join([*_extra, os.environ.get("PATH", "")])


@nox.session
@nox.parametrize(
    "python, django, pins",
    [nox.param(python, django, pins, id=f"django='{django}'") for python, django, pins in CELLS],
)
def tests(session, django, pins):
    session.install("-r", "requirements/dev.txt")
    if pins:
        session.install("-r", pins)
    session.install("--no-deps", "-e", ".")
    # The cell runs the Django it is named after, or fails here.
    session.run(
        "python",
        "-c",
        "import sys, django; print('Django', django.__version__, 'on Python', sys.version);"
        f" assert '%d.%d' % django.VERSION[:2] == '{django}', django.__version__",
    )
    session.run("python", "-m", "pytest", *session.posargs)
