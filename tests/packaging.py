"""Build rchat's sdist and wheel once per test run, as a site would receive them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build_dists(outdir):
    """``python -m build``: the sdist, then the wheel built from that sdist.

    Building the wheel from the sdist (build's default) proves the sdist is complete.
    No build isolation: the build backend is requirements/dev.txt's pinned setuptools,
    so the build needs no download and gives the same wheel every time.
    """
    result = subprocess.run(  # noqa: S603 - a fixed command line
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    (wheel,) = Path(outdir).glob("rchat-*.whl")
    (sdist,) = Path(outdir).glob("rchat-*.tar.gz")
    return sdist, wheel
