"""System checks: ``manage.py check`` reports a broken rchat setup before traffic does."""

from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, Resolver404, resolve
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from .conf import DEFAULTS, get_setting, unknown_settings
from .exceptions import RChatConfigurationError
from .payloads import is_http_url


@register()
def check_settings(app_configs=None, **kwargs):
    errors = []
    unknown = unknown_settings()
    if unknown:
        errors.append(
            Error(
                f"settings.RCHAT has unknown option(s): {', '.join(unknown)}.",
                hint=f"Known options: {', '.join(sorted(DEFAULTS))}.",
                id="rchat.E003",
            )
        )
    base_url = get_setting("API_BASE_URL")
    if base_url and not is_http_url(base_url):
        errors.append(
            Error(
                f'RCHAT["API_BASE_URL"] = {base_url!r} is not an http(s) URL.',
                hint="Use R-Chat's API origin, e.g. https://api.example.com",
                id="rchat.E001",
            )
        )
    site_url = get_setting("SITE_URL")
    if site_url and not is_http_url(site_url):
        errors.append(
            Error(
                f'RCHAT["SITE_URL"] = {site_url!r} is not an http(s) URL.',
                hint="Set it to the public origin R-Chat calls, e.g. https://shop.example.com",
                id="rchat.E004",
            )
        )
    errors.extend(_check_apps())
    errors.extend(_check_hook())
    errors.extend(_check_bot())
    errors.extend(_check_encryption_keys())
    errors.extend(_check_broker())
    errors.extend(_check_send_rate())
    errors.extend(_check_attachments())
    return errors


#: Apps rchat cannot work without, beyond Django's auth, contenttypes and sessions:
#: DRF and its token table (bots sign in with a token), the API schema and the files
#: of its docs page (served by the site, not a CDN).
REQUIRED_APPS = (
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
)


