"""The README's recipe quotes docs/example_site/ word for word, and names what the test runs.

tests/test_adoption.py applies the files themselves to a new site; this keeps the
README, which people copy from, the same as those files.
"""

import re

import rchat
from tests.packaging import ROOT

README = (ROOT / "README.md").read_text("utf-8")
EXAMPLE_SITE = ROOT / "docs" / "example_site"
QUOTE = re.compile(
    r"^(?P<indent> *)<!-- quoted from (?P<path>\S+) -->\n"
    r"(?P=indent)```\w*\n(?P<body>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)


def _quotes():
    return {
        match["path"]: "\n".join(
            line.removeprefix(match["indent"]) for line in match["body"].splitlines()
        )
        for match in QUOTE.finditer(README)
    }


def test_the_readme_quotes_every_file_of_the_example_site_exactly():
    quotes = _quotes()
    files = sorted(
        path.relative_to(ROOT).as_posix()
        for path in EXAMPLE_SITE.rglob("*.py")
        if "__pycache__" not in path.parts
    )

    assert sorted(quotes) == files
    for path, quoted in quotes.items():
        assert quoted.rstrip("\n") == (ROOT / path).read_text("utf-8").rstrip("\n"), path


def test_the_readme_gives_the_worker_and_beat_commands_the_adoption_test_runs():
    from tests.test_adoption import BEAT, WORKER

    assert " ".join(["celery", *WORKER]) in README
    assert " ".join(["celery", *BEAT]) in README


def test_the_wheel_the_readme_installs_is_this_version():
    named = set(re.findall(r"rchat-(\d[^-]*)-py3-none-any\.whl", README))

    assert named == {rchat.__version__}
