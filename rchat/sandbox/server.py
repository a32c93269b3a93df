"""The sandbox's HTTP server: R-Chat's API, the end-user pages and the ``/_sandbox`` API."""

import contextlib
import html
import json
import logging
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from string import Template
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import i18n
from .state import (
    CHANNELS,
    DEFAULT_SECRET,
    DEFAULT_SENDER_FIELD,
    Fault,
    SandboxInputError,
    SandboxState,
    mask,
)
from .webhook import check_webhook_url, post_webhook, run_burst, webhook_body

logger = logging.getLogger("rchat.sandbox")

MAX_BODY = 1024 * 1024
# How often the serving loop looks for stop(): socketserver's default of 0.5 s made every
# stop (and every test with a sandbox) wait up to half a second.
POLL_INTERVAL = 0.05
DEFAULT_PATHS = {
    "REGISTER_PATH": "/api/v1/external/register",
    "SEND_MESSAGE_PATH": "/api/v1/external/send-message",
}
ASSETS = {
    "sandbox.js": "application/javascript; charset=utf-8",
    "sandbox.css": "text/css; charset=utf-8",
}
CHAT_PATH = re.compile(r"^/chat/(?P<chat_id>[^/]+)/?$")
CHAT_API_PATH = re.compile(r"^/_sandbox/chats/(?P<chat_id>[^/]+)(?P<rest>/messages)?/?$")
# The pages load their script and style sheet from the sandbox and nothing inline: a
# message is text, never markup, and this makes sure no markup that slipped through
# could run. Images may come from anywhere over http(s): the pictures the site sends
# are on the site (its attachments' URLs), not on the sandbox.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _setting(name):
    """rchat's configured path when Django is set up, else the documented default."""
    try:
        from django.core.exceptions import ImproperlyConfigured

        from rchat.conf import get_setting

        try:
            return get_setting(name)
        except ImproperlyConfigured:
            return DEFAULT_PATHS[name]
    except ImportError:  # pragma: no cover - rchat always ships with Django
        return DEFAULT_PATHS[name]


