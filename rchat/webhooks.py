"""The webhook R-Chat calls for every end-user message (docs/webhooks.md).

``POST /rchat/webhook/`` finds the credential by the signature token alone;
``POST /rchat/webhook/<key>/`` is one credential's own URL and accepts only its token.
The view checks, in this order and before anything is written: the token (401
without one, 403 for a wrong one), then the size (413). Then it reads the body and
hands it to ``services.webhook_receive``, which keeps the call as a WebhookEvent and
stores the message. R-Chat gets 200 ``{"status": "SUCCESS"}`` for a message, a
redelivery and a verify ping alike.
"""

import ipaddress
import logging
import threading
import time

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from . import crypto, selectors, services
from .conf import get_setting
from .models import WebhookEvent

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Chatday-Signature-Token"
SIGNATURE_META = "HTTP_X_CHATDAY_SIGNATURE_TOKEN"
# Headers that may carry a secret: stored masked, never whole.
SECRET_HEADERS = {SIGNATURE_HEADER.lower(), "authorization", "cookie", "proxy-authorization"}
# Refused calls are logged at most once per this many seconds (per process), so
# that a stranger hammering the URL cannot fill the log either.
REFUSAL_LOG_INTERVAL = 10.0


class _RefusalLog:
    """One warning per interval for refused calls, with how many were not logged."""

    def __init__(self, interval):
        self.interval = interval
        self._lock = threading.Lock()
        self._last = None
        self._suppressed = 0

    def warning(self, reason, remote_addr):
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        logger.warning(
            "Refused an R-Chat webhook from %s: %s (%d more refused calls not logged)",
            remote_addr or "unknown address",
            reason,
            suppressed,
        )


refusal_log = _RefusalLog(REFUSAL_LOG_INTERVAL)

# The answer to every stored call, rendered once by the view's own renderer: a DRF
# Response renders the same bytes anew for each call, about 0.1 ms, some 5% of the CPU
# a webhook costs.
SUCCESS_BODY = JSONRenderer().render({"status": "SUCCESS"})


class JSONOnly(BaseContentNegotiation):
    """Always answer JSON: R-Chat's Accept header must not turn a message into a 406."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _error(status_code, code, detail):
    return Response({"status": "ERROR", "code": code, "detail": str(detail)}, status=status_code)


def _remote_addr(request):
    # REMOTE_ADDR only: X-Forwarded-For is whatever the caller wants it to be unless a
    # proxy the site trusts sets it, and rchat cannot know which proxies those are.
    value = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(value.split("%", 1)[0]))
    except ValueError:
        return None


def _stored_headers(request, token):
    """The request's headers as kept on the WebhookEvent: secrets masked."""
    headers = {}
    for name, value in request.headers.items():
        value = str(value)
        if name.lower() in SECRET_HEADERS:
            value = crypto.mask(value) or crypto.MASK
        else:
            value = crypto.redact(value, token)
        headers[name] = value
    return headers


