"""Forwarding inbound messages to a bot that lives elsewhere (``ExternalBot``).

A credential's external bot (Rasa, Dialogflow behind a small adapter, a vendor's
service) gets each inbound message of a room the bot handles, once the auto-reply rules
had their turn (engine.py), as a signed JSON POST: ``forward_body`` is the body,
``forward_headers`` its headers. The bot answers later, through the REST API, with the
URLs the body gives (``reply``): rchat does not read its answer's body. docs/bots.md
("External bots") is the bot author's side of this contract; ``PAYLOAD_VERSION`` changes
whenever a field changes meaning or goes away (new fields may appear at any time).

``forward(message_id)`` is one try; the Celery task ``rchat.bots.tasks.forward_to_bot``
calls it and schedules the next try when it says so. Every try is a ``BotForward`` row
(the attempt log), so the count of tries survives a worker restart and does not live
in Celery. After ``RCHAT["BOT_FORWARD_MAX_ATTEMPTS"]`` tries, or an answer that trying
again cannot change (a 4xx other than 408 and 429), people take the room, with why.

The secret signs bodies and is never sent, stored in a row other than ``ExternalBot``'s
(encrypted), logged or put in an error.
"""

import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from django.db import connections, router, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from .. import __version__, client, crypto, selectors, services
from ..client import _network_reason, parse_retry_after
from ..conf import get_setting
from ..exceptions import InvalidMessage
from ..models import BotForward, ChatRoom, ExternalBot, Handover, Message

logger = logging.getLogger(__name__)

#: The body's ``version``: raised when a field changes meaning or is removed.
PAYLOAD_VERSION = 1

TIMESTAMP_HEADER = "X-Rchat-Timestamp"
SIGNATURE_HEADER = "X-Rchat-Signature"
DELIVERY_HEADER = "X-Rchat-Delivery"
#: The signature header's value is ``sha256=<hex>``, as GitHub's X-Hub-Signature-256.
SIGNATURE_SCHEME = "sha256"
#: Seconds a signed body stays valid for ``signature_verify`` by default (as Stripe's).
SIGNATURE_TOLERANCE = 300

#: Back-off between tries: exponential from this many seconds, with jitter, capped.
#: An end user is waiting for an answer: at the defaults (5 tries) people take the room
#: about a minute after the first try failed, not after the ten minutes R-Chat's own
#: delivery may take (RCHAT["RETRY_MAX_DELAY"]). The cap also keeps every countdown far
#: below Redis's visibility_timeout (a longer one would run the task again and again).
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0
#: Answers worth trying again: time-out, too many requests, the bot's server errors.
RETRY_STATUSES = frozenset({408, 429})
#: Bytes of the bot's answer read at most (for the error text); the rest is dropped.
ANSWER_READ_MAX = 64 * 1024
#: Characters of the bot's answer kept in an error.
ERROR_EXCERPT = 300
DETAIL_MAX = Handover._meta.get_field("detail").max_length

#: The error of a try whose answer is not recorded yet. It stays on the row if the
#: worker stops before the answer comes, which then reads true.
IN_FLIGHT = "No answer recorded: the try was under way when its worker stopped."

#: ``Forwarded.outcome`` when nothing was tried (see ``forward``).
SKIPPED = "skipped"

_random = random.SystemRandom()


@dataclass(frozen=True)
class Forwarded:
    """What one call of ``forward`` did.

    ``outcome``: a ``BotForward.Outcome`` value ("sent", "retry", "failed"), or
    ``SKIPPED`` when nothing was tried and nothing recorded (``reason`` says why).
    ``retry_in``: seconds to wait before the next try (outcome "retry").
    """

    outcome: str
    attempt: int = 0
    http_status: int | None = None
    retry_in: float | None = None
    reason: str = ""


# --- The body and its signature ----------------------------------------------------------