def _site_time_zone():
    """The site's TIME_ZONE when Django is set up (the sandbox runs in the site's
    project: ``manage.py rchat_sandbox``), else UTC."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            return settings.TIME_ZONE or "UTC"
        except ImproperlyConfigured:
            return "UTC"
    except ImportError:  # pragma: no cover - rchat always ships with Django
        return "UTC"


def _asset(name):
    return resources.files("rchat.sandbox").joinpath("assets", name).read_text("utf-8")


class _Drop(Exception):
    """Close the connection without an answer (the "drop" fault)."""


class SandboxHandler(BaseHTTPRequestHandler):
    server_version = "RChatSandbox/1.0"
    # Keep-alive, as R-Chat's load balancer would: the client's session reuses it.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the second
    # waits for the client's delayed ACK (~40 ms a call on loopback).
    disable_nagle_algorithm = True

    @property
    def sandbox(self):
        return self.server.sandbox

    def log_message(self, format, *args):
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method):
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = self._read_body()
            self.sandbox._route(self, method, parts.path.rstrip("/") or "/", body)
        except _Drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except SandboxInputError as exc:
            self.send_json(400, {"status": "ERROR", "reason": str(exc)})
        except Exception:
            logger.exception("Sandbox error on %s %s", method, self.path)
            self.send_json(500, {"status": "ERROR", "reason": "sandbox error (see its log)"})

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise SandboxInputError(f"Body over {MAX_BODY} bytes.")
        return self.rfile.read(length) if length else b""

    def send_json(self, status, payload, headers=None):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json; charset=utf-8", headers)

    def send_text(self, status, text, content_type):
        self._send(status, text.encode("utf-8"), content_type)

    def send_page(self, text, headers=None):
        self._send(
            200,
            text.encode("utf-8"),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": PAGE_CSP, **(headers or {})},
        )

    def _send(self, status, data, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _cross_site_refusal(request, method):
    """Why a changing /_sandbox call may come from another web site, or None.

    Any page a developer visits while the sandbox runs could otherwise post to it
    (a form or a ``text/plain`` fetch needs no permission) and put signed messages
    into their site. A browser sends ``application/json`` to another origin only
    after asking (a CORS preflight, which the sandbox never grants), and says where a
    request comes from in ``Origin``: both are checked. (A DELETE is always asked first.)
    """
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if method == "POST" and content_type != "application/json":
        return "Changing the sandbox needs Content-Type: application/json."
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or parts.netloc != request.headers.get("Host", ""):
            return f"Requests from {origin} may not change the sandbox."
    return None


def _json_body(body):
    if not body:
        return {}
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SandboxInputError(f"The body is not UTF-8 JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise SandboxInputError("The body must be a JSON object.")
    return payload


class Sandbox:
    """A fake R-Chat on a real HTTP server, run in a background thread.

    ``with Sandbox(port=0, webhook_url=...) as sb:`` starts it on a free port;
    ``sb.url`` is its base URL (use it as a credential's base URL). The sandbox
    answers Register and Send Message like R-Chat, posts end users' messages to
    ``webhook_url`` (``send_as_user``), remembers what it received (``received``)
    and misbehaves on request (``inject``). Its pages are at ``sb.url + "/"``.

    ``sender_field``: where a Send Message body says who wrote the reply (rchat's
    RCHAT["SENDER_FIELD"]); each reply is kept and shown with it ("" ignores it).
    ``time_zone``: the IANA zone the chat pages show times in, as the site does
    (default: the site's ``TIME_ZONE``; UTC outside a Django project).
    """

    def __init__(
        self,
        *,
        host="127.0.0.1",
        port=0,
        webhook_url="",
        tokens=(),
        strict=False,
        secret=DEFAULT_SECRET,
        register_path=None,
        send_path=None,
        webhook_timeout=10.0,
        idempotent=True,
        sender_field=DEFAULT_SENDER_FIELD,
        time_zone=None,
    ):
        if webhook_url:
            check_webhook_url(webhook_url)
        self.time_zone = time_zone or _site_time_zone()
        try:
            self.zone = ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SandboxInputError(
                f"Unknown time zone {self.time_zone!r}: use an IANA name such as Asia/Bangkok."
            ) from None
        self.host = host
        self.port = port
        self.webhook_url = webhook_url
        self.webhook_timeout = webhook_timeout
        self.register_path = "/" + (register_path or _setting("REGISTER_PATH")).strip("/")
        self.send_path = "/" + (send_path or _setting("SEND_MESSAGE_PATH")).strip("/")
        self.sender_field = sender_field or ""
        self.state = SandboxState(
            tokens=tokens, strict=strict, secret=secret, idempotent=idempotent
        )
        self._server = None
        self._thread = None

    # --- life cycle -----------------------------------------------------------------

    def bind(self):
        """Bind the port now, so ``url`` is known before serving; returns self."""
        if self._server is None:
            self._server = _Server((self.host, self.port), SandboxHandler)
            self._server.sandbox = self
            self.port = self._server.server_address[1]
        return self

    def start(self):
        """Serve in a daemon thread; returns self."""
        self.bind()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"rchat-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self):
        """Serve in this thread until ``stop()`` is called from another (or an exception)."""
        self.bind()
        try:
            self._server.serve_forever(poll_interval=POLL_INTERVAL)
        finally:
            self._server.server_close()

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- the Python API (the same as the /_sandbox JSON API) ------------------------

    @property
    def strict(self):
        return self.state.strict

    def signature_for(self, token):
        """The signature token this sandbox issues for ``token``."""
        return self.state.signature_for(token)

    def received(self, chat_id=None):
        """Send Message calls accepted, oldest first: dicts with chat_id, message, message_id."""
        return self.state.received(chat_id)

    def calls(self):
        """Every call to Register and Send Message with the status answered."""
        with self.state.lock:
            return [dict(c) for c in self.state.calls]

    def inject(self, **spec):
        """Add a fault, e.g. ``inject(status=503, count=2)``; see docs/sandbox.md."""
        return self.state.add_fault(Fault.parse(spec)).as_dict()

    def clear_faults(self):
        return self.state.clear_faults()

    def faults(self):
        with self.state.lock:
            return [f.as_dict() for f in self.state.faults]

    def reset(self):
        self.state.reset()

    def chats(self):
        return self.state.chat_list()

    def conversation(self, chat_id, after=0):
        """The chat as its page shows it (None for an unknown chat)."""
        return self.state.conversation(chat_id, after)

    def send_as_user(self, chat_id, text=None, *, channel=None, name=None, type="text", data=None):
        """Write in chat ``chat_id`` as the end user: post the webhook to the site.

        Returns the message as the chat page shows it; its ``webhook`` key holds
        the site's answer (``status``, ``ok``) or the ``error`` reaching it.
        """
        chat_id = str(chat_id or "").strip()
        if not chat_id:
            raise SandboxInputError("A chat id is required.")
        if channel is not None and channel not in CHANNELS:
            raise SandboxInputError(f"channel must be one of {', '.join(CHANNELS)}.")
        if data is None:
            if not isinstance(text, str) or not text.strip():
                raise SandboxInputError("Write some text.")
            data = text
        if not isinstance(type, str) or not type:
            raise SandboxInputError("type must be a non-empty string.")
        chat = self.state.chat(chat_id, channel=channel, name=name)
        with chat.post_lock:
            body = webhook_body(
                chat_id=chat_id, channel=chat.channel, name=chat.name, type=type, data=data
            )
            entry = self.state.add_entry(
                chat,
                **{"from": "user", "id": body["message"]["id"]},
                type=type,
                data=data,
                webhook={"pending": True},
            )
            if not self.webhook_url:
                outcome = {
                    "status": None,
                    "ok": False,
                    "error": "The sandbox has no webhook URL (--webhook-url).",
                }
            else:
                token = self.state.account_token
                outcome = post_webhook(
                    self.webhook_url,
                    body,
                    self.signature_for(token),
                    timeout=self.webhook_timeout,
                )
            with self.state.lock:
                entry["webhook"] = outcome
            return dict(entry)

    def burst(self, messages, chats, *, progress=None):
        """Send ``messages`` end-user messages over ``chats`` chats; return a summary."""
        return run_burst(
            lambda chat_id, text: self.send_as_user(chat_id, text)["webhook"],
            messages,
            chats,
            progress=progress,
        )

    def wait_for(self, chat_id, count, timeout=30.0):
        """Wait until ``count`` messages reached ``chat_id``; return them (raises on time-out)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(chat_id)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(got)} of {count} message(s) reached chat {chat_id!r} in {timeout}s."
                )
            time.sleep(0.05)

    def info(self):
        state = self.state
        return {
            "url": self.url,
            "webhook_url": self.webhook_url,
            "strict": state.strict,
            "register_path": self.register_path,
            "send_path": self.send_path,
            "sender_field": self.sender_field,
            "time_zone": self.time_zone,
            "account_token": mask(state.account_token),
            "idempotent": state.idempotent,
            "repeated_keys": state.repeats,
            "registered": [mask(t) for t in state.registered],
        }

    # --- HTTP routing ---------------------------------------------------------------

    def _route(self, request, method, path, body):
        if method == "POST" and path == self.register_path:
            return self._api_call(request, "register", body)
        if method == "POST" and path == self.send_path:
            return self._api_call(request, "send", body)
        if method == "GET" and path == "/":
            language, headers = self._language(request)
            return request.send_page(self._page(request, "index.html", language), headers)
        match = CHAT_PATH.match(path)
        if method == "GET" and match:
            return self._chat_page(request, unquote(match["chat_id"]))
        if method == "GET" and path.startswith("/_sandbox/static/"):
            name = path.rsplit("/", 1)[-1]
            if name in ASSETS:
                return request.send_text(200, _asset(name), ASSETS[name])
        if path.startswith("/_sandbox"):
            refused = _cross_site_refusal(request, method) if method != "GET" else None
            if refused:
                return request.send_json(403, {"status": "ERROR", "reason": refused})
            return self._control(
                request, method, path, _json_body(body) if method == "POST" else {}
            )
        return request.send_json(404, {"status": "ERROR", "reason": f"No page at {path}."})

    def _language(self, request):
        """The page's language (docs/sandbox.md, "Languages") and the headers that
        remember a choice made with ``?lang=``."""
        language, remember = i18n.choose_language(
            request.query.get("lang"),
            request.headers.get("Cookie"),
            request.headers.get("Accept-Language"),
        )
        return language, ({"Set-Cookie": i18n.remember_header(language)} if remember else {})

    def _page(self, request, name, language, values=None, markup=None):
        """An asset page in ``language``: its words and ``values`` filled in, escaped;
        ``markup`` values are HTML built by this module (``_thread_html``), which
        escapes what goes into it."""
        words = i18n.texts(language)
        shown = {k: v for k, v in words.items() if isinstance(v, str)}
        escaped = {
            k: html.escape(str(v), quote=True) for k, v in {**shown, **(values or {})}.items()
        }
        common = {
            "texts_json": i18n.texts_json(words),
            "language_switch_links": _switch_html(request, language, words),
        }
        return Template(_asset(name)).safe_substitute({**escaped, **common, **(markup or {})})

    def _chat_page(self, request, chat_id):
        channel = request.query.get("channel")
        if channel and channel not in CHANNELS:
            raise SandboxInputError(f"channel must be one of {', '.join(CHANNELS)}.")
        language, headers = self._language(request)
        chat = self.state.chat(chat_id, channel=channel, name=request.query.get("name"))
        conversation = self.state.conversation(chat.chat_id) or {"entries": []}
        words = i18n.texts(language)
        # The words are escaped first, then the values put in with their markup.
        who = html.escape(words["chat_who"]) % {
            "channel": f"<b>{html.escape(chat.channel)}</b>",
            "name": f'<b id="user-name">{html.escape(chat.name)}</b>',
        }
        page = self._page(
            request,
            "chat.html",
            language,
            {
                "chat_id": chat.chat_id,
                "channel": chat.channel,
                "name": chat.name,
                "time_zone": self.time_zone,
                "page_title": words["chat_title"] % {"chat_id": chat.chat_id},
            },
            markup={
                "thread": _thread_html(conversation["entries"], self.zone, words),
                "chat_who_html": who,
            },
        )
        request.send_page(page, headers)

    def _control(self, request, method, path, payload):
        """The /_sandbox JSON API the pages and tests use."""
        q = request.query
        if path == "/_sandbox/info" and method == "GET":
            return request.send_json(200, self.info())
        if path == "/_sandbox/messages" and method == "GET":
            return request.send_json(200, {"messages": self.received(q.get("chat_id"))})
        if path == "/_sandbox/calls" and method == "GET":
            return request.send_json(200, {"calls": self.calls()})
        if path == "/_sandbox/faults":
            if method == "GET":
                return request.send_json(200, {"faults": self.faults()})
            if method == "POST":
                return request.send_json(201, {"fault": self.inject(**payload)})
            if method == "DELETE":
                return request.send_json(200, {"cleared": self.clear_faults()})
        if path == "/_sandbox/burst" and method == "POST":
            summary = self.burst(payload.get("messages"), payload.get("chats"))
            return request.send_json(200, summary)
        if path == "/_sandbox/reset" and method == "POST":
            self.reset()
            return request.send_json(200, {"status": "SUCCESS"})
        if path == "/_sandbox/chats" and method == "GET":
            return request.send_json(200, {"chats": self.chats()})
        match = CHAT_API_PATH.match(path)
        if match:
            chat_id = unquote(match["chat_id"])
            if method == "GET" and not match["rest"]:
                after = q.get("after", "0")
                chat = self.conversation(chat_id, int(after) if after.isdigit() else 0)
                if chat is None:
                    return request.send_json(404, {"status": "ERROR", "reason": "No such chat."})
                return request.send_json(200, chat)
            if method == "POST" and match["rest"]:
                entry = self.send_as_user(
                    chat_id,
                    payload.get("text"),
                    channel=payload.get("channel") or None,
                    name=payload.get("name") or None,
                    type=payload.get("type") or "text",
                    data=payload.get("data"),
                )
                return request.send_json(201, entry)
        return request.send_json(
            405 if path in _CONTROL_PATHS else 404,
            {"status": "ERROR", "reason": f"{method} {path} is not part of the sandbox API."},
        )

    # --- R-Chat's API -----------------------------------------------------------------

    def _api_call(self, request, endpoint, body):
        decision = self.state.decide(endpoint)
        if decision.latency_ms:
            time.sleep(decision.latency_ms / 1000)
        token = _bearer(request.headers.get("Authorization"))
        if decision.drop:
            self.state.log_call(endpoint, None, decision, token)
            raise _Drop
        if decision.status is not None:
            headers = {}
            if decision.retry_after is not None:
                headers["Retry-After"] = str(decision.retry_after)
            self.state.log_call(endpoint, decision.status, decision, token)
            reason = HTTPStatus(decision.status).phrase
            payload = {"status": "ERROR", "reason": f"Injected fault: {reason}"}
            return request.send_json(decision.status, payload, headers)
        if endpoint == "register":
            status, payload = self._register(token, body)
        else:
            status, payload = self._send_message(
                token, body, request.headers.get("Idempotency-Key")
            )
        self.state.log_call(endpoint, status, decision, token)
        request.send_json(status, payload)

    def _register(self, token, body):
        if not token:
            return 401, _error("Missing header: Authorization: Bearer <Chatday-Token>.")
        try:
            signature = self.state.register(token)
        except PermissionError as exc:
            return 401, _error(str(exc))
        return 200, {"status": "SUCCESS", "Chatday-Signature-Token": signature}

    def _send_message(self, token, body, idempotency_key=None):
        if not token:
            return 401, _error("Missing header: Authorization: Bearer <Chatday-Token>.")
        if not self.state.is_registered(token):
            return 401, _error("This Chatday-Token is not registered: call Register first.")
        try:
            payload = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            return 400, _error("The body is not UTF-8 JSON.")
        problem = send_body_problem(payload)
        if problem:
            return 400, _error(problem)
        message = {"type": payload["message"]["type"], "data": payload["message"]["data"]}
        message_id = self.state.record_send(
            chat_id=str(payload["chat_id"]),
            message=message,
            token=token,
            idempotency_key=str(idempotency_key or payload.get("idempotency_key") or ""),
            sender=payload.get(self.sender_field) if self.sender_field else None,
        )
        return 200, {"status": "SUCCESS", "message_id": message_id}