def _check_apps():
    missing = [name for name in REQUIRED_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [
        Error(
            f"rchat needs these apps in INSTALLED_APPS: {', '.join(missing)}.",
            hint="Add them before 'rchat' (README: Add rchat to an existing Django site).",
            id="rchat.E007",
        )
    ]


def _check_hook():
    path = get_setting("ON_MESSAGE")
    if not path:
        return []
    try:
        hook = import_string(path)
    except ImportError as exc:
        problem = f"cannot be imported ({exc})"
    else:
        if callable(hook):
            return []
        problem = "is not callable"
    return [
        Error(
            f'RCHAT["ON_MESSAGE"] = {path!r} {problem}.',
            hint="Give the dotted path of a function that takes one argument, a message id.",
            id="rchat.E006",
        )
    ]


def _check_bot():
    path = get_setting("BOT")
    problems = []
    if path:
        from .bots.base import Bot

        try:
            bot = import_string(path)
        except ImportError as exc:
            problem = f"cannot be imported ({exc})"
        else:
            problem = "" if isinstance(bot, type) and issubclass(bot, Bot) else "is not a Bot"
        if problem:
            problems.append(
                Error(
                    f'RCHAT["BOT"] = {path!r} {problem}.',
                    hint="Give the dotted path of a subclass of rchat.bots.Bot (docs/bots.md).",
                    id="rchat.E009",
                )
            )
    phrases = get_setting("HANDOVER_PHRASES")
    if not isinstance(phrases, list | tuple) or not all(
        isinstance(p, str) and p.strip() for p in phrases
    ):
        problems.append(
            Error(
                'RCHAT["HANDOVER_PHRASES"] must be a list of non-empty strings.',
                hint='For example ["คุยกับพนักงาน", "talk to a person"]; [] for none.',
                id="rchat.E010",
            )
        )
    reply = get_setting("HANDOVER_REPLY")
    if reply is not None:
        from . import payloads
        from .exceptions import InvalidMessage

        try:
            payloads.outbound_validate(reply["type"], reply["data"])
        except (InvalidMessage, KeyError, TypeError) as exc:
            problems.append(
                Error(
                    f'RCHAT["HANDOVER_REPLY"] is not a message rchat can send ({exc}).',
                    hint='A dict {"type": "text", "data": "..."}, or None to send nothing.',
                    id="rchat.E011",
                )
            )
    return problems


def _unknown_alias(setting, alias, where, hint, id):
    """An rchat setting naming an alias that settings.<where> does not have."""
    return Error(
        f"RCHAT[{setting!r}] = {alias!r} is not one of settings.{where}.", hint=hint, id=id
    )


def _check_attachments():
    # Attachments are off when no type is accepted (the reply box has no file input).
    if not get_setting("ATTACHMENT_TYPES"):
        return []
    problems = []
    alias = get_setting("ATTACHMENT_STORAGE")
    # Django fills in "default" and "staticfiles" when a site does not set STORAGES.
    if alias not in {"default", "staticfiles", *getattr(settings, "STORAGES", {})}:
        problems.append(
            _unknown_alias(
                "ATTACHMENT_STORAGE",
                alias,
                "STORAGES",
                'Add it to STORAGES, or leave ATTACHMENT_STORAGE out for "default".',
                "rchat.E012",
            )
        )
    if not get_setting("SITE_URL") and not settings.DEBUG:
        problems.append(
            Warning(
                gettext(
                    'RCHAT["SITE_URL"] is empty: the URLs R-Chat fetches attachments from '
                    "are made from each upload's request, on the host and scheme it came "
                    "with. Behind a proxy that may be an address R-Chat cannot reach."
                ),
                hint=gettext(
                    'Set RCHAT["SITE_URL"] to the site\'s public origin, e.g. '
                    'https://shop.example.com, or RCHAT["ATTACHMENT_TYPES"] = [] to turn '
                    "attachments off."
                ),
                id="rchat.W006",
            )
        )
    return problems


def _check_encryption_keys():
    from . import crypto

    try:
        crypto.check_keys()
    except RChatConfigurationError as exc:
        return [Error(str(exc), hint=crypto.KEY_HINT, id="rchat.E002")]
    return []


def _celery_conf():
    try:
        from celery import current_app
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    return current_app.conf


def _check_broker():
    conf = _celery_conf()
    if conf is None:
        return []
    broker = conf.broker_url or ""
    if isinstance(broker, list | tuple):
        # A list of fail-over URLs: the first one says which transport is in use.
        broker = broker[0] if broker else ""
    scheme = str(broker).split("://", 1)[0].split("+", 1)[0].lower()
    problems = []
    if not settings.DEBUG and scheme in ("filesystem", "memory"):
        problems.append(
            Warning(
                f"Celery's broker is {scheme}://, which is for one machine in development.",
                hint="Set CELERY_BROKER_URL to Redis or RabbitMQ in production.",
                id="rchat.W001",
            )
        )
    if scheme in ("redis", "rediss", "sentinel"):
        options = conf.broker_transport_options or {}
        # Kombu's Redis transport defaults to one hour.
        visibility = float(options.get("visibility_timeout", 3600))
        longest = float(get_setting("RETRY_MAX_DELAY"))
        if visibility <= longest:
            problems.append(
                Warning(
                    f"Redis visibility_timeout ({visibility:g}s) is not above rchat's longest "
                    f'retry delay, RCHAT["RETRY_MAX_DELAY"] ({longest:g}s): a delayed '
                    "delivery task would be handed to a second worker.",
                    hint="Raise broker_transport_options['visibility_timeout'] "
                    "(CELERY_BROKER_TRANSPORT_OPTIONS) or lower RETRY_MAX_DELAY.",
                    id="rchat.W002",
                )
            )
    return problems


def _check_send_rate():
    # The send budget is shared only through Redis (rchat.ratelimit); without one each
    # process keeps its own. Whether that Redis answers is not asked here: a check must
    # not wait on the network, and a Redis that fails at run time is logged then.
    from . import shared

    rate = get_setting("SEND_RATE")
    if rate is None or shared.url():
        return []
    return [
        Warning(
            gettext(
                'RCHAT["SEND_RATE"] limits sends to R-Chat to %(rate)s per second per '
                "credential, but there is no shared Redis: each process keeps its own "
                "budget, so the site may send up to that rate times the number of worker "
                "processes."
            )
            % {"rate": rate},
            hint=gettext(
                'Set RCHAT["REDIS_URL"] to a redis:// URL every worker reaches, or use Redis '
                "as Celery's broker."
            ),
            id="rchat.W005",
        )
    ]


#: Cache backends whose counts live in one process (or nowhere).
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches)
def check_throttle_cache(app_configs=None, **kwargs):
    """API rate limits only hold when every process counts in the same cache."""
    rates = get_setting("API_THROTTLE_RATES") or {}
    site_rates = (getattr(settings, "REST_FRAMEWORK", None) or {}).get(
        "DEFAULT_THROTTLE_RATES"
    ) or {}
    limited = any(rates.values()) or any(site_rates.get(s) for s in ("rchat", "rchat_write"))
    alias = get_setting("THROTTLE_CACHE")
    caches = getattr(settings, "CACHES", {}) or {}
    if not limited:
        return []
    if alias not in caches:
        return [
            Error(
                f'RCHAT["THROTTLE_CACHE"] = {alias!r} is not one of settings.CACHES.',
                hint=f"Use one of: {', '.join(caches) or 'none defined'}.",
                id="rchat.E008",
            )
        ]
    backend = caches[alias].get("BACKEND", "")
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            f"The API's rate limits count in the cache {alias!r} ({backend.rsplit('.', 1)[-1]}),"
            " which each process keeps for itself: with N web processes the API allows N "
            "times RCHAT['API_THROTTLE_RATES'].",
            hint="Point CACHES (or RCHAT['THROTTLE_CACHE']) at a cache every process shares, "
            "e.g. django.core.cache.backends.redis.RedisCache.",
            id="rchat.W004",
        )
    ]


