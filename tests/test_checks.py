"""System checks: each one fires on the broken setup it names, and stays quiet otherwise."""

from io import StringIO

import pytest
from celery import current_app
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from rchat.checks import check_credentials, check_settings
from tests.factories import CredentialFactory


def ids(messages):
    return [message.id for message in messages]


def only(messages, check_id):
    found = [message for message in messages if message.id == check_id]
    assert len(found) == 1, ids(messages)
    return found[0]


@pytest.fixture
def rchat(settings):
    """Set RCHAT options for one test, on top of the project's."""

    def apply(**options):
        settings.RCHAT = {**settings.RCHAT, **options}

    return apply


@pytest.fixture
def broker(monkeypatch):
    """Point the running Celery app at another broker for one test, then restore it."""
    # Celery prefers the CELERY_BROKER_URL environment variable to its configuration.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    conf = current_app.conf
    # Reading conf.broker_write_url falls back to broker_url; only the key itself says
    # whether a write URL was set (another test's may be left in it).
    monkeypatch.setitem(conf, "broker_write_url", None)
    saved = (conf.broker_url, conf.broker_transport_options)

    def apply(url, **transport_options):
        conf.broker_url = url
        conf.broker_transport_options = transport_options

    apply("redis://127.0.0.1:6379/1", visibility_timeout=3600)
    yield apply
    conf.broker_url, conf.broker_transport_options = saved


@pytest.fixture
def quiet(rchat, broker, settings):
    """A setup with nothing to report, so each test changes one thing."""
    rchat(API_BASE_URL="https://api.r-chat.example", SITE_URL="https://shop.example")
    settings.DEBUG = False


# --- E001 / E004: URLs --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["api.r-chat.example", "ftp://api.r-chat.example", "https://"])
def test_e001_fires_for_an_api_base_url_that_is_not_http(quiet, rchat, value):
    rchat(API_BASE_URL=value)

    error = only(check_settings(), "rchat.E001")

    assert repr(value) in error.msg
    assert "https://" in error.hint


@pytest.mark.parametrize("value", ["", "https://api.r-chat.example", "http://127.0.0.1:8001/x"])
def test_e001_is_quiet_for_an_http_url_or_none(quiet, rchat, value):
    rchat(API_BASE_URL=value)

    assert "rchat.E001" not in ids(check_settings())


def test_e004_fires_for_a_site_url_that_is_not_http(quiet, rchat):
    rchat(SITE_URL="shop.example")

    error = only(check_settings(), "rchat.E004")

    assert "'shop.example'" in error.msg
    assert "public origin" in error.hint


def test_e004_is_quiet_for_an_https_site_url(quiet):
    assert check_settings() == []


# --- E002: encryption keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, says",
    [
        (["not-a-fernet-key"], '["ENCRYPTION_KEYS"][0] is not a Fernet key'),
        ([Fernet.generate_key().decode(), "short"], '["ENCRYPTION_KEYS"][1] is not a Fernet key'),
        (Fernet.generate_key().decode(), "must be a list of keys, not str"),
    ],
    # Fixed ids: a generated key in the id would differ between pytest-xdist's workers.
    ids=["not-a-key", "second-not-a-key", "a-string-not-a-list"],
)
def test_e002_fires_for_invalid_encryption_keys(quiet, rchat, keys, says):
    rchat(ENCRYPTION_KEYS=keys)

    error = only(check_settings(), "rchat.E002")

    assert says in error.msg
    assert "python manage.py rchat_generate_key" in error.hint


@pytest.mark.parametrize("keys", [[], [Fernet.generate_key().decode()] * 2])
def test_e002_is_quiet_for_valid_keys_or_none(quiet, rchat, keys):
    rchat(ENCRYPTION_KEYS=keys)

    assert check_settings() == []


# --- E003: unknown options ------------------------------------------------------------------------


def test_e003_fires_for_an_unknown_option_and_lists_the_known_ones(quiet, rchat):
    rchat(API_BASEURL="https://typo.example", READ_TIMEOUT=3)

    error = only(check_settings(), "rchat.E003")

    assert error.msg == "settings.RCHAT has unknown option(s): API_BASEURL."
    assert "API_BASE_URL" in error.hint
    assert "READ_TIMEOUT" in error.hint


# --- E005: active credentials need a base URL (database-tagged) ----------------------------------


@pytest.mark.django_db
def test_e005_fires_for_an_active_credential_without_any_base_url(quiet, rchat):
    rchat(API_BASE_URL="")
    CredentialFactory(name="shop", base_url="", status="active")

    error = only(check_credentials(databases=["default"]), "rchat.E005")

    assert "'shop'" in error.msg
    assert "API_BASE_URL" in error.hint


