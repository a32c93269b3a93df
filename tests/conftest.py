"""Shared fixtures, and the rule for tests that need a server.

Tests marked ``postgres``, ``redis`` or ``rabbitmq`` need that server. On a machine
without it they are skipped, and the reason says which variable to set; with
``RCHAT_REQUIRE_SERVICES=1`` (as CI sets) a missing server fails the test instead.
"""

import os
import shutil
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

REQUIRE_SERVICES = os.environ.get("RCHAT_REQUIRE_SERVICES") == "1"

# --- Running on several CPUs (pytest-xdist: `make test` runs two workers) --------------
# Each xdist worker is a pytest process of its own: pytest-django gives it its own test
# database (test_<name>_gw0, …). Here it gets the rest of what tests share: a Redis
# database of its own as Celery's broker (a worker's tasks are never taken by the other
# worker's Celery processes, and one's flushdb() empties nothing of the other's), and a
# cache directory of its own (the API's rate-limit counts; tests clear it).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … or ""
#: Redis databases the tests use for themselves (tests/test_adoption.py's site).
_RESERVED_REDIS_DBS = {13, 14}


def _per_worker(url, index):
    """The broker URL for xdist worker ``index``: the next Redis databases up."""
    parts = urlsplit(url)
    free = [db for db in range(16) if db not in _RESERVED_REDIS_DBS]
    base = int(parts.path.strip("/") or 0)
    start = free.index(base) if base in free else 0
    return urlunsplit(parts._replace(path=f"/{free[(start + index) % len(free)]}"))


if XDIST_WORKER:
    _index = int(XDIST_WORKER.removeprefix("gw"))
    _broker = os.environ.get("CELERY_BROKER_URL", "")
    if _broker.startswith("redis://"):
        # Celery reads the variable before its settings; subprocesses inherit it.
        os.environ["CELERY_BROKER_URL"] = _per_worker(_broker, _index)
        settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    _cache = settings.CACHES["default"]
    if _cache["BACKEND"].endswith("FileBasedCache"):
        settings.CACHES = {
            **settings.CACHES,
            "default": {**_cache, "LOCATION": f"{_cache['LOCATION']}-{XDIST_WORKER}"},
        }


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


def amqp_url():
    """The RabbitMQ URL tests may use (RCHAT_AMQP_URL), or None when unset or unreachable."""
    url = os.environ.get("RCHAT_AMQP_URL", "")
    if not url.startswith("amqp://"):
        return None
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5672), timeout=1):
            return url
    except OSError:
        return None


# Which tests run together on one xdist worker, and in what order (`make test` runs
# ``--dist loadfile``): a file's tests stay together (its module fixtures are set up
# once), the packaging and adoption tests share one wheel build, and the longest groups
# are handed out first so that no worker is left with a long one at the end. (xdist's
# own ``loadgroup`` marks cannot do it on pytest 9: they rename node ids.)
XDIST_GROUPS = {"tests/test_adoption.py": "packaging", "tests/test_packaging.py": "packaging"}
LONGEST_FIRST = ("tests/test_faults.py", "packaging", "tests/test_browser.py")


def _xdist_group(nodeid):
    module = nodeid.split("::", 1)[0]
    return XDIST_GROUPS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the groups above as files of their own."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return _xdist_group(nodeid)

    # Hand the groups out in collection order (below), not by how many tests each has.
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    """In an xdist worker, after pytest-django's order (database tests first) and before
    the worker reports its collection: the longest groups first. A stable sort, so each
    group keeps pytest-django's order within it."""
    if not XDIST_WORKER:
        return

    def rank(item):
        group = _xdist_group(item.nodeid)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    session.items.sort(key=rank)


#: (mark, server, the variable to set) for the servers a test may need.
SERVERS = (
    ("postgres", "PostgreSQL", "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"),
    ("redis", "Redis", "CELERY_BROKER_URL=redis://127.0.0.1:6379/0"),
    ("rabbitmq", "RabbitMQ", "RCHAT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672//"),
)


def _server_missing(mark):
    if mark == "postgres":
        return "postgresql" not in settings.DATABASES["default"]["ENGINE"]
    return (redis_url if mark == "redis" else amqp_url)() is None


def pytest_runtest_setup(item):
    # One reason names every server the test lacks, so that setting the first variable
    # does not just reveal the next one.
    missing = [
        (server, variable)
        for mark, server, variable in SERVERS
        if item.get_closest_marker(mark) and _server_missing(mark)
    ]
    if missing:
        servers = " and ".join(server for server, _variable in missing)
        variables = " and ".join(variable for _server, variable in missing)
        _missing(f"needs {servers}: set {variables}")


