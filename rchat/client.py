"""RChatClient: the two calls rchat makes to R-Chat, Register and Send Message.

One ``requests.Session`` per thread of a process keeps connections to R-Chat open
between calls. Every call has a connect and a read time-out, and every failure is a
typed ``RChatAPIError`` (see exceptions.py) whose text never holds a whole token.
"""

import email.utils
import json
import logging
import math
import os
import threading
import time
from datetime import UTC

import requests
from django.utils.translation import gettext as _

from . import crypto
from .conf import get_setting
from .exceptions import (
    RChatAuthError,
    RChatConfigurationError,
    RChatRateLimitedError,
    RChatRejectedError,
    RChatResponseError,
    RChatUnavailableError,
)
from .payloads import is_http_url

logger = logging.getLogger(__name__)

#: Where Register's answer may carry the signature token, in the order looked at.
SIGNATURE_FIELDS = (
    "Chatday-Signature-Token",
    "chatday_signature_token",
    "signature_token",
    "signatureToken",
    "X-Chatday-Signature-Token",
)

#: Where R-Chat's answer to Send Message may carry its id for the message.
SENT_ID_FIELDS = ("message_id", "messageId", "id")

#: The header every try of one outbound message carries with the same value.
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Bytes of R-Chat's answer kept in an error: enough to read the reason.
BODY_EXCERPT = 500

# JSON keys whose values are masked when an unexpected answer is shown in an error:
# a Register answer rchat cannot read may still hold a secret under another name.
SECRET_KEY_PARTS = ("token", "secret", "signature", "password", "key")

_local = threading.local()


def _reset_sessions():
    # A forked child (a Celery prefork worker) must not share sockets with its parent.
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_reset_sessions)


def get_session():
    """This thread's ``requests.Session`` (created on first use).

    It does not read the environment on every call (``trust_env`` off): requests would
    otherwise walk ``os.environ`` for proxy and CA settings on each request, which cost
    more than a millisecond of CPU per message on a worker. What those variables say is
    read once instead: proxies per R-Chat origin (``HTTPS_PROXY``, ``NO_PROXY`` …, see
    ``proxies_for``) and the CA bundle (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``).
    """
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = "rchat (Django)"
        session.trust_env = False
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
        _local.session = session
        _local.proxies = {}
    return session


def proxies_for(url):
    """The proxies the environment gives for ``url``'s origin, looked up once per thread."""
    origin = "/".join(url.split("/", 3)[:3])
    found = _local.proxies.get(origin)
    if found is None:
        found = _local.proxies[origin] = requests.utils.get_environ_proxies(origin)
    return found


def parse_retry_after(value):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are in GMT; a date without a zone must not be read as local time.
        when = when.replace(tzinfo=UTC)
    return max(0, math.ceil(when.timestamp() - time.time()))


def find_signature_token(payload, headers):
    """The signature token from Register's JSON body or headers, or None."""
    candidates = [payload]
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict):
        candidates.append(payload["data"])
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        for field in SIGNATURE_FIELDS:
            value = candidate.get(field)
            if isinstance(value, str) and value.strip():
                return value.strip()
    for field in SIGNATURE_FIELDS:
        value = headers.get(field)
        if value and value.strip():
            return value.strip()
    return None


def _mask_secret_values(payload):
    """``payload`` with the value of every secret-looking key masked (for error text)."""
    if isinstance(payload, dict):
        return {
            key: (
                crypto.mask(str(value))
                if isinstance(value, str | int)
                and any(part in str(key).lower() for part in SECRET_KEY_PARTS)
                else _mask_secret_values(value)
            )
            for key, value in payload.items()
        }
    if isinstance(payload, list):
        return [_mask_secret_values(item) for item in payload]
    return payload


def _network_reason(exc):
    """The root cause of a requests failure in a few words ("Connection refused")."""
    seen = set()
    cause = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        nested = [arg for arg in getattr(cause, "args", ()) if isinstance(arg, BaseException)]
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException):
            nested.insert(0, reason)
        cause = nested[0] if nested else (cause.__cause__ or cause.__context__)
    return str(exc)


def sent_message_id(answer):
    """R-Chat's id for a message it accepted, from its JSON answer; "" when it gives none."""
    candidates = [answer]
    if isinstance(answer, dict):
        for nested in ("data", "message"):
            if isinstance(answer.get(nested), dict):
                candidates.append(answer[nested])
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        for field in SENT_ID_FIELDS:
            value = candidate.get(field)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()
    return ""


