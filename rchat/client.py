"""RChatClient: the two calls rchat makes to R-Chat, Register and Send Message.

One ``requests.Session`` per thread of a process keeps connections to R-Chat open
between calls. Every call has a connect and a read time-out, and every failure is a
typed ``RChatAPIError`` (see exceptions.py) whose text never holds a whole token.
"""

import email.utils
import json
import logging
import os
import threading
import time

import requests

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

logger = logging.getLogger(__name__)

#: Where Register's answer may carry the signature token, in the order looked at.
SIGNATURE_FIELDS = (
    "Chatday-Signature-Token",
    "chatday_signature_token",
    "signature_token",
    "signatureToken",
    "X-Chatday-Signature-Token",
)

# Bytes of R-Chat's answer kept in an error: enough to read the reason.
BODY_EXCERPT = 500

_local = threading.local()


def _reset_sessions():
    # A forked child (a Celery prefork worker) must not share sockets with its parent.
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_reset_sessions)


def get_session():
    """This thread's ``requests.Session`` (created on first use)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = "rchat (Django)"
        _local.session = session
    return session


def parse_retry_after(value):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(when.timestamp() - time.time()))


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


class RChatClient:
    """Calls R-Chat on behalf of one Chatday-Token.

    ``RChatClient.for_credential(credential)`` is the usual way to get one.
    """

    def __init__(self, *, base_url, token, connect_timeout=None, read_timeout=None):
        if not base_url:
            raise RChatConfigurationError(
                'No R-Chat base URL: set the credential\'s base URL or RCHAT["API_BASE_URL"].'
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
        response = self._post(get_setting("REGISTER_PATH"), None)
        payload = self._json(response, required=False)
        signature = find_signature_token(payload, response.headers)
        if not signature:
            raise RChatResponseError(
                f"R-Chat accepted Register (HTTP {response.status_code}) but its answer holds "
                f"no signature token: {self._excerpt(response)!r}",
                status=response.status_code,
                body=self._excerpt(response),
            )
        return signature

    def send_message(self, chat_id, type, data):
        """Post a message into a chat room; return R-Chat's JSON answer (or {})."""
        body = {"message": {"type": type, "data": data}, "chat_id": chat_id}
        response = self._post(get_setting("SEND_MESSAGE_PATH"), body)
        payload = self._json(response, required=False)
        return payload if isinstance(payload, dict) else {}

    # --- plumbing ---------------------------------------------------------------

    def _url(self, path):
        return f"{self.base_url}/{path.lstrip('/')}"

    def _post(self, path, body):
        url = self._url(path)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        started = time.monotonic()
        try:
            response = get_session().post(url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise RChatUnavailableError(f"R-Chat did not answer in time ({url}): {exc}") from exc
        except requests.RequestException as exc:
            # Connection refused, DNS, TLS, a connection dropped mid-answer …
            reason = crypto.redact(exc, self.token)
            raise RChatUnavailableError(f"Could not reach R-Chat at {url}: {reason}") from exc
        logger.debug(
            "POST %s -> %s in %.0f ms",
            url,
            response.status_code,
            (time.monotonic() - started) * 1e3,
        )
        self._raise_for_status(response, url)
        return response

    def _excerpt(self, response):
        text = response.content[:BODY_EXCERPT].decode("utf-8", errors="replace")
        return crypto.redact(text, self.token)

    def _raise_for_status(self, response, url):
        status = response.status_code
        if 200 <= status < 300:
            return
        body = self._excerpt(response)
        where = f"R-Chat answered HTTP {status} to {url}"
        if status in (401, 403):
            raise RChatAuthError(
                f"{where}: the Chatday-Token {crypto.mask(self.token)} was refused: {body!r}",
                status=status,
                body=body,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RChatRateLimitedError(
                f"{where}: rate limited (Retry-After: {retry_after})",
                status=status,
                body=body,
                retry_after=retry_after,
            )
        if 400 <= status < 500:
            raise RChatRejectedError(f"{where}: {body!r}", status=status, body=body)
        raise RChatUnavailableError(f"{where}: {body!r}", status=status, body=body)

    def _json(self, response, *, required):
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError) as exc:
            if required:
                raise RChatResponseError(
                    f"R-Chat's answer is not JSON: {self._excerpt(response)!r}",
                    status=response.status_code,
                    body=self._excerpt(response),
                ) from exc
            return None
