"""rchat ships Thai: every string of the catalogue is translated and compiled."""

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rchat

LOCALE = Path(rchat.__file__).parent / "locale"
PO = LOCALE / "th" / "LC_MESSAGES" / "django.po"
MO = LOCALE / "th" / "LC_MESSAGES" / "django.mo"


def _entries(text):
    """(msgid, msgstr, flags) of each entry of a .po file, the header left out."""
    entries = []
    for block in text.split("\n\n"):
        flags = " ".join(re.findall(r"^#, (.*)$", block, re.M))
        msgid = "".join(re.findall(r'"(.*)"', _part(block, "msgid")))
        msgstr = "".join(re.findall(r'"(.*)"', _part(block, "msgstr")))
        if msgid:
            entries.append((msgid, msgstr, flags))
    return entries


def _part(block, keyword):
    match = re.search(rf"^{keyword}(?:\[0\])? (.*?)(?=^msg|\Z)", block, re.M | re.S)
    return match.group(1) if match else ""


def test_every_thai_string_is_translated_and_none_is_fuzzy():
    entries = _entries(PO.read_text(encoding="utf-8"))
    assert len(entries) > 100
    assert [msgid for msgid, msgstr, _ in entries if not msgstr] == []
    assert [msgid for msgid, _, flags in entries if "fuzzy" in flags] == []


def test_the_compiled_catalogue_matches_the_po_file():
    """A .po edited without `make messages` would ship stale Thai."""
    with MO.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog
    for msgid, _msgstr, _ in _entries(PO.read_text(encoding="utf-8")):
        key = msgid.encode().decode("unicode_escape").encode("latin-1").decode()
        found = catalog.get(key) or catalog.get((key, 0))
        assert found is not None, f"not compiled: {msgid!r}"


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="needs GNU gettext (xgettext)")
def test_no_string_in_the_code_is_missing_from_the_catalogue(tmp_path):
    """makemessages on the code finds nothing the Thai catalogue lacks."""
    app = tmp_path / "rchat"
    shutil.copytree(Path(rchat.__file__).parent, app, ignore=shutil.ignore_patterns("*.pyc"))
    # The django-admin script, not `python -m django`: run from inside the app, the
    # latter would put rchat/selectors.py in front of the standard library's.
    django_admin = Path(sys.executable).parent / "django-admin"
    run = subprocess.run(  # noqa: S603 - our own venv's django-admin, fixed arguments
        [str(django_admin), "makemessages", "-l", "th", "--no-obsolete"],
        cwd=app,
        # Without settings makemessages reads only the files (no project to import).
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    before = {m for m, _, _ in _entries(PO.read_text(encoding="utf-8"))}
    after = {m for m, _, _ in _entries((app / PO.relative_to(PO.parents[3])).read_text("utf-8"))}
    assert sorted(after - before) == []
