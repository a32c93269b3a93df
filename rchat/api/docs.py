"""The API's OpenAPI schema and its documentation page.

The page is Swagger UI served from drf-spectacular-sidecar's static files, so it
loads nothing from a CDN (add ``drf_spectacular_sidecar`` to INSTALLED_APPS). Its
start-up script is a second request to the same URL (``?script=``), not an inline
script, and its styles are files: a strict Content-Security-Policy (script-src and
style-src 'self') allows the page.
"""

from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularSwaggerSplitView,
    _get_sidecar_url,
)
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.renderers import TemplateHTMLRenderer

from .permissions import CanSeeChatRooms

SCHEMA_SETTINGS = {
    "TITLE": "rchat API",
    "DESCRIPTION": (
        "Read R-Chat conversations and answer them: chat rooms, their messages, "
        "replies, assign, close and reopen, and who handles a room: take over, hand "
        "over to people, return to the bot. Authenticate with a session or with "
        "'Authorization: Token <key>'."
    ),
    "VERSION": "1",
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
    },
}


def only_rchat_api(endpoints, **kwargs):
    """Keep rchat's API in the schema, whatever else the host site serves with DRF."""
    return [
        endpoint
        for endpoint in endpoints
        if getattr(endpoint[3], "cls", None) is not None
        and endpoint[3].cls.__module__ == "rchat.api.views"
    ]


class SchemaView(SpectacularAPIView):
    # Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token".
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [CanSeeChatRooms]
    throttle_classes = []
    custom_settings = SCHEMA_SETTINGS


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