class RChatClient:
    """Calls R-Chat on behalf of one Chatday-Token.

    ``RChatClient.for_credential(credential)`` is the usual way to get one.
    """

    def __init__(self, *, base_url, token, connect_timeout=None, read_timeout=None):
        if not base_url:
            raise RChatConfigurationError(
                _('No R-Chat base URL: set the credential\'s base URL or RCHAT["API_BASE_URL"].')
            )
        if not is_http_url(base_url):
            raise RChatConfigurationError(
                _(
                    "R-Chat base URL %(url)r is not an http(s) URL: fix the credential's "
                    'base URL or RCHAT["API_BASE_URL"].'
                )
                % {"url": base_url}
            )
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = (
            connect_timeout if connect_timeout is not None else get_setting("CONNECT_TIMEOUT"),
            read_timeout if read_timeout is not None else get_setting("READ_TIMEOUT"),
        )

    @classmethod
    def for_credential(cls, credential):
        return cls(base_url=credential.api_base_url, token=credential.token)

    def register(self):
        """Activate the Chatday-Token; return the Chatday-Signature-Token R-Chat issued."""
        url = self._url(get_setting("REGISTER_PATH"))
        response = self._post(url, None)
        payload = self._json(response, required=False)
        signature = find_signature_token(payload, response.headers)
        if not signature:
            body = self._excerpt(response, payload)
            raise RChatResponseError(
                _(
                    "R-Chat answered Register with HTTP %(status)s from %(url)s but "
                    "no signature token: %(body)s"
                )
                % {"status": response.status_code, "url": url, "body": _show(body)},
                status=response.status_code,
                body=body,
                kind="no_signature",
            )
        return signature

    def send_message(self, chat_id, type, data, *, idempotency_key="", sender=None):
        """Post a message into a chat room; return R-Chat's JSON answer (or {}).

        ``idempotency_key`` goes in the ``Idempotency-Key`` header and, unless
        ``RCHAT["IDEMPOTENCY_KEY_FIELD"]`` is empty, in the body under that name: every
        try of one message carries the same key, so a platform that honours it stores
        a message once however often a lost answer makes rchat send it again.

        ``sender`` (who wrote it: ``{"kind": ..., "name": ...}``) goes in the body under
        ``RCHAT["SENDER_FIELD"]`` when that is set.
        """
        body = {"message": {"type": type, "data": data}, "chat_id": chat_id}
        sender_field = get_setting("SENDER_FIELD")
        if sender_field and sender:
            body[sender_field] = sender
        headers = {}
        if idempotency_key:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
            field = get_setting("IDEMPOTENCY_KEY_FIELD")
            if field:
                body[field] = idempotency_key
        response = self._post(self._url(get_setting("SEND_MESSAGE_PATH")), body, headers)
        payload = self._json(response, required=False)
        return payload if isinstance(payload, dict) else {}

    # --- plumbing ---------------------------------------------------------------

    def _url(self, path):
        return f"{self.base_url}/{path.lstrip('/')}"

    def _post(self, url, body, extra_headers=None):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        headers.update(extra_headers or {})
        data = None
        if body is not None:
            # UTF-8 as is (not \u escapes), so Thai text reaches R-Chat readable as sent.
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        started = time.monotonic()
        try:
            # A redirected POST would be re-sent as a GET by requests: treat it as an answer.
            session = get_session()
            response = session.post(
                url,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                proxies=proxies_for(url),
            )
        except requests.ConnectTimeout as exc:
            raise RChatUnavailableError(
                _("Could not connect to R-Chat at %(url)s within %(seconds)gs (time-out)")
                % {"url": url, "seconds": self.timeout[0]},
                kind="timeout",
            ) from exc
        except requests.Timeout as exc:
            raise RChatUnavailableError(
                _("R-Chat did not answer %(url)s within %(seconds)gs (time-out)")
                % {"url": url, "seconds": self.timeout[1]},
                kind="timeout",
            ) from exc
        except requests.RequestException as exc:
            # Connection refused, DNS, TLS, a connection dropped mid-answer …
            reason = crypto.redact(_network_reason(exc), self.token)
            raise RChatUnavailableError(
                _("Could not connect to R-Chat at %(url)s: %(reason)s")
                % {"url": url, "reason": reason},
                kind="unreachable",
            ) from exc
        logger.debug(
            "POST %s -> %s in %.0f ms",
            url,
            response.status_code,
            (time.monotonic() - started) * 1e3,
        )
        self._raise_for_status(response, url)
        return response

    def _excerpt(self, response, payload=None):
        if isinstance(payload, dict | list):
            text = json.dumps(_mask_secret_values(payload), ensure_ascii=False)
        else:
            text = response.content.decode("utf-8", errors="replace")
        text = " ".join(text.split())[:BODY_EXCERPT]
        return crypto.redact(text, self.token)

    def _raise_for_status(self, response, url):
        status = response.status_code
        if 200 <= status < 300:
            return
        body = self._excerpt(response, self._json(response, required=False))
        where = _("HTTP %(status)s from %(url)s") % {"status": status, "url": url}
        if status in (401, 403):
            raise RChatAuthError(
                _("R-Chat refused the Chatday-Token %(token)s (%(where)s): %(body)s")
                % {"token": crypto.mask(self.token), "where": where, "body": _show(body)},
                status=status,
                body=body,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                wait = _("retry after %(seconds)ss") % {"seconds": retry_after}
            else:
                wait = _("no Retry-After")
            raise RChatRateLimitedError(
                _("R-Chat is rate limiting requests (%(where)s, %(wait)s): %(body)s")
                % {"where": where, "wait": wait, "body": _show(body)},
                status=status,
                body=body,
                retry_after=retry_after,
            )
        if 300 <= status < 400:
            location = crypto.redact(response.headers.get("Location", ""), self.token)
            raise RChatRejectedError(
                _(
                    "R-Chat redirected the request (%(where)s to %(location)s): "
                    "set the base URL to the address it redirects to"
                )
                % {"where": where, "location": location or "?"},
                status=status,
                body=body,
                kind="redirect",
            )
        if 400 <= status < 500:
            raise RChatRejectedError(
                _("R-Chat rejected the request (%(where)s): %(body)s")
                % {"where": where, "body": _show(body)},
                status=status,
                body=body,
                kind="not_found" if status in (404, 405) else None,
            )
        raise RChatUnavailableError(
            _("R-Chat is unavailable (%(where)s): %(body)s")
            % {"where": where, "body": _show(body)},
            status=status,
            body=body,
        )

    def _json(self, response, *, required):
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            if required:
                raise RChatResponseError(
                    _("R-Chat's answer is not JSON: %(body)s")
                    % {"body": _show(self._excerpt(response))},
                    status=response.status_code,
                    body=self._excerpt(response),
                ) from exc
            return None


def _show(body):
    return repr(body) if body else _("(empty body)")