_CONTROL_PATHS = {
    "/_sandbox/info",
    "/_sandbox/messages",
    "/_sandbox/calls",
    "/_sandbox/faults",
    "/_sandbox/burst",
    "/_sandbox/reset",
    "/_sandbox/chats",
}


def _bearer(header):
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _error(reason):
    return {"status": "ERROR", "reason": reason}


def send_body_problem(payload):
    """Why R-Chat would refuse this Send Message body, or None when it is well formed."""
    if not isinstance(payload, dict):
        return 'The body must be a JSON object: {"message": {"type", "data"}, "chat_id"}.'
    message = payload.get("message")
    if not isinstance(message, dict):
        return '"message" must be an object with "type" and "data".'
    kind = message.get("type")
    if not isinstance(kind, str) or not kind.strip():
        return '"message.type" must be a non-empty string.'
    if "data" not in message or message["data"] in (None, "", {}, []):
        return '"message.data" is required.'
    if kind == "text" and not isinstance(message["data"], str):
        return 'A "text" message needs "data" to be a string.'
    chat_id = payload.get("chat_id")
    if isinstance(chat_id, bool) or not isinstance(chat_id, str | int) or not str(chat_id).strip():
        return '"chat_id" must be a non-empty string.'
    return None


# --- The chat page's thread, as sandbox.js draws it -----------------------------------------
# The page arrives with its thread already in it (readable without JavaScript, and what
# a test can read); sandbox.js then redraws it from /_sandbox/chats/<id> every second
# with the same elements and classes.