def forward_body(message, thread):
    """The JSON body forwarded for inbound ``message``, as UTF-8 bytes.

    ``thread``: the room's latest messages, oldest first, ``message`` last (what the
    site's Bot gets too). Compact, and not ASCII-escaped: Thai text is sent as written
    (and signed as sent: the signature covers these exact bytes).
    """
    room = message.room
    payload = {
        "version": PAYLOAD_VERSION,
        "event": "message",
        "message": {
            "id": message.pk,
            "type": message.type,
            "data": message.data,
            "text": message.text,
            "created_at": _iso(message.created_at),
            "external_id": message.external_id,
        },
        "room": {
            "id": room.pk,
            "chat_id": room.chat_id,
            "channel": room.channel,
            "display_name": room.display_name,
            "handler": room.handler,
        },
        "credential": {"name": room.credential.name},
        "thread": [
            {
                "id": each.pk,
                "direction": each.direction,
                "sender": each.sender,
                "type": each.type,
                "data": each.data,
                "created_at": _iso(each.created_at),
            }
            for each in thread
        ],
        "reply": {
            "messages_url": _site_url(reverse("rchat:api:room-messages", kwargs={"pk": room.pk})),
            "hand_over_url": _site_url(reverse("rchat:api:room-hand-over", kwargs={"pk": room.pk})),
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret, body, timestamp):
    """``sha256=<hex>``: HMAC-SHA256, keyed with ``secret``, of ``"<timestamp>." + body``.

    The timestamp is signed with the body, so a body caught on the way cannot be sent
    again later with a fresh timestamp.
    """
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    body = body.encode() if isinstance(body, str) else bytes(body)
    digest = hmac.new(key, f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_SCHEME}={digest.hexdigest()}"


def signature_verify(
    secret, body, timestamp, signature, *, tolerance=SIGNATURE_TOLERANCE, now=None
):
    """True when ``signature`` (the X-Rchat-Signature header) signs ``body`` (the raw
    request body, bytes) at ``timestamp`` (the X-Rchat-Timestamp header) with ``secret``,
    and the timestamp is within ``tolerance`` seconds of ``now`` (None: no time check).

    For a Python bot: verify before parsing, on the bytes as received. Compares in
    constant time; any malformed header is False, never an exception.
    """
    if not (secret and isinstance(signature, str)):
        return False
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - stamp) > tolerance:
            return False
    expected = sign(secret, body, stamp)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def forward_headers(secret, body, *, delivery, timestamp=None):
    """The headers of a forwarded ``body``: timestamp, signature, delivery id, type."""
    stamp = int(time.time() if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"rchat/{__version__}",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, body, stamp),
        DELIVERY_HEADER: str(delivery),
    }


# --- One try -------------------------------------------------------------------------------


def forward(message_id):
    """Forward inbound message ``message_id`` to its credential's external bot, once.

    Returns a ``Forwarded``. Nothing is tried, and nothing recorded, when the message
    is gone or not inbound, its room is handled by people (or closed), its credential
    has no active external bot, a try of it already succeeded or finally failed, or
    another worker's try is under way (safe to run twice). Otherwise one ``BotForward``
    row records the try. After the last try (or an answer that trying again cannot
    change), the room goes to people (``Handover.Reason.BOT_ERROR``) unless people
    already have it.
    """
    claim = _claim(message_id)
    if isinstance(claim, Forwarded):
        return claim
    message, bot, row = claim
    thread, _older = selectors.room_thread(
        room=message.room, before=message.pk + 1, limit=int(get_setting("BOT_THREAD_LENGTH"))
    )
    body = forward_body(message, thread)
    answer = _post(bot.url, bot.secret, body, delivery=row.pk)
    outcome, retry_in, error = _judge(answer, row.attempt)
    BotForward.objects.filter(pk=row.pk).update(
        duration_ms=answer.duration_ms,
        http_status=answer.status,
        outcome=outcome,
        error=error,
    )
    where = _display_url(bot.url)
    if outcome == BotForward.Outcome.SENT:
        logger.info("Message %s forwarded to %s (try %d)", message_id, where, row.attempt)
    elif outcome == BotForward.Outcome.RETRY:
        logger.warning(
            "Forwarding message %s to %s, try %d: %s; next try in %.0f s",
            message_id,
            where,
            row.attempt,
            error,
            retry_in,
        )
    else:
        logger.warning(
            "Forwarding message %s to %s failed after %d tries: %s; people take the room",
            message_id,
            where,
            row.attempt,
            error,
        )
        _hand_over(message, bot.url, error)
    return Forwarded(outcome, row.attempt, answer.status, retry_in, error)


@dataclass(frozen=True)
class _Answer:
    status: int | None
    duration_ms: int
    error: str = ""  # what went wrong, secret masked ("" for a 2xx)
    retry_after: int | None = None