@pytest.mark.django_db
@pytest.mark.parametrize(
    "api_base_url, base_url, status",
    [
        ("https://api.r-chat.example", "", "active"),
        ("", "https://api.r-chat.example", "active"),
        ("", "", "new"),
        ("", "", "invalid"),
    ],
)
def test_e005_is_quiet_when_every_active_credential_can_reach_r_chat(
    quiet, rchat, api_base_url, base_url, status
):
    rchat(API_BASE_URL=api_base_url)
    CredentialFactory(base_url=base_url, status=status)

    assert check_credentials(databases=["default"]) == []


def test_e005_does_not_touch_the_database_unless_asked():
    """Without ``--database`` (plain ``manage.py check``) the credential check is skipped."""
    # No django_db mark: a query here would fail the test.
    assert check_credentials(databases=None) == []


@pytest.mark.django_db
def test_manage_py_check_database_reports_e005(quiet, rchat):
    rchat(API_BASE_URL="")
    CredentialFactory(name="shop", base_url="", status="active")

    with pytest.raises(SystemCheckError) as caught:
        call_command("check", databases=["default"], stdout=StringIO(), stderr=StringIO())

    assert "rchat.E005" in str(caught.value)
    assert "Active credential 'shop' has no base URL" in str(caught.value)


# --- W001 / W002: the Celery broker -------------------------------------------------------------


@pytest.mark.parametrize("url", ["filesystem://", "memory://"])
def test_w001_fires_for_a_development_broker_with_debug_off(quiet, broker, url):
    broker(url)

    warning = only(check_settings(), "rchat.W001")

    assert "CELERY_BROKER_URL" in warning.hint


def test_w001_is_quiet_with_debug_on(quiet, broker, settings):
    broker("filesystem://")
    settings.DEBUG = True

    assert check_settings() == []


def test_w001_is_quiet_for_redis(quiet, broker):
    broker("redis://127.0.0.1:6379/1", visibility_timeout=3600)

    assert check_settings() == []


@pytest.mark.parametrize("visibility", [600, 300])
def test_w002_fires_when_visibility_timeout_is_not_above_the_longest_retry(
    quiet, rchat, broker, visibility
):
    rchat(RETRY_MAX_DELAY=600)
    broker("redis://127.0.0.1:6379/1", visibility_timeout=visibility)

    warning = only(check_settings(), "rchat.W002")

    assert f"visibility_timeout ({visibility}s)" in warning.msg
    assert "RETRY_MAX_DELAY" in warning.hint


def test_w002_uses_redis_default_visibility_timeout_of_one_hour(quiet, rchat, broker):
    rchat(RETRY_MAX_DELAY=7200)
    broker("rediss://cache.example:6380/0")

    assert "(3600s)" in only(check_settings(), "rchat.W002").msg


def test_w002_reads_the_first_of_several_broker_urls(quiet, rchat, broker):
    rchat(RETRY_MAX_DELAY=600)
    broker(["redis://a.example:6379/0", "redis://b.example:6379/0"], visibility_timeout=60)

    assert ids(check_settings()) == ["rchat.W002"]


def test_w002_is_quiet_when_visibility_timeout_is_above_the_longest_retry(quiet, rchat, broker):
    rchat(RETRY_MAX_DELAY=600)
    broker("redis://127.0.0.1:6379/1", visibility_timeout=601)

    assert check_settings() == []


def test_w002_does_not_apply_to_other_brokers(quiet, rchat, broker):
    rchat(RETRY_MAX_DELAY=7200)
    broker("amqp://guest@127.0.0.1//")

    assert check_settings() == []


# --- Through Django's check framework ---------------------------------------------------------


def test_rchat_checks_are_registered_with_django(quiet, rchat):
    rchat(API_BASE_URL="not a url", SITE_URL="nor this", TYPO=1)

    found = ids(run_checks())

    assert {"rchat.E001", "rchat.E003", "rchat.E004"} <= set(found)


def test_manage_py_check_fails_on_an_error_and_shows_the_hint(quiet, rchat):
    rchat(API_BASE_URL="api.r-chat.example")

    with pytest.raises(SystemCheckError) as caught:
        call_command("check", stdout=StringIO(), stderr=StringIO())

    text = str(caught.value)
    assert "(rchat.E001) RCHAT[\"API_BASE_URL\"] = 'api.r-chat.example' is not an http(s)" in text
    assert "HINT: Use R-Chat's API origin" in text


def test_manage_py_check_passes_on_a_good_setup(quiet):
    out = StringIO()

    call_command("check", stdout=out, stderr=StringIO())

    assert "System check identified no issues" in out.getvalue()


def test_e006_fires_for_an_on_message_hook_that_cannot_be_imported(rchat):
    """A bot hook path with a typo is reported by `check`, not at the first message."""
    rchat(ON_MESSAGE="nowhere.hook")
    assert "cannot be imported" in only(check_settings(), "rchat.E006").msg


