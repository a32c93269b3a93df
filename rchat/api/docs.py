"""The API's OpenAPI schema and its documentation page.

The schema holds rchat's API and the webhook R-Chat calls, and nothing else of the
site. Its settings are rchat's own (``SCHEMA_SETTINGS``, given to the views and to
``manage.py spectacular --custom-settings rchat.api.docs.SCHEMA_SETTINGS``): a site
needs no ``SPECTACULAR_SETTINGS`` for it, and its own do not change it.

Every operation has exactly one of the tags in ``TAGS``, named by what it is for.
The names stay English whatever the language: they are identifiers (Swagger UI's
links, the API classes a client generator makes); their descriptions are translated.

The page is Swagger UI served from drf-spectacular-sidecar's static files, so it
loads nothing from a CDN (add ``drf_spectacular_sidecar`` to INSTALLED_APPS). Its
start-up script is a second request to the same URL (``?script=``), not an inline
script, and its styles are files: a strict Content-Security-Policy (script-src and
style-src 'self') allows the page.
"""

import re

from django.contrib.auth.decorators import login_required, permission_required
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import warn
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_field,
)
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularSwaggerSplitView,
    _get_sidecar_url,
)
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer

from .. import webhooks
from .permissions import VIEW_PERMISSION, CanSeeChatRooms

# --- Tags: what each endpoint is for ---------------------------------------------------

ROOMS = "Rooms"
MESSAGES = "Messages"
NOTES = "Notes & mentions"
LABELS = "Labels & canned responses"
BROADCASTS = "Broadcasts"
WEBHOOK = "Webhook"

TAGS = [
    {
        "name": ROOMS,
        "description": _(
            "Chat rooms: list and read them; assign, close, reopen and mark read; who "
            "handles a room: take over, hand over to people, return to the bot."
        ),
    },
    {
        "name": MESSAGES,
        "description": _(
            "A room's messages: read them, reply, send a failed reply again, upload a "
            "picture or a file to send, search every message."
        ),
    },
    {
        "name": NOTES,
        "description": _(
            "Private notes on a room, for staff only and never sent to R-Chat, and the "
            "notes that mention you."
        ),
    },
    {
        "name": LABELS,
        "description": _(
            "The labels a room may have, setting a room's labels, and your canned "
            "responses. Both are created in Django admin."
        ),
    },
    {
        "name": BROADCASTS,
        "description": _(
            "One message to many chat rooms: send it, follow its progress, cancel "
            "what has not been sent yet."
        ),
    },
    {
        "name": WEBHOOK,
        "description": _(
            "What R-Chat calls whenever an end user writes, and what rchat answers. "
            "Not for bots: R-Chat sends these calls, with its signature token."
        ),
    },
]

SCHEMA_SETTINGS = {
    "TITLE": "rchat API",
    # Markdown: the header is a code span, so that "<key>" shows as written and is not
    # taken for an HTML tag.
    "DESCRIPTION": _(
        "Read R-Chat conversations and answer them: chat rooms, their messages, replies, "
        "assign, close and reopen, and who handles a room: take over, hand over to "
        "people, return to the bot. Authenticate with a session or with the header "
        "`Authorization: Token <key>`. The webhook (tag Webhook) is what R-Chat calls "
        "with each end user's message."
    ),
    "VERSION": "1",
    "TAGS": TAGS,
    "PREPROCESSING_HOOKS": ["rchat.api.docs.only_rchat_api"],
    # A reply's sender (person or bot) and a message's (any Message.Sender) are two
    # choice sets under one field name: each named here, not "Sender<hash>Enum".
    # A message and its room also come in search results: their choice sets are named
    # here once, as they were before (not "Status<hash>Enum").
    "ENUM_NAME_OVERRIDES": {
        "ReplySenderEnum": "rchat.api.serializers.REPLY_SENDERS",
        "MessageSenderEnum": "rchat.models.Message.Sender",
        "MessageStatusEnum": "rchat.models.Message.Status",
        "ChatRoomStatusEnum": "rchat.models.ChatRoom.Status",
        "WebhookErrorCodeEnum": "rchat.api.docs.WEBHOOK_ERROR_CODES",
    },
}


def only_rchat_api(endpoints, **kwargs):
    """Keep rchat's API and its webhook in the schema, whatever else the site serves."""
    return [
        endpoint
        for endpoint in endpoints
        if getattr(endpoint[3], "cls", None) is not None
        and (
            endpoint[3].cls.__module__ == "rchat.api.views"
            or issubclass(endpoint[3].cls, webhooks.WebhookView)
        )
    ]


