"""Settings for benchmarks and fault scenarios: the project's, plus the baseline app.

Both sides of every comparison run under these settings, in the same server. DEBUG is
off (Django keeps every query in memory with it on, which a long run would notice).
``CONN_MAX_AGE`` comes from the environment through the project's settings and
``CONN_HEALTH_CHECKS=1`` turns Django's check of a reused connection on, so that
``bench.common.gunicorn`` can start either deployment the webhook benchmark compares.
A few ``RCHAT_BENCH_*`` variables shorten rchat's waits for the fault scenarios, so a
run is bounded in time; their values are printed with the results.
"""

import os

from project.settings import *  # noqa: F403
from project.settings import DATABASES, INSTALLED_APPS, LOGGING, RCHAT

DEBUG = False
INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
ROOT_URLCONF = "bench.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
DATABASES["default"]["CONN_HEALTH_CHECKS"] = os.environ.get("CONN_HEALTH_CHECKS") == "1"
LOGGING = {
    **LOGGING,
    "loggers": {
        **LOGGING["loggers"],
        "rchat": {"handlers": [], "level": os.environ.get("RCHAT_LOG_LEVEL", "WARNING")},
    },
}

RCHAT = {**RCHAT}
for _name, _cast in (
    ("STALE_AFTER_SECONDS", int),
    ("RETRY_BASE_DELAY", float),
    ("RETRY_MAX_DELAY", float),
    ("DELIVERY_MAX_ATTEMPTS", int),
    ("CONNECT_TIMEOUT", float),
    ("READ_TIMEOUT", float),
):
    if os.environ.get(f"RCHAT_BENCH_{_name}"):
        RCHAT[_name] = _cast(os.environ[f"RCHAT_BENCH_{_name}"])
# The API's rate limits would turn a load test into a test of the limiter.
RCHAT["API_THROTTLE_RATES"] = {"user": None, "write": None}