def _switch_html(request, language, words):
    """The language switch: a link per language to this page with ``?lang=``."""
    path = urlsplit(request.path).path
    links = []
    for code in i18n.LANGUAGES:
        href = html.escape(f"{path}?{urlencode({**request.query, 'lang': code})}")
        current = ' aria-current="true"' if code == language else ""
        name = html.escape(i18n.LANGUAGE_NAMES[code])
        links.append(f'<a href="{href}" hreflang="{code}" lang="{code}"{current}>{name}</a>')
    label = html.escape(words["language_switch"], quote=True)
    return f'<nav class="languages" aria-label="{label}">{" · ".join(links)}</nav>'


def _thread_html(entries, zone, words=None):
    words = words or i18n.texts(i18n.DEFAULT_LANGUAGE)
    now = datetime.now(UTC)
    return "".join(_entry_html(entry, zone, now, words) for entry in entries)


def _entry_html(entry, zone, now, words):
    """One ``<li>``: who wrote it (a reply's label), the bubble, the time and a note."""
    label = entry.get("label")
    classes = entry["from"] + (f" sender-{label['kind']}" if label else "")
    data = entry["data"]
    if entry["type"] == "text" and isinstance(data, str):
        text = data
    else:
        # As JSON.stringify writes it, so the page looks the same before and after a redraw.
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        shown = data if isinstance(data, str) else compact
        text = f"{entry['type']}: {shown}"
    if entry["from"] == "user":
        note, bad = _webhook_note(entry.get("webhook") or {}, words)
    else:
        note, bad = words["from_the_site"], False
    parts = [f'<li class="{html.escape(classes)}">']
    if label:
        parts.append(f'<div class="sender">{html.escape(i18n.label_text(label, words))}</div>')
    parts.append(f'<div class="bubble">{html.escape(text)}</div>')
    at = _parse_at(entry["at"])
    time_words = words["time"]
    title = html.escape(full_text(at, zone, time_words))
    shown = (
        f'<time datetime="{html.escape(entry["at"])}" title="{title}">'
        f"{html.escape(when_text(at, zone, now, time_words))}</time>"
    )
    parts.append(
        f'<div class="{"meta bad" if bad else "meta"}">{shown} · {html.escape(note)}</div></li>'
    )
    return "".join(parts)