def _claim(message_id):
    """Check that the message is to be tried now and write its try's row (in flight).

    Returns ``(message, external bot, BotForward row)``, or a ``Forwarded`` saying why
    nothing is tried. The message's row lock makes two workers given the same message
    take turns here: the second sees the first's row and leaves it alone. The lock is
    held only for these few queries, never while the bot is called.
    """
    db = router.db_for_write(BotForward)
    now = timezone.now()
    with transaction.atomic(using=db):
        message = (
            Message.objects.using(db)
            .select_related("room")
            .select_for_update(**_lock_options(db))
            .filter(pk=message_id, direction=Message.Direction.IN)
            .first()
        )
        if message is None:
            return Forwarded(SKIPPED, reason="no such inbound message")
        room = message.room
        if room.handler != ChatRoom.Handler.BOT or room.status != ChatRoom.Status.OPEN:
            return Forwarded(SKIPPED, reason="the bot does not handle the chat room")
        bot = (
            ExternalBot.objects.using(db)
            .select_related("credential")
            .only("url", "secret", "active", "credential__name")
            .filter(credential_id=room.credential_id, active=True)
            .first()
        )
        if bot is None:
            return Forwarded(SKIPPED, reason="no active external bot")
        room.credential = bot.credential  # its name, without decrypting its tokens
        tries = list(
            BotForward.objects.using(db)
            .filter(message_id=message.pk)
            .order_by("attempt", "id")
            .values("attempt", "outcome", "started_at", "http_status", "error")
        )
        if any(each["outcome"] != BotForward.Outcome.RETRY for each in tries):
            return Forwarded(SKIPPED, reason="already forwarded or failed")
        last = tries[-1] if tries else None
        if last is not None and _in_flight(last, now):
            return Forwarded(SKIPPED, attempt=last["attempt"], reason="a try is under way")
        attempt = last["attempt"] + 1 if last else 1
        if attempt > _max_attempts():
            # Every try is spent but none was judged final: the worker that made the
            # last one stopped before its answer. What its room needs is people.
            error = last["error"] if last else ""
            outcome = Forwarded(BotForward.Outcome.FAILED, attempt=attempt - 1, reason=error)
        else:
            row = BotForward.objects.using(db).create(
                message=message,
                url=_display_url(bot.url),
                attempt=attempt,
                started_at=now,
                outcome=BotForward.Outcome.RETRY,
                error=IN_FLIGHT,
            )
            return message, bot, row
    _hand_over(message, bot.url, outcome.reason)
    return outcome


def _lock_options(db):
    """``select_for_update`` arguments: the message's row only, and not FOR UPDATE but
    FOR NO KEY UPDATE where the database has it, which does not block the rows that
    refer to the message (this try's BotForward, a hand-over) in other transactions."""
    features = connections[db].features
    options = {}
    if features.has_select_for_update_of:
        options["of"] = ("self",)
    if features.has_select_for_no_key_update:
        options["no_key"] = True
    return options


def _in_flight(row, now):
    """Whether ``row`` is a try another worker is making now (not one that stopped)."""
    if row["error"] != IN_FLIGHT or row["http_status"] is not None:
        return False
    # A try lasts at most the connect and the read time-outs (plus its queries); an
    # older row without an answer is a worker that stopped, and counts as a try.
    longest = 2 * float(get_setting("BOT_FORWARD_TIMEOUT")) + 30
    return row["started_at"] > now - timedelta(seconds=longest)


def _max_attempts():
    return max(1, int(get_setting("BOT_FORWARD_MAX_ATTEMPTS")))


def _judge(answer, attempt):
    """``(outcome, seconds to the next try or None, error text)`` for one try's answer."""
    status = answer.status
    if status is not None and 200 <= status < 300:
        return BotForward.Outcome.SENT, None, ""
    error = answer.error
    transient = status is None or status in RETRY_STATUSES or status >= 500
    if not transient:
        # A refusal (400, 401, 404 …) or a redirect: the same body would get the same.
        return BotForward.Outcome.FAILED, None, error
    if attempt >= _max_attempts():
        return BotForward.Outcome.FAILED, None, error
    if answer.retry_after is not None:
        if answer.retry_after > RETRY_MAX_SECONDS:
            # Honoured, not cut short: the bot will not answer in time for the end user
            # waiting, so people take the room now.
            error = gettext(
                "%(error)s (it asked for %(seconds)d s; rchat waits %(longest)d s at most)"
            ) % {"error": error, "seconds": answer.retry_after, "longest": RETRY_MAX_SECONDS}
            return BotForward.Outcome.FAILED, None, error
        return BotForward.Outcome.RETRY, float(answer.retry_after), error
    return BotForward.Outcome.RETRY, retry_delay(attempt), error


