"""Shared fixtures, and the rule for tests that need a server.

Tests marked ``postgres`` or ``redis`` need that server. On a machine without it they
are skipped, and the reason says which variable to set; with
``RCHAT_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test instead.
"""

import os
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings

REQUIRE_SERVICES = os.environ.get("RCHAT_REQUIRE_SERVICES") == "1"


def _missing(reason):
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (RCHAT_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


def redis_url():
    """The Redis URL tests may use, or None when none is configured and reachable."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        return None
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379), timeout=1):
            return url
    except OSError:
        return None


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres"):
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            _missing("needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")
    if item.get_closest_marker("redis") and redis_url() is None:
        _missing("needs Redis: set CELERY_BROKER_URL=redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _rchat_defaults(settings, tmp_path):
    """Each test starts from the project's RCHAT settings with a known site URL."""
    settings.RCHAT = {**settings.RCHAT, "SITE_URL": "https://site.example"}


# --- The R-Chat sandbox ------------------------------------------------------------------


@pytest.fixture
def sandbox():
    """A fake R-Chat on a free port (``rchat.sandbox.Sandbox``), stopped after the test.

    It knows no webhook URL: set ``sandbox.webhook_url`` to where end users' messages
    should go. Its ``url`` is the base URL to give a credential.
    """
    from rchat.sandbox import Sandbox

    with Sandbox(port=0) as running:
        yield running