def test_e006_fires_for_an_on_message_hook_that_is_not_callable(rchat):
    rchat(ON_MESSAGE="rchat.conf.DEFAULTS")
    assert "is not callable" in only(check_settings(), "rchat.E006").msg


def test_e006_is_quiet_for_an_importable_hook(rchat):
    rchat(ON_MESSAGE="rchat.services.message_hook_run")
    assert "rchat.E006" not in ids(check_settings())


# --- E007: the apps rchat needs ---------------------------------------------------------


def test_e007_names_each_app_rchat_needs_that_is_not_installed(settings):
    settings.INSTALLED_APPS = [
        app
        for app in settings.INSTALLED_APPS
        if app not in ("rest_framework.authtoken", "drf_spectacular_sidecar")
    ]

    error = only(check_settings(), "rchat.E007")

    assert error.msg == (
        "rchat needs these apps in INSTALLED_APPS: rest_framework.authtoken, "
        "drf_spectacular_sidecar."
    )


def test_e007_is_quiet_when_every_app_is_installed():
    assert "rchat.E007" not in ids(check_settings())


# --- W003: LOGIN_URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "login_url",
    ["rchat:login", "/rchat/login/", "admin:login", "https://sso.example.com/login"],
)
def test_w003_is_quiet_for_a_login_url_that_resolves_or_is_another_sites(settings, login_url):
    from rchat.checks import check_login_url

    settings.LOGIN_URL = login_url

    assert check_login_url() == []


@pytest.mark.parametrize("login_url", ["/accounts/login/", "login", "no:such-name"])
def test_w003_warns_when_login_url_is_not_a_page_of_the_site(settings, login_url):
    """A new site's default, /accounts/login/, is a 404: the inbox's redirect would be too."""
    from rchat.checks import check_login_url

    settings.LOGIN_URL = login_url

    (warning,) = check_login_url()

    assert warning.id == "rchat.W003"
    assert repr(login_url) in warning.msg
    assert 'LOGIN_URL = "rchat:login"' in warning.hint


# --- W004 / E008: the cache the API's rate limits count in ------------------------------


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/1",
    }
}


def test_w004_warns_when_rate_limits_count_in_a_per_process_cache(settings):
    from rchat.checks import check_throttle_cache

    settings.CACHES = LOCMEM

    (warning,) = check_throttle_cache()

    assert warning.id == "rchat.W004" and "LocMemCache" in warning.msg
    assert "RedisCache" in warning.hint


def test_w004_is_quiet_with_a_shared_cache_or_without_rate_limits(settings, rchat):
    from rchat.checks import check_throttle_cache

    settings.CACHES = REDIS
    assert check_throttle_cache() == []
    settings.CACHES = LOCMEM
    rchat(API_THROTTLE_RATES={"user": None, "write": None})
    assert check_throttle_cache() == []


def test_w004_follows_the_cache_named_in_throttle_cache(settings, rchat):
    from rchat.checks import check_throttle_cache

    settings.CACHES = {**REDIS, "local": LOCMEM["default"]}
    rchat(THROTTLE_CACHE="local")
    assert [m.id for m in check_throttle_cache()] == ["rchat.W004"]
    rchat(THROTTLE_CACHE="nope")
    (error,) = check_throttle_cache()
    assert error.id == "rchat.E008" and "'nope'" in error.msg


# --- W005: send rate limits without a shared Redis ------------------------------------


def test_w005_warns_when_a_send_rate_is_set_without_a_shared_redis(quiet, rchat, broker):
    """Each process then keeps its own budget: the warning says so and names REDIS_URL."""
    broker("filesystem://")
    rchat(SEND_RATE=5, REDIS_URL="")

    warning = only(check_settings(), "rchat.W005")

    assert 'RCHAT["SEND_RATE"]' in warning.msg and "5" in warning.msg
    assert "number of worker processes" in warning.msg
    assert 'RCHAT["REDIS_URL"]' in warning.hint


@pytest.mark.parametrize(
    ("broker_url", "redis_url"),
    [
        ("redis://127.0.0.1:6379/1", ""),  # Celery's broker is the shared Redis
        ("amqp://guest@127.0.0.1//", "redis://127.0.0.1:6379/2"),  # a Redis of its own
    ],
)
def test_w005_is_quiet_with_a_shared_redis(quiet, rchat, broker, broker_url, redis_url):
    broker(broker_url)
    rchat(SEND_RATE=5, REDIS_URL=redis_url)

    assert "rchat.W005" not in ids(check_settings())


def test_w005_is_quiet_without_a_send_rate(quiet, rchat, broker):
    broker("filesystem://")
    rchat(SEND_RATE=None, REDIS_URL="")

    assert "rchat.W005" not in ids(check_settings())