# --- Times, as the site shows them (rchat.ui.when) --------------------------------------
# In the site's time zone: today "14:05", yesterday "Yesterday 14:05", this year
# "3 Dec 14:05", before "3 Dec 2025"; the full date and time in the title. In Thai the
# month names are Thai and a year is in the Buddhist era ("2 ธ.ค. 2568"), as
# rchat.ui.when writes them: ``words`` is ``i18n.texts(language)["time"]`` (English
# when left out). sandbox.js's ``whenText`` / ``fullText`` write the same with the same
# words (tests/test_when.py and tests/test_sandbox_i18n.py hold them together).

MONTHS = i18n.ENGLISH_MONTHS


def _parse_at(value):
    """An entry's ``at`` (ISO 8601 in UTC, "…Z") as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def when_text(at, zone, now, words=None):
    """``at`` as a chat page shows it under a message, in ``zone``, on the day ``now``."""
    words = words or i18n.ENGLISH_TIME_WORDS
    shown, today = at.astimezone(zone), now.astimezone(zone).date()
    clock = f"{shown:%H:%M}"
    if shown.date() == today:
        return clock
    if shown.date() == today - timedelta(days=1):
        return words["yesterday"] % {"time": clock}
    day = f"{shown.day} {words['months_short'][shown.month - 1]}"
    year = shown.year + words["era_offset"]
    return f"{day} {clock}" if shown.year == today.year else f"{day} {year}"


def full_text(at, zone, words=None):
    """The full date and time in ``zone``: "3 December 2025 14:05:09"."""
    words = words or i18n.ENGLISH_TIME_WORDS
    shown = at.astimezone(zone)
    month, year = words["months"][shown.month - 1], shown.year + words["era_offset"]
    return f"{shown.day} {month} {year} {shown:%H:%M:%S}"


def _webhook_note(webhook, words):
    """What the page says under an end user's message about its webhook (sandbox.js's
    ``webhookNote``), and whether it went wrong."""
    if webhook.get("pending"):
        return words["webhook_pending"], False
    if webhook.get("ok"):
        return words["webhook_delivered"] % {"status": webhook["status"]}, False
    if webhook.get("status"):
        values = {"status": webhook["status"], "answer": webhook.get("answer") or ""}
        return words["webhook_refused"] % values, True
    return webhook.get("error") or words["webhook_failed"], True


def chat_url(base_url, chat_id, *, channel="web", name=""):
    """The end-user page of a chat."""
    url = f"{base_url.rstrip('/')}/chat/{quote(chat_id, safe='')}?channel={channel}"
    return url + (f"&name={quote(name)}" if name else "")
