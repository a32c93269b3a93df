"""Settings for the bot round trip (bench.botrt): bench.settings plus the inline reply view.

The site that receives the end user's webhook serves both sides of that comparison:
``/rchat/webhook/`` (rchat, whose RCHAT["ON_MESSAGE"] bot replies through a Celery
worker) and ``/bench/reply-inline/`` (the floor: the same reply posted at once).
"""

import os

from bench.settings import *  # noqa: F403
from bench.settings import DATABASES

ROOT_URLCONF = "bench.botrt_site"

# RCHAT_BENCH_DB_POOL=N: Django's connection pool (psycopg_pool) of at most N
# connections per process, which Celery's close after each task hands back instead of
# closing (docs/deployment.md, "Celery workers"); Django wants CONN_MAX_AGE 0 with it.
if os.environ.get("RCHAT_BENCH_DB_POOL"):
    _default = {**DATABASES["default"], "CONN_MAX_AGE": 0}
    _default["OPTIONS"] = {
        **_default.get("OPTIONS", {}),
        "pool": {"min_size": 1, "max_size": int(os.environ["RCHAT_BENCH_DB_POOL"])},
    }
    DATABASES = {**DATABASES, "default": _default}
