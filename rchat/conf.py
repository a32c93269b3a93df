"""The one reader of ``settings.RCHAT``.

Values are read at call time, so ``override_settings(RCHAT=...)`` works in tests.
Every option and its default is listed in ``DEFAULTS``; the README's configuration
table documents the same names.
"""

from django.conf import settings

from .exceptions import RChatConfigurationError

DEFAULTS = {
    # R-Chat's API host. A credential's own base_url wins over it.
    "API_BASE_URL": "",
    # Paths appended to the base URL. R-Chat's detailed API document is not public;
    # these are the documented defaults and can be changed without a code change.
    "REGISTER_PATH": "/api/v1/external/register",
    "SEND_MESSAGE_PATH": "/api/v1/external/send-message",
    # Seconds to wait for a TCP connection, then for R-Chat's answer.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 15.0,
    # Fernet keys (urlsafe base64, 32 bytes). The first encrypts; all decrypt, so a
    # new key can be put first and old rows still read. Empty: derived from SECRET_KEY.
    "ENCRYPTION_KEYS": [],
    # This site's public origin, used to print the webhook URL to paste into R-Chat.
    "SITE_URL": "",
    # Largest webhook body accepted, in bytes (413 above it).
    "WEBHOOK_MAX_BYTES": 256 * 1024,
    # After a rotation the previous signature token is still accepted this long.
    "SIGNATURE_GRACE_SECONDS": 24 * 3600,
    # A webhook without a message id whose body is byte-for-byte the same as one
    # received from the same chat room within this many seconds is a redelivery.
    "DEDUP_WINDOW_SECONDS": 300,
    # Dotted path of a callable run as a Celery task for each inbound message
    # (``callable(message_id)``); empty for none.
    "ON_MESSAGE": "",
    # The chatbot back-office (docs/bots.md). BOT: dotted path of a subclass of
    # rchat.bots.Bot that answers chat rooms the bot handles, after the auto-reply
    # rules; "" for rules only.
    "BOT": "",
    # What an end user writes to ask for a person (Thai and English; matched without
    # relying on spaces, case and most punctuation ignored).
    "HANDOVER_PHRASES": [
        "คุยกับพนักงาน",
        "ขอคุยกับพนักงาน",
        "ติดต่อพนักงาน",
        "ขอสายพนักงาน",
        "คุยกับคน",
        "ขอคุยกับแอดมิน",
        "talk to a person",
        "talk to a human",
        "speak to a person",
        "real person",
        "human agent",
    ],
    # Sent when the end user asks for a person (type and data); None sends nothing.
    "HANDOVER_REPLY": {
        "type": "text",
        "data": "รับทราบค่ะ กำลังส่งต่อให้พนักงาน กรุณารอสักครู่ / "
        "We are passing you to a person, please wait a moment.",
    },
    # How many of a room's latest messages the bot gets with each new one.
    "BOT_THREAD_LENGTH": 20,
    # A room people handle goes back to the bot after this many minutes without a
    # message (either way); None: only when returned or closed.
    "RETURN_TO_BOT_AFTER_MINUTES": None,
    # An external bot (ExternalBot, per credential): attempts at forwarding one message,
    # and the time-out of each.
    "BOT_FORWARD_MAX_ATTEMPTS": 5,
    "BOT_FORWARD_TIMEOUT": 10.0,
    # The Send Message body says who wrote the message under this name ({"kind":
    # "person" | "bot" | "rule", "name": ...}); "" leaves the body as the contract has it.
    "SENDER_FIELD": "",
    # Outbound delivery: attempts in all, and the back-off between them (seconds).
    "DELIVERY_MAX_ATTEMPTS": 8,
    "RETRY_BASE_DELAY": 2.0,
    "RETRY_MAX_DELAY": 600.0,
    # A message queued, or left "sending", longer than this is handed to a worker again.
    "STALE_AFTER_SECONDS": 120,
    # Outbound messages one worker claims and sends at a time (at most one per room).
    "DELIVERY_BATCH_SIZE": 100,
    # Messages per second to R-Chat at most, per credential, shared by every worker
    # (a credential's own send_rate wins); None for no limit. SEND_BURST: how many may
    # go at once after a quiet spell (None: one second's worth).
    "SEND_RATE": None,
    "SEND_BURST": None,
    # The Redis shared by every worker for the rate limits and for waking workers
    # once per batch: a redis:// URL, or "" for Celery's broker when it is Redis.
    # Without one, each process keeps its own limits (see docs/delivery.md).
    "REDIS_URL": "",
    # Days webhook events and delivery attempts are kept (``rchat_purge`` and the
    # ``rchat.tasks.purge`` beat task delete older ones); None keeps them for ever.
    # Messages themselves are never deleted by rchat.
    "WEBHOOK_EVENT_RETENTION_DAYS": 90,
    "DELIVERY_ATTEMPT_RETENTION_DAYS": 90,
    # Longest text message accepted from a sender, in characters.
    "TEXT_MAX_LENGTH": 5000,
    # Attachments agents upload (docs/inbox.md): the storage they are kept in (an
    # alias of settings.STORAGES; S3 and others through django-storages), the largest
    # accepted, in bytes, and the content types accepted (image ones are sent as
    # images, the others as files).
    "ATTACHMENT_STORAGE": "default",
    "ATTACHMENT_MAX_BYTES": 10 * 1024 * 1024,
    "ATTACHMENT_TYPES": [
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ],
    # REST API rate limits per user (DRF rate strings; None for no limit): "user" for
    # every call, "write" for calls that change something. A site's own
    # REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["rchat"] / ["rchat_write"] wins.
    "API_THROTTLE_RATES": {"user": "600/minute", "write": "60/minute"},
    # Every try of one outbound message carries the same key, in the Idempotency-Key
    # header and in the Send Message body under this name ("" leaves the body as the
    # contract has it), so a platform that honours it stores a message once.
    "IDEMPOTENCY_KEY_FIELD": "idempotency_key",
    # The cache (an alias of settings.CACHES) the API's rate limits count in. It must
    # be shared by every web process (Redis, Memcached, the database), or each process
    # counts alone and the site allows the rates times the number of processes.
    "THROTTLE_CACHE": "default",
    # The cache (an alias of settings.CACHES) that says who else has a conversation
    # open or is typing in it (docs/inbox.md): a few seconds per agent, never the
    # database. Every web process must share it (Redis, Memcached): with a cache of
    # each process's own, agents only see colleagues served by the same process.
    "PRESENCE_CACHE": "default",
}


def get_setting(name):
    """Return ``settings.RCHAT[name]``, or its documented default."""
    if name not in DEFAULTS:
        raise RChatConfigurationError(
            f"rchat has no setting {name!r}; known settings: {', '.join(sorted(DEFAULTS))}."
        )
    options = getattr(settings, "RCHAT", None) or {}
    return options.get(name, DEFAULTS[name])


def unknown_settings():
    """Names in ``settings.RCHAT`` that rchat does not know (likely typos)."""
    options = getattr(settings, "RCHAT", None) or {}
    return sorted(set(options) - set(DEFAULTS))
