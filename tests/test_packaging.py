"""The built wheel carries everything Django loads from the app, with honest metadata.

Sites install the wheel, not this checkout: a template or a compiled catalogue left
out of it is a 500 or an untranslated page that no test on the checkout would see.
"""

import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.packaging import ROOT

pytestmark = pytest.mark.slow

APP = ROOT / "rchat"


def _files_under(*parts, suffixes=None):
    base = APP.joinpath(*parts)
    found = []
    for path in base.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if suffixes is None or path.suffix in suffixes:
            found.append(path.relative_to(ROOT).as_posix())
    assert found, f"nothing found under {base}"
    return found


def _runtime_files():
    """Every file Django reads from rchat/ at run time, besides the Python modules."""
    return sorted(
        _files_under("templates")
        + _files_under("static")
        + _files_under("locale", suffixes={".mo"})
        + _files_under("sandbox", "assets")
        + _files_under("migrations", suffixes={".py"})
        + _files_under("management", "commands", suffixes={".py"})
    )


def _metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_every_template_static_file_catalogue_and_asset_is_in_the_wheel(built_dists):
    _sdist, wheel = built_dists
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())

    missing = [path for path in _runtime_files() if path not in packed]

    assert missing == []
    # The admin overrides are the files an earlier wheel left out.
    assert "rchat/templates/admin/rchat/chatroom/change_form.html" in packed


def test_the_sdist_carries_the_same_files_and_the_license_of_the_package(built_dists):
    sdist, _wheel = built_dists
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    prefix = names[0].split("/", 1)[0]
    packed = {name.removeprefix(prefix + "/") for name in names}

    assert [path for path in _runtime_files() if path not in packed] == []
    assert {"pyproject.toml", "README.md", "LICENSE"} <= packed


def test_twine_finds_the_metadata_valid(built_dists):
    result = subprocess.run(  # noqa: S603 - a fixed command line
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, built_dists)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_wheel_admits_every_supported_django_and_brings_celerys_redis_transport(built_dists):
    metadata = _metadata(built_dists[1])
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    runtime = {r.name.lower(): r for r in requires if r.marker is None}

    django = runtime["django"].specifier
    assert all(Version(v) in django for v in ("5.2.19", "6.0.10", "6.1.3"))
    assert Version("5.1") not in django and Version("6.2") not in django
    # kombu's Redis transport imports what only Celery's redis extra installs.
    assert "redis" in runtime["celery"].extras
    extras = {
        extra: [r.name for r in requires if r.marker and r.marker.evaluate({"extra": extra})]
        for extra in metadata.get_all("Provides-Extra")
    }
    assert extras == {"postgres": ["psycopg"], "rabbitmq": ["amqp"]}
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier")
    for version in ("5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {version}" in classifiers
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers


def test_the_version_is_the_newest_entry_of_the_changelog(built_dists):
    version = _metadata(built_dists[1])["Version"]
    changelog = (ROOT / "CHANGELOG.md").read_text("utf-8")

    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)

    assert newest is not None and newest.group(1) == version
    import rchat

    assert rchat.__version__ == version