@register(Tags.caches)
def check_presence_cache(app_configs=None, **kwargs):
    """Who else is viewing or typing is only known across processes in a shared cache."""
    alias = get_setting("PRESENCE_CACHE")
    caches = getattr(settings, "CACHES", {}) or {}
    if alias not in caches:
        hint = f"Use one of: {', '.join(caches) or 'none defined'}."
        return [_unknown_alias("PRESENCE_CACHE", alias, "CACHES", hint, "rchat.E013")]
    backend = caches[alias].get("BACKEND", "")
    # With DEBUG on, one runserver process is the usual case, and it works there.
    if settings.DEBUG or backend not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            f"Presence (who else is viewing or typing in a conversation) is kept in the cache "
            f"{alias!r} ({backend.rsplit('.', 1)[-1]}), which each process keeps for itself: "
            "agents served by different processes do not see each other.",
            hint="Point CACHES (or RCHAT['PRESENCE_CACHE']) at a cache every process shares, "
            "e.g. django.core.cache.backends.redis.RedisCache.",
            id="rchat.W007",
        )
    ]


@register(Tags.urls)
def check_login_url(app_configs=None, **kwargs):
    """The inbox sends people who are not signed in to LOGIN_URL: it must exist."""
    login_url = str(settings.LOGIN_URL)
    try:
        url = resolve_url(login_url)
    except NoReverseMatch:
        url = None
    if url and urlsplit(url).netloc:
        return []  # Another site's sign-in (single sign-on): not ours to resolve.
    if url:
        try:
            resolve(urlsplit(url).path)
        except Resolver404:
            url = None
    if url:
        return []
    return [
        Warning(
            f"LOGIN_URL = {login_url!r} is not a page of this site, so agents who are not "
            "signed in get a 404 from the inbox.",
            hint='Set LOGIN_URL = "rchat:login" to use rchat\'s sign-in page, or point it '
            "at your site's own.",
            id="rchat.W003",
        )
    ]


@register(Tags.database)
def check_credentials(app_configs=None, databases=None, **kwargs):
    """Active credentials need somewhere to send: run with ``check --database default``."""
    if not databases or "default" not in databases or get_setting("API_BASE_URL"):
        return []
    from django.db import DatabaseError

    from .models import Credential

    try:
        names = list(
            Credential.objects.filter(status=Credential.Status.ACTIVE, base_url="").values_list(
                "name", flat=True
            )
        )
    except DatabaseError:
        return []  # Tables not migrated yet: migrate reports that itself.
    return [
        Error(
            f"Active credential {name!r} has no base URL and RCHAT['API_BASE_URL'] is empty.",
            hint="Set the credential's base URL in admin, or RCHAT['API_BASE_URL'].",
            obj=name,
            id="rchat.E005",
        )
        for name in names
    ]


@register(Tags.translation)
def check_locale_middleware(app_configs=None, **kwargs):
    """The inbox's language switch remembers a choice that only LocaleMiddleware acts on."""
    if not settings.is_overridden("LANGUAGES") or len(settings.LANGUAGES) < 2:
        return []
    if "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE:
        return []
    return [
        Warning(
            f"settings.LANGUAGES offers {len(settings.LANGUAGES)} languages, but without "
            "LocaleMiddleware every page is in LANGUAGE_CODE: rchat's inbox shows no "
            "language switch.",
            hint="Add 'django.middleware.locale.LocaleMiddleware' to MIDDLEWARE, after "
            "SessionMiddleware and before CommonMiddleware (docs/inbox.md, 'Languages').",
            id="rchat.W008",
        )
    ]
