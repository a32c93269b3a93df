# --- rchat -----------------------------------------------------------------------------
# The end of mysite/settings.py. Values come from the environment; each has a default
# that works on a developer's machine.
import os

from celery.schedules import crontab

INSTALLED_APPS += [
    "rest_framework",
    "rest_framework.authtoken",  # bots sign in to the API with a token
    "drf_spectacular",  # the API's schema, at /rchat/api/schema/
    "drf_spectacular_sidecar",  # its docs page's files, served by your site (no CDN)
]
# rchat above Django's admin: its Thai for admin's strings that Django's own Thai
# translates only in part wins (docs/admin.md, "Thai").
INSTALLED_APPS.insert(INSTALLED_APPS.index("django.contrib.admin"), "rchat")

RCHAT = {
    # R-Chat's API origin; a credential's own base URL (set in admin) wins over it.
    "API_BASE_URL": os.environ.get("RCHAT_API_BASE_URL", ""),
    # Your site's public origin, under which rchat prints the webhook URL.
    "SITE_URL": os.environ.get("RCHAT_SITE_URL", "http://127.0.0.1:8000"),
    # Fernet keys for the tokens at rest, comma-separated: the first encrypts, all
    # decrypt. Make one with `python manage.py rchat_generate_key`. Unset, a key is
    # derived from SECRET_KEY.
    "ENCRYPTION_KEYS": [k for k in os.environ.get("RCHAT_ENCRYPTION_KEYS", "").split(",") if k],
}

# Where the inbox sends agents who are not signed in. rchat's own page serves sites that
# have none (admin's login admits staff only); a site with a sign-in page keeps its own.
LOGIN_URL = "rchat:login"

# A cache every web process shares: the API's rate limits count in it (check
# rchat.W004). Keep your site's own if it has one that is shared (not LocMemCache).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/1"),
    }
}

# Where agents' uploaded images and files are kept (RCHAT["ATTACHMENT_STORAGE"], the
# "default" storage): a directory that outlives deploys. rchat serves each file itself
# at a URL with an unguessable key; do not serve MEDIA_ROOT at a MEDIA_URL of its own.
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))

# Celery: mysite/celery.py reads every CELERY_ setting.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Above rchat's longest retry delay (RCHAT["RETRY_MAX_DELAY"], 600 s), so Redis never
# hands a delayed delivery to a second worker (check rchat.W002).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE = {
    # Hands outbound messages whose wake-up was lost to a worker again.
    "rchat-requeue-stale": {"task": "rchat.tasks.requeue_stale", "schedule": 60.0},
    # Deletes webhook events and delivery attempts past their retention, nightly.
    "rchat-purge": {"task": "rchat.tasks.purge", "schedule": crontab(hour=3, minute=30)},
}
