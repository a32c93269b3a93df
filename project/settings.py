"""Settings for the rchat development project, read from the environment.

Every value has a default that works on a fresh machine with nothing installed:
SQLite under var/, Kombu's filesystem transport under var/ as the Celery broker.
Set DATABASE_URL / CELERY_BROKER_URL to run on PostgreSQL and Redis.
"""

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RCHAT_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default):
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# The development default is deliberately not secret; a deployment sets SECRET_KEY
# (Django's own check security.W009 warns when DEBUG is off and it is weak).
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-insecure-rchat-secret-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # rchat above Django's admin: its Thai for admin's strings that Django's own Thai
    # translates only in part wins (docs/admin.md, "Thai").
    "rchat",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    # The API's OpenAPI schema, and Swagger UI's files served locally (no CDN).
    "drf_spectacular",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The whole site requires a login, as many host sites do; rchat's webhook opts out.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
# Agents sign in on rchat's own page; they need not be staff (admin's login is for staff).
LOGIN_URL = "rchat:login"
LOGIN_REDIRECT_URL = "rchat:inbox"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'rchat.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share the file. WAL lets readers and one
    # writer work at once; IMMEDIATE transactions take the write lock up front, so a
    # transaction never fails half-way with "database is locked" when it first writes;
    # the timeout makes a writer wait its turn rather than fail at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("th", _("Thai"))]
# The demo's own strings (its sign-in note); rchat's are in rchat/locale.
LOCALE_PATHS = [BASE_DIR / "project" / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Asia/Bangkok")
USE_I18N = True
USE_TZ = True

# A cache every process shares: rchat's API rate limits count in it (check rchat.W004).
# Files under var/ serve one machine; set CACHE_URL=redis://… for several.
if os.environ.get("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Uploads (rchat's attachments) are kept under var/media by Django's default storage.
# No MEDIA_URL is served: rchat serves each attachment itself, at a URL with its key
# (docs/deployment.md, "Attachments").
MEDIA_ROOT = VAR_DIR / "media"

# --- Protecting the site: sign-in lockouts and a Content-Security-Policy ----------------
# django-axes counts failed sign-ins on every login form (rchat's /rchat/login/ and
# admin's /admin/login/): after 5 failures for one username from one address, that pair
# is locked out for 15 minutes, and a successful sign-in clears the count.
INSTALLED_APPS += ["axes"]
# Axes' backend comes first: it refuses a locked-out sign-in before the password is
# checked. Logging in now needs the request (test clients: force_login, or login(request=)).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# rchat's page "Too many failed sign-ins", in the inbox's style (answered with 429).
AXES_LOCKOUT_TEMPLATE = "rchat/locked_out.html"

# Every page says where its scripts, styles and images may come from. rchat's pages use
# no inline script or style, nor does admin or the API docs page (Swagger UI's start-up
# script is a file of its own); inbound images are thumbnails on R-Chat's https hosts.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "https:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
# Django 6.0+ sends it from SECURE_CSP itself; on 5.2 a small middleware does the same.
_CSP_MIDDLEWARE = (
    "django.middleware.csp.ContentSecurityPolicyMiddleware"
    if importlib.util.find_spec("django.middleware.csp")
    else "project.csp.ContentSecurityPolicyMiddleware"
)
MIDDLEWARE = [
    *MIDDLEWARE[:1],
    _CSP_MIDDLEWARE,
    *MIDDLEWARE[1:],
    # Last, as axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# --- Celery -----------------------------------------------------------------------
# No broker to install by default: Kombu's filesystem transport keeps messages as
# files under var/broker. Set CELERY_BROKER_URL=redis://127.0.0.1:6379/0 in production.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("in", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (pidbox) exchanges; Kombu's default is ./control in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # rchat's longest back-off is well under an hour; a visibility timeout above it
    # keeps Redis from handing a delayed task to a second worker (check rchat.W002).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# rchat's sweep wakes outbound messages whose wake-up was lost (docs/delivery.md); the
# purge deletes webhook events and delivery attempts past RCHAT's retention, once a
# night (Celery's clock: CELERY_TIMEZONE, else TIME_ZONE).
CELERY_BEAT_SCHEDULE = {
    "rchat-requeue-stale": {"task": "rchat.tasks.requeue_stale", "schedule": 30.0},
    "rchat-purge": {"task": "rchat.tasks.purge", "schedule": crontab(hour=3, minute=30)},
}

# --- rchat --------------------------------------------------------------------------
RCHAT = {
    "API_BASE_URL": os.environ.get("RCHAT_API_BASE_URL", ""),
    "SITE_URL": os.environ.get("RCHAT_SITE_URL", "http://127.0.0.1:8000"),
}
if os.environ.get("RCHAT_ENCRYPTION_KEYS"):
    RCHAT["ENCRYPTION_KEYS"] = env_list("RCHAT_ENCRYPTION_KEYS", [])
# A bot for inbound messages: the dotted path of a callable(message_id), run by the
# worker (docs/webhooks.md).
if os.environ.get("RCHAT_ON_MESSAGE"):
    RCHAT["ON_MESSAGE"] = os.environ["RCHAT_ON_MESSAGE"]
# The demo's chatbot (docs/sandbox.md): rchat_demo_setup gives the demo credential its
# auto-reply rules and business hours, and what no rule answers goes to this class.
# RCHAT_BOT names another, or, set empty, leaves the bot to the rules alone.
RCHAT["BOT"] = os.environ.get("RCHAT_BOT", "project.shopbot.ShopBot")
# Every Send Message body says who wrote the reply (a person, the bot, a rule) under
# "sender": the sandbox's chat pages label replies with it.
RCHAT["SENDER_FIELD"] = "sender"
# A room people took over goes back to the bot after half an hour without a message.
RCHAT["RETURN_TO_BOT_AFTER_MINUTES"] = 30

# No DEFAULT_SCHEMA_CLASS: rchat's API documents itself with drf-spectacular whatever
# it is, and most sites leave DRF's own.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
}

# Every record goes to the console once: the root logger has the one handler, and the
# loggers below only set levels and pass records up. "django" is named so that its
# default handlers (the console only when DEBUG is on, mail to ADMINS) are replaced: with
# DEBUG off, a 500's traceback would otherwise be shown nowhere.
# RCHAT_LOG_FORMAT changes the format: `make run` (project/devrun.py) leaves the time out,
# as it stamps every line of every process itself. Celery's own handlers use it too.
LOG_FORMAT = os.environ.get("RCHAT_LOG_FORMAT") or "%(asctime)s %(levelname)s %(name)s: %(message)s"
CELERY_WORKER_LOG_FORMAT = CELERY_WORKER_TASK_LOG_FORMAT = LOG_FORMAT
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": [], "level": "INFO"},
        "rchat": {"handlers": [], "level": os.environ.get("RCHAT_LOG_LEVEL", "INFO")},
    },
}