#: Where the API begins in a path: rchat.urls mounts it at "api/", the site mounts rchat
#: anywhere ("/rchat/api/rooms/", "/api/rooms/", "/support/chat/api/rooms/").
API_ROOT = re.compile(r"^(?:.*/)?api/")


class RChatSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the view's tag (``schema_tag``) as its one tag
    and operation ids relative to the API's root."""

    def get_operation_id(self):
        # "rooms_list" wherever the site mounts rchat and whatever else the schema holds:
        # drf-spectacular strips the paths' common prefix, which the webhook beside the
        # API (or a site's own views) shortens, and every id would begin "api_" or
        # "rchat_api_". get_operation() sets path_prefix anew for each operation.
        root = API_ROOT.match(self.path)
        if root is not None:
            self.path_prefix = "^" + re.escape(root.group())
        return super().get_operation_id()

    def get_tags(self):
        tag = getattr(self.view, "schema_tag", None)
        if tag is None:
            # A warning fails tests/test_api_docs.py (--fail-on-warn): no view goes
            # untagged into a "default" group.
            warn(f"{self.view.__class__.__name__} has no schema_tag (one of docs.TAGS).")
            return []
        return [tag]


# --- The webhook ---------------------------------------------------------------------
# Described here, not in rchat/webhooks.py: the view stays about answering R-Chat.


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "integer"}]})
class ChatIdField(serializers.JSONField):
    """R-Chat's chat id: a string or a number."""


class WebhookMessageSerializer(serializers.Serializer):
    type = serializers.CharField(
        max_length=50,
        help_text=_("text, image, file, sticker or location; another type is kept as it came."),
    )
    data = serializers.JSONField(
        help_text=_(
            'The content: a string for a text; a URL or {"url": ...} for an image or a '
            'file; {"package_id": ..., "sticker_id": ...} for a sticker; {"latitude": '
            '..., "longitude": ...} for a location.'
        )
    )
    chat_id = ChatIdField(
        required=False, help_text=_("The chat room's id, when it is not at the top.")
    )
    message_id = serializers.CharField(
        required=False,
        help_text=_(
            "R-Chat's id for the message (also read: messageId, id, mid). A second call "
            "with the same id is a redelivery, stored once."
        ),
    )


class WebhookBodySerializer(serializers.Serializer):
    """What R-Chat sends: the end user's message and its chat room's id.

    Every other field (the channel, the end user's name or avatar, a timestamp) is
    kept with the message; rchat's docs/webhooks.md lists the ones it reads.
    """

    chat_id = ChatIdField(
        required=False,
        help_text=_("The chat room's id (or in message). Needed for a message."),
    )
    message = WebhookMessageSerializer(
        required=False,
        help_text=_("The message. A call without one is a verify call."),
    )


class WebhookSuccessSerializer(serializers.Serializer):
    status = serializers.SerializerMethodField()

    @extend_schema_field({"type": "string", "enum": ["SUCCESS"]})
    def get_status(self, obj):
        return "SUCCESS"


#: Every ``code`` the webhook answers with, beside ``status: "ERROR"``.
WEBHOOK_ERROR_CODES = [
    "missing_token",
    "invalid_token",
    "body_too_large",
    "length_required",
    "unreadable_body",
    "invalid_body",
    "temporarily_unavailable",
    "method_not_allowed",
]


class WebhookErrorSerializer(serializers.Serializer):
    status = serializers.SerializerMethodField()
    code = serializers.ChoiceField(choices=WEBHOOK_ERROR_CODES)
    detail = serializers.CharField(help_text=_("Why, in a sentence."))

    @extend_schema_field({"type": "string", "enum": ["ERROR"]})
    def get_status(self, obj):
        return "ERROR"


def _error(description):
    return OpenApiResponse(WebhookErrorSerializer, description=description)