def _declared_length(meta):
    """The body's Content-Length as a number, or None when the request gives none.

    A body sent with ``Transfer-Encoding: chunked`` has no length (HTTP lets the
    encoding win over a Content-Length, and proxies strip it). A Content-Length that is
    not a number is treated as absent, the same way.
    """
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    try:
        length = int(meta.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _body_stream(django_request, declared):
    """Something to ``read()`` the whole body from, or None when it cannot be read.

    With a length, Django's request reads exactly that much. Without one, Django's
    WSGI request reads nothing at all (it takes a missing Content-Length for 0), so
    a chunked body would look empty and its message would be answered SUCCESS and
    lost. The body is then read from the server's own input, but only where the
    server says that input ends where the body ends (``wsgi.input_terminated``, set by
    gunicorn, uWSGI, mod_wsgi and Waitress); elsewhere (Django's runserver) reading it
    could wait forever, and None is returned. An ASGI request holds the whole body.
    """
    if declared is not None:
        return django_request
    meta = django_request.META
    if "wsgi.input" not in meta:
        return django_request  # ASGI: the handler has read the body, of any encoding
    if meta.get("wsgi.input_terminated"):
        return meta["wsgi.input"]
    if "HTTP_TRANSFER_ENCODING" not in meta:
        return django_request  # no length and no body: a ping, read as empty
    return None


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class WebhookView(APIView):
    """R-Chat's webhook. CSRF-exempt and open without a login: the signature token is
    its only authentication, checked before anything is read or stored."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []
    parser_classes = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnly
    http_method_names = ["post"]

    def post(self, request, key=None):
        token = request.META.get(SIGNATURE_META, "")
        remote_addr = _remote_addr(request)
        if not token:
            refusal_log.warning("no signature token", remote_addr)
            return _error(
                status.HTTP_401_UNAUTHORIZED,
                "missing_token",
                _("The %(header)s header is missing.") % {"header": SIGNATURE_HEADER},
            )
        credential = selectors.webhook_credential(token=token, key=key)
        if credential is None:
            refusal_log.warning("wrong signature token", remote_addr)
            return _error(
                status.HTTP_403_FORBIDDEN,
                "invalid_token",
                _("The %(header)s does not match a registered R-Chat credential.")
                % {"header": SIGNATURE_HEADER},
            )

        headers = _stored_headers(request, token)
        limit = get_setting("WEBHOOK_MAX_BYTES")
        declared = _declared_length(request.META)
        if declared is not None and declared > limit:
            return self._too_large(credential, headers, remote_addr, declared, limit)
        stream = _body_stream(request._request, declared)
        if stream is None:
            # A body of unknown length that this server cannot read to its end: answering
            # SUCCESS would drop the message, so the sender is told to send a length.
            reason = _(
                "A body without Content-Length (chunked) cannot be read by this server; "
                "send Content-Length."
            )
            services.webhook_refuse(
                credential_id=credential.id, headers=headers, remote_addr=remote_addr, error=reason
            )
            return _error(status.HTTP_411_LENGTH_REQUIRED, "length_required", reason)
        try:
            # One byte more than allowed tells a body over the limit from one at it,
            # whatever Content-Length claimed (or when none did).
            body = stream.read(limit + 1)
        except OSError as exc:
            logger.warning("Could not read an R-Chat webhook body: %s", exc)
            return _error(
                status.HTTP_400_BAD_REQUEST,
                "unreadable_body",
                _("The request body could not be read."),
            )
        if len(body) > limit:
            return self._too_large(credential, headers, remote_addr, len(body), limit)

        result = services.webhook_receive(
            credential_id=credential.id,
            body=body,
            headers=headers,
            remote_addr=remote_addr,
            new_room_handler=credential.new_room_handler,
        )
        if result.outcome != WebhookEvent.Outcome.FAILED:
            return HttpResponse(SUCCESS_BODY, content_type=JSONRenderer.media_type)
        if result.retryable:
            # The body is kept and can be re-processed; 503 also asks R-Chat to send
            # again, which is safe: a redelivery is recognised and stored once.
            return _error(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                _("The message could not be stored just now; please send it again."),
            )
        # The body itself is wrong: sending it again would not help. It is kept
        # (outcome "failed") for re-processing after a fix.
        return _error(status.HTTP_400_BAD_REQUEST, "invalid_body", result.event.error)

    def _too_large(self, credential, headers, remote_addr, size, limit):
        reason = _("The body is %(size)d bytes; at most %(limit)d are accepted.") % {
            "size": size,
            "limit": limit,
        }
        services.webhook_refuse(
            credential_id=credential.id, headers=headers, remote_addr=remote_addr, error=reason
        )
        return _error(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body_too_large", reason)

    def handle_exception(self, exc):
        if isinstance(exc, exceptions.APIException):
            # Raised by DRF itself before post(): 405 for another method, mostly.
            response = super().handle_exception(exc)
            detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
            response.data = {"status": "ERROR", "code": exc.get_codes(), "detail": str(detail)}
            return response
        # Never a 500: the database may be down or rchat has a bug. Nothing was kept
        # (services keep what they can), so ask R-Chat to send the call again.
        response = _error(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            _("The message could not be stored just now; please send it again."),
        )
        # Logged here once, with the traceback; Django then does not log it again.
        request = getattr(self, "request", None)
        log_response(
            "R-Chat webhook failed: %s",
            request.path if request is not None else "",
            response=response,
            request=getattr(request, "_request", None),
            logger=logger,
            exception=exc,
        )
        return response