def retry_delay(attempt):
    """Seconds before the try after ``attempt`` (1, 2, …): exponential back-off from
    ``RETRY_BASE_SECONDS``, capped at ``RETRY_MAX_SECONDS``, with "equal jitter" (half
    for sure, half at random, as outbound delivery does: services/delivery.py)."""
    cap = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return cap / 2 + _random.uniform(0, cap / 2)


def _hand_over(message, url, error):
    """People take ``message``'s room, unless they already have it or it is closed."""
    room = ChatRoom.objects.filter(pk=message.room_id, handler=ChatRoom.Handler.BOT).first()
    if room is None:
        return
    host = urlsplit(url).hostname or url
    detail = gettext("The external bot at %(host)s did not answer: %(error)s") % {
        "host": host,
        "error": error or gettext("no answer recorded"),
    }
    detail = " ".join(detail.split())
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 1] + "…"
    try:
        services.room_hand_over(
            room=room, reason=Handover.Reason.BOT_ERROR, detail=detail, message=message
        )
    except InvalidMessage as exc:
        # Closed meanwhile: the end user's next message reopens it, for the bot.
        logger.info("Chat room %s not handed over: %s", room.pk, exc)


# --- HTTP ------------------------------------------------------------------------------------

# The thread's kept-alive session and the environment's proxies, shared with the calls
# to R-Chat (client.py says why the environment is read once).
_session = client.get_session
_proxies_for = client.proxies_for


def _post(url, secret, body, *, delivery):
    """POST ``body`` to ``url``, signed; an ``_Answer`` whatever happens (never raises
    for the network or the bot's answer)."""
    timeout = float(get_setting("BOT_FORWARD_TIMEOUT"))
    headers = forward_headers(secret, body, delivery=delivery)
    where = _display_url(url)
    started = time.monotonic()

    def took():
        return round((time.monotonic() - started) * 1000)

    try:
        session = _session()
        response = session.post(
            url,
            data=body,
            headers=headers,
            timeout=(timeout, timeout),
            # A redirected POST would be sent again as a GET: the redirect is the answer.
            allow_redirects=False,
            proxies=_proxies_for(url),
            stream=True,
        )
    except requests.ConnectTimeout:
        error = gettext("could not connect to %(url)s within %(seconds)g s") % {
            "url": where,
            "seconds": timeout,
        }
        return _Answer(None, took(), _mask(error, secret))
    except requests.Timeout:
        error = gettext("no answer from %(url)s within %(seconds)g s") % {
            "url": where,
            "seconds": timeout,
        }
        return _Answer(None, took(), _mask(error, secret))
    except requests.RequestException as exc:
        # Connection refused, DNS, TLS, a connection dropped …
        error = gettext("could not connect to %(url)s: %(reason)s") % {
            "url": where,
            "reason": _network_reason(exc),
        }
        return _Answer(None, took(), _mask(error, secret))
    start = _read_start(response)
    status = response.status_code
    if 200 <= status < 300:
        return _Answer(status, took())
    excerpt = " ".join(start.decode("utf-8", errors="replace").split())[:ERROR_EXCERPT]
    error = gettext("HTTP %(status)s from %(url)s") % {"status": status, "url": where}
    if 300 <= status < 400:
        location = _display_url(response.headers.get("Location", "")) or "?"
        error += " " + gettext("(redirected to %(location)s: set the URL it redirects to)") % {
            "location": location
        }
    elif excerpt:
        error += f": {excerpt}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return _Answer(status, took(), _mask(error, secret), retry_after)


def _read_start(response):
    """The first ``ANSWER_READ_MAX`` bytes of the answer; the connection goes back to
    the pool when that was all of it, and is closed otherwise."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= ANSWER_READ_MAX:
                break
    except requests.RequestException:
        pass  # the status line is the answer; its body is only for the error text
    finally:
        response.close()
    return b"".join(chunks)[:ANSWER_READ_MAX]


# --- Small helpers ---------------------------------------------------------------------------


def _mask(text, secret):
    return crypto.redact(text, secret)


def _display_url(url):
    """``url`` without user info, query or fragment: what rows, errors and logs show (a
    vendor's URL may carry a key in either)."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _site_url(path):
    """``path`` on RCHAT["SITE_URL"] when it is set, else the path itself."""
    site = get_setting("SITE_URL")
    return urljoin(site, path) if site else path


def _iso(value):
    """ISO 8601 in UTC with a "Z": the same for every site, whatever its TIME_ZONE."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