@pytest.fixture(autouse=True)
def _rchat_defaults(settings, tmp_path):
    """Each test starts from the project's RCHAT settings with a known site URL, and
    passwords hashed cheaply: the default hasher is slow by design, and every user a
    test makes would pay for it (Django's own advice for test settings)."""
    settings.RCHAT = {**settings.RCHAT, "SITE_URL": "https://site.example"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _cache_fresh():
    """Each test starts with an empty cache: the API's rate-limit counts and who is on
    a conversation are kept there by user and room id, which a later test reuses."""
    from django.core.cache import caches

    for alias in settings.CACHES:
        caches[alias].clear()


@pytest.fixture(autouse=True)
def _send_budgets_fresh():
    """Each test starts with full send budgets and no 429 hold: neither the process's
    own nor the shared Redis's remember an earlier test's credential of the same id."""
    from rchat import ratelimit

    ratelimit._local = ratelimit._LocalBudgets()
    url = redis_url()
    if url is not None:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{ratelimit.KEY_PREFIX}*"))
        if keys:
            client.delete(*keys)
        client.close()


# --- Data every kind of test needs ------------------------------------------------------


@pytest.fixture
def credential():
    """A registered credential (``signature_token`` is the plain value), and a webhook
    credential cache that has not seen the rows of an earlier test."""
    from rchat import selectors
    from tests.factories import CredentialFactory

    selectors.webhook_credentials_clear()
    return CredentialFactory()


@pytest.fixture
def agent():
    """A member of the agents' group: may use the inbox and reply."""
    from tests.factories import user_with

    return user_with()


@pytest.fixture
def agent_client(client, agent):
    """The test client, signed in as ``agent``."""
    client.force_login(agent)
    return client


@pytest.fixture
def operator(client):
    """A superuser (staff, as the factory makes every user), signed in to the test
    client."""
    from tests.factories import UserFactory

    user = UserFactory(username="boss", is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def connect():
    """``connect(signal, receiver)`` for this test only: disconnected afterwards."""
    connected = []

    def _connect(signal, receiver):
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return receiver

    yield _connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


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


# --- Celery workers ---------------------------------------------------------------------


@pytest.fixture
def broker():
    """This run's Redis database, emptied first so that no leftover task runs."""
    import redis

    url = redis_url()
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def workers(transactional_db, broker, tmp_path):
    """Start Celery worker subprocesses on demand; all are stopped afterwards."""
    from tests.processes import start_worker, stop

    started = []

    def start(*, concurrency=4):
        log = tmp_path / f"worker-{len(started)}.log"
        process = start_worker(broker_url=broker, log=log, concurrency=concurrency)
        started.append(process)
        return process

    yield start
    for process in started:
        stop(process)


# --- A stand-in for R-Chat --------------------------------------------------------------
# Two, each for what the other cannot do. ``httpserver`` (pytest-httpserver) answers
# exactly what a test tells it, any status, header or body, and records each request:
# for the client's and delivery's handling of every answer R-Chat might give. The
# sandbox (``sandbox`` above, or ``rchat_sandbox`` as a process) plays R-Chat whole:
# Register, Send Message, end users writing to the site's webhook, faults; for the
# end-to-end paths and the demo.


@pytest.fixture(scope="session")
def make_httpserver():
    """pytest-httpserver's server, started once per run, threaded: a slow handler (a
    time-out test) does not hold up the next request. Tests take it as ``httpserver``,
    which has no expectations left over from an earlier test."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def celery_eager():
    """Celery runs each task at once, in this process (no worker, no broker)."""
    from celery import current_app

    conf = current_app.conf
    before = conf.task_always_eager
    conf.task_always_eager = True
    yield
    conf.task_always_eager = before


# --- The package as a site installs it -------------------------------------------------


@pytest.fixture(scope="session")
def built_dists(tmp_path_factory):
    """rchat's sdist and wheel, built once per run: ``(sdist_path, wheel_path)``."""
    from tests.packaging import build_dists

    return build_dists(tmp_path_factory.mktemp("dist"))


# --- The run's summary ---------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Name every skipped test under its reason, so a run without servers says what it
    left out (pytest's own line gives a count and a file per reason)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    by_reason = {}
    for report in skipped:
        # (path, line, reason); a list when the report came from an xdist worker.
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, (tuple, list)) else str(longrepr)
        by_reason.setdefault(reason.removeprefix("Skipped: "), []).append(report.nodeid)
    terminalreporter.section(f"{len(skipped)} skipped, and why")
    for reason, nodeids in sorted(by_reason.items()):
        terminalreporter.write_line(f"{reason} ({len(nodeids)}):")
        for nodeid in nodeids:
            terminalreporter.write_line(f"    {nodeid}")


# --- A real browser: Debian's Chromium through Playwright ----------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    """Chromium through Playwright, started once per test module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("needs Playwright: pip install -r requirements/dev.txt")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        _missing(f"needs Chromium at {CHROMIUM}: apt-get install chromium")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM
    # calls are still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium, live_server):
    """The browser, and after the test no request of its pages still running.

    A page going away still talks to the site (presence.js's "left" beacon, a poll in
    flight); the test database is emptied right after the test, and on SQLite a
    request still reading it makes that fail. So the pages left open are stopped from
    sending more and closed, then the live server must be quiet for a moment (no
    request being served for 0.3 s: a beacon sent as a page closed has arrived).
    """
    yield chromium
    for context in chromium.contexts:
        context.route("**/*", lambda route: route.abort())
        context.close()
    deadline = time.monotonic() + 10
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.3:
        if any("process_request_thread" in thread.name for thread in threading.enumerate()):
            quiet_since = time.monotonic()
        time.sleep(0.02)