WEBHOOK_RESPONSES = {
    200: OpenApiResponse(
        WebhookSuccessSerializer,
        description=_(
            "Received: a message (stored), a redelivery of a message already stored "
            "(stored once) or a verify call. What R-Chat expects."
        ),
        examples=[OpenApiExample("SUCCESS", value={"status": "SUCCESS"})],
    ),
    400: _error(
        _(
            "The body is not a message: not UTF-8 JSON, not an object, no chat_id, "
            "nested too deep; or it could not be read. It is kept as a failed webhook "
            "event; sending it again will not help."
        )
    ),
    401: _error(_("No X-Chatday-Signature-Token header. Nothing was written.")),
    403: _error(
        _(
            "The signature token matches no registered credential (or not the one "
            "of the URL's key). Nothing was written."
        )
    ),
    405: _error(_("Another method than POST.")),
    411: _error(
        _(
            "A chunked body (no Content-Length) that this web server cannot read to "
            "its end. Send it with a Content-Length."
        )
    ),
    413: _error(
        _(
            'The body is larger than RCHAT["WEBHOOK_MAX_BYTES"] (256 KiB unless the '
            "site changed it). The refusal is recorded, without the body."
        )
    ),
    503: _error(
        _(
            "The message could not be stored just now. R-Chat should send the call "
            "again: a redelivery is stored once."
        )
    ),
}


class WebhookSchema(AutoSchema):
    """The webhook's two URLs, each its own operation under the Webhook tag."""

    def _for_one_credential(self):
        return "{key}" in self.path

    def get_operation_id(self):
        if self._for_one_credential():
            return "webhook_receive_for_credential"
        return "webhook_receive"

    def get_tags(self):
        return [WEBHOOK]

    def get_summary(self):
        if self._for_one_credential():
            return _("Receive an end user's message, for one credential")
        return _("Receive an end user's message")

    def get_description(self):
        description = _(
            "R-Chat calls this URL, with POST, whenever an end user writes: in the web "
            "site's chat widget, or on LINE or Facebook through R-Chat's Chat Center. "
            "The call carries the signature token that Register returned, in the "
            "header `X-Chatday-Signature-Token`, and a JSON body with the message and "
            "its chat room's id. rchat checks the token, then the size, keeps the call "
            "as a webhook event and stores the message once, however often R-Chat "
            "sends it. A call with no message is a verify call, answered like a "
            "message. No login and no CSRF token: the signature token is the only "
            "authentication."
        )
        if self._for_one_credential():
            return "{}\n\n{}".format(
                description,
                _(
                    "This URL accepts only the signature token of the credential whose "
                    "webhook key it holds: for when two credentials could share a "
                    "signature token."
                ),
            )
        return "{}\n\n{}".format(
            description,
            _("This URL accepts the signature token of any registered credential."),
        )

    def get_override_parameters(self):
        parameters = [
            OpenApiParameter(
                webhooks.SIGNATURE_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=True,
                description=_("The signature token R-Chat issued at Register."),
            )
        ]
        if self._for_one_credential():
            parameters.append(
                OpenApiParameter(
                    "key",
                    str,
                    OpenApiParameter.PATH,
                    description=_("The credential's webhook key (shown in its admin page)."),
                )
            )
        return parameters

    def map_parsers(self):
        # The view reads its body itself (no DRF parser); the body is JSON.
        return [JSONRenderer.media_type]

    def get_request_serializer(self):
        return WebhookBodySerializer

    def get_response_serializers(self):
        return WEBHOOK_RESPONSES


class WebhookViewExtension(OpenApiViewExtension):
    """Gives the webhook view its schema (see WebhookSchema) for schema generation only."""

    target_class = webhooks.WebhookView

    def view_replacement(self):
        class DocumentedWebhookView(self.target_class):
            schema = WebhookSchema()

        return DocumentedWebhookView


# --- The views -------------------------------------------------------------------------


class SchemaView(SpectacularAPIView):
    # Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token".
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [CanSeeChatRooms]
    throttle_classes = []
    custom_settings = SCHEMA_SETTINGS

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # A refusal is JSON, whatever was asked for: the YAML renderer would show DRF's
        # error objects ("string:", "code:") rather than the reason.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


# A reader who is not signed in is sent to the site's login page (LOGIN_URL, with
# ?next=), as the inbox does; one signed in without the permission gets the site's 403
# page. DRF alone would answer a bare "403 Forbidden" to both.
@method_decorator(
    [login_required, permission_required(VIEW_PERMISSION, raise_exception=True)],
    name="dispatch",
)
class DocsView(SpectacularSwaggerSplitView):
    # The page and its script (?script=) are one view: both need a signed-in user who
    # may see chat rooms.
    authentication_classes = [SessionAuthentication]
    permission_classes = [CanSeeChatRooms]
    throttle_classes = []
    renderer_classes = [TemplateHTMLRenderer]
    template_name = "rchat/api/swagger_ui.html"
    url_name = "rchat:api:schema"
    title = "rchat API"

    @staticmethod
    def _swagger_ui_resource(filename):
        return _get_sidecar_url(f"swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon():
        return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")
