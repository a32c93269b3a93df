"""The REST API: chat rooms, their messages, replies, the room's actions, broadcasts,
private notes and mentions.

Every view sets its authentication, permission, throttle, pagination, renderer and
schema classes itself, so a host site's REST_FRAMEWORK defaults change nothing here.
Views parse and answer; reads go through ``rchat.selectors``, changes through
``rchat.services``.
"""

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.log import log_response
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from .. import selectors, services
from ..exceptions import InvalidMessage
from ..models import Broadcast, ChatRoom, Handover, Message
from . import docs
from .docs import RChatSchema
from .permissions import CanSeeChatRooms
from .serializers import (
    REPLY_SCHEMA,
    AssignSerializer,
    AttachmentSerializer,
    AttachmentUploadSerializer,
    BroadcastCreateSerializer,
    BroadcastSerializer,
    CannedResponseSerializer,
    ChatRoomSerializer,
    ErrorSerializer,
    HandOverSerializer,
    LabelSerializer,
    MentionFilterSerializer,
    MentionSerializer,
    MessageSearchFilterSerializer,
    MessageSearchResultSerializer,
    MessageSerializer,
    NoteCreateSerializer,
    NoteSerializer,
    ReplySerializer,
    RoomFilterSerializer,
    RoomLabelsSerializer,
)
from .throttling import RChatUserThrottle, RChatWriteThrottle


def documented(**kwargs):
    """``extend_schema`` for a view's method, built on drf-spectacular's AutoSchema.

    A method has no schema of its own, so drf-spectacular would build its schema on the
    site's ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``, which is DRF's own in most sites,
    and the schema page would fail. The attribute is drf-spectacular's documented way
    to name the base explicitly: rchat's, which tags the operation with its view's
    ``schema_tag``.
    """

    def decorator(method):
        method.schema = RChatSchema
        return extend_schema(**kwargs)(method)

    return decorator


#: Seconds a client is asked to wait when the database cannot be reached.
RETRY_AFTER_SECONDS = 5


def exception_handler(exc, context):
    """DRF's handler, made to answer every error in JSON.

    Every 400 is shaped ``{"detail": ..., "errors": {field: ...}}``. What DRF leaves to
    Django, which would answer with an HTML page, is answered here: a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413), another refused request (400), the database
    out of reach (503, with Retry-After) and a bug (500). The last two are logged once,
    with the traceback, through Django's ``django.request`` logger, as Django logs
    the errors it handles itself.
    """
    if isinstance(exc, InvalidMessage):
        return Response({"detail": str(exc), "errors": exc.errors}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": _("The request body is too large."), "errors": {}}, status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": _("The request was refused."), "errors": {}}, status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return _unexpected_error(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        errors = response.data
        if not isinstance(errors, dict):
            errors = {"non_field_errors": errors}
        response.data = {"detail": _("Invalid input."), "errors": errors}
    elif response is not None and response.status_code == 400 and isinstance(response.data, dict):
        # Malformed JSON and the like: the same shape, with no field to blame.
        response.data.setdefault("errors", {})
    return response


def _unexpected_error(exc, context):
    if isinstance(exc, OperationalError | InterfaceError):
        response = Response(
            {"detail": _("The service is unavailable just now; try again shortly.")},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    else:
        response = Response({"detail": _("Something went wrong on the server.")}, status=500)
    request = context["request"]
    log_response(
        "%s: %s",
        response.status_text,
        request.path,
        response=response,
        request=request._request,
        exception=exc,
    )
    return response


class StrictJSONParser(JSONParser):
    """DRF's JSON parser, with nesting too deep for Python's parser a 400, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(_("JSON parse error - arrays and objects nested too deep.")) from exc


def not_found(request, *args, **kwargs):
    """Any other URL under the API: a JSON 404 like the API's own."""
    return JsonResponse({"detail": _("No such API endpoint.")}, status=404)


class RoomPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class MessageCursorPagination(CursorPagination):
    """Newest first; follow ``next`` for older messages. Ordered on the thread index."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class RChatAPIView(APIView):
    # Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token".
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [CanSeeChatRooms]
    throttle_classes = [RChatUserThrottle, RChatWriteThrottle]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    parser_classes = [StrictJSONParser, FormParser, MultiPartParser]
    pagination_class = None
    schema = RChatSchema()
    #: The one tag of the view's operations in the schema (rchat.api.docs.TAGS).
    schema_tag = None

    def get_exception_handler(self):
        return exception_handler

    def get_room(self):
        try:
            return selectors.room_get(pk=self.kwargs["pk"])
        except ChatRoom.DoesNotExist:
            raise Http404(_("No such chat room.")) from None


ROOM_FILTERS = [
    OpenApiParameter(
        "view",
        enum=selectors.ROOM_VIEWS,
        description="mine, unassigned (people handle it, nobody has it yet), bot or all",
    ),
    OpenApiParameter("status", enum=selectors.ROOM_STATUSES, description="default: open"),
    OpenApiParameter("q", description="Search in chat id, end user's name, message text"),
    OpenApiParameter("credential", description="Only this credential's rooms (its name)"),
    OpenApiParameter("chat_id", description="R-Chat's chat id, exactly"),
    OpenApiParameter(
        "handler", enum=selectors.ROOM_HANDLERS, description="Only rooms the bot or people handle"
    ),
    OpenApiParameter(
        "label", description="Only rooms with this label (its name, any case, or its id)"
    ),
]


def rooms_filtered(user, values):
    """The rooms a room list's validated filters (RoomFilterSerializer) select."""
    rooms = selectors.room_list(
        user=user,
        view=values["view"],
        status=values["status"],
        q=values["q"],
        credential_name=values.get("credential", ""),
        chat_id=values.get("chat_id", ""),
        handler=values.get("handler", ""),
        label=values.get("label", ""),
    )
    return rooms


@extend_schema(
    parameters=ROOM_FILTERS,
    responses={200: ChatRoomSerializer(many=True), 400: ErrorSerializer},
    description="Chat rooms, most recent activity first (the inbox's filters; a bad one: 400).",
)
class RoomListView(RChatAPIView, generics.ListAPIView):
    """Chat rooms, most recent activity first (filters as in the inbox)."""

    schema_tag = docs.ROOMS
    serializer_class = ChatRoomSerializer
    pagination_class = RoomPagination

    def get_queryset(self):
        filters = RoomFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return rooms_filtered(self.request.user, filters.validated_data)


class RoomDetailView(RChatAPIView, generics.RetrieveAPIView):
    """One chat room."""

    schema_tag = docs.ROOMS
    serializer_class = ChatRoomSerializer

    def get_object(self):
        room = self.get_room()
        self.check_object_permissions(self.request, room)
        return room


class RoomMessagesView(RChatAPIView, generics.ListAPIView):
    """A room's messages, newest first (GET); post a reply (POST)."""

    schema_tag = docs.MESSAGES
    serializer_class = MessageSerializer
    pagination_class = MessageCursorPagination

    def get_queryset(self):
        return selectors.room_messages(room=self.get_room())

    @documented(
        request=REPLY_SCHEMA,
        responses={201: MessageSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
        description=(
            "Queue a reply; a worker sends it to R-Chat. Bad input or a closed room: 400 "
            'with {"detail": ..., "errors": {field: reason}} and nothing queued. '
            '"sender": "person" (the default) takes a room the bot handles over; '
            '"sender": "bot" is a bot\'s reply, and when people handle the room it is '
            "refused with 409 and errors.sender: the bot should stop answering there."
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        reply = ReplySerializer(data=request.data)
        reply.is_valid(raise_exception=True)
        sender = reply.validated_data["sender"]
        try:
            message = services.message_send(
                room=room,
                type=reply.validated_data["type"],
                data=reply.validated_data["data"],
                author=request.user,
                sender=sender,
            )
        except InvalidMessage as exc:
            if sender == Message.Sender.BOT and "sender" in exc.errors:
                # Not a bad request: the same one succeeds while the bot has the room.
                # It conflicts with the room's state (people took it), which a bot
                # tells from every other refusal by the status alone.
                return Response({"detail": str(exc), "errors": exc.errors}, status=409)
            raise
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class _RoomActionView(RChatAPIView):
    schema_tag = docs.ROOMS
    serializer_class = ChatRoomSerializer

    def answer(self, room):
        # Re-read so the answer shows the assignee and credential name as stored.
        return Response(ChatRoomSerializer(selectors.room_get(pk=room.pk)).data)


class RoomAssignView(_RoomActionView):
    @documented(
        request=AssignSerializer,
        responses={200: ChatRoomSerializer},
        description='Assign the room: {"assignee": user id}, null for nobody, omitted for you.',
    )
    def post(self, request, pk):
        room = self.get_room()
        body = AssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = body.validated_data.get("assignee", request.user)
        services.room_assign(room=room, user=user)
        return self.answer(room)


class RoomCloseView(_RoomActionView):
    @documented(request=None, responses={200: ChatRoomSerializer})
    def post(self, request, pk):
        room = self.get_room()
        services.room_close(room=room)
        return self.answer(room)


class RoomReopenView(_RoomActionView):
    @documented(request=None, responses={200: ChatRoomSerializer})
    def post(self, request, pk):
        room = self.get_room()
        services.room_reopen(room=room)
        return self.answer(room)


class RoomReadView(_RoomActionView):
    @documented(request=None, responses={200: ChatRoomSerializer})
    def post(self, request, pk):
        """Mark the room read: its unread count goes back to zero."""
        room = self.get_room()
        services.room_mark_read(room=room)
        return self.answer(room)


class RoomTakeOverView(_RoomActionView):
    @documented(
        request=None,
        responses={200: ChatRoomSerializer, 400: ErrorSerializer},
        description=(
            "You take the room: people handle it from now on (the bot's queued messages "
            "are cancelled), and it is assigned to you unless someone has it. A closed "
            "room: 400."
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        services.room_take_over(room=room, user=request.user)
        return self.answer(room)


class RoomReturnToBotView(_RoomActionView):
    @documented(
        request=None,
        responses={200: ChatRoomSerializer, 400: ErrorSerializer},
        description="The bot answers the room again, from the end user's next message on.",
    )
    def post(self, request, pk):
        room = self.get_room()
        services.room_return_to_bot(room=room, by=request.user)
        return self.answer(room)


class RoomHandOverView(_RoomActionView):
    @documented(
        request=HandOverSerializer,
        responses={200: ChatRoomSerializer, 400: ErrorSerializer},
        description=(
            'A bot gives the room to people: {"reason": "..."} (optional, at most 300 '
            "characters) is shown to them. What the bot queued before is still sent; the "
            "room stays unassigned. A room people handle already is left as it is."
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        body = HandOverSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.room_hand_over(
            room=room,
            reason=Handover.Reason.BOT,
            detail=body.validated_data["reason"],
            by=request.user,
        )
        return self.answer(room)


class RoomLabelsView(_RoomActionView):
    schema_tag = docs.LABELS

    @documented(
        request=RoomLabelsSerializer,
        responses={200: ChatRoomSerializer, 400: ErrorSerializer},
        description=(
            'Replace the room\'s labels: {"labels": ["VIP", "refund"]} (names, any case; '
            "[] for none). A name no label has: 400 with errors.labels listing them, and "
            "the room's labels unchanged. Labels are created in admin."
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        body = RoomLabelsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        labels, unknown = selectors.labels_named(body.validated_data["labels"])
        if unknown:
            return Response(
                {
                    "detail": _("No label has these names: %(names)s.")
                    % {"names": ", ".join(unknown)},
                    "errors": {"labels": unknown},
                },
                status=400,
            )
        services.room_labels_set(room=room, labels=labels)
        return self.answer(room)


@extend_schema(responses={200: CannedResponseSerializer(many=True)})
class CannedListView(RChatAPIView, generics.ListAPIView):
    """The caller's canned responses: the shared ones and their own, by shortcut.

    Placeholders stay as written ({name}: the end user's name, {agent}: the agent's),
    for the caller to fill in; in the inbox they are filled in for the open room.
    """

    schema_tag = docs.LABELS
    serializer_class = CannedResponseSerializer

    def get_queryset(self):
        return selectors.canned_for(self.request.user)


@extend_schema(responses={200: LabelSerializer(many=True)})
class LabelListView(RChatAPIView, generics.ListAPIView):
    """Every label, by name: what a room's labels may be set to."""

    schema_tag = docs.LABELS
    serializer_class = LabelSerializer

    def get_queryset(self):
        return selectors.label_list()


class MessageRetryView(RChatAPIView):
    schema_tag = docs.MESSAGES
    serializer_class = MessageSerializer

    @documented(request=None, responses={200: MessageSerializer, 400: ErrorSerializer})
    def post(self, request, pk, message_pk):
        """Send a failed reply again (400 if it has not failed or the room is closed)."""
        room = self.get_room()
        message = get_object_or_404(
            Message.objects.select_related("author"),
            pk=message_pk,
            room=room,
            direction=Message.Direction.OUT,
        )
        message = services.message_retry(message=message)
        return Response(MessageSerializer(message).data)


# --- Broadcasts ----------------------------------------------------------------------


def broadcast_answer(pk):
    """A broadcast as the API shows it, read after settling it (``done`` once nothing of
    it is pending), with its progress read fresh; 404 for an unknown id."""
    services.broadcasts_settle(broadcasts=[pk])
    try:
        broadcast = selectors.broadcast_get(pk=pk)
    except Broadcast.DoesNotExist:
        raise Http404(_("No such broadcast.")) from None
    broadcast.progress = selectors.broadcast_progress(broadcast)
    return BroadcastSerializer(broadcast).data


class BroadcastListView(RChatAPIView, generics.ListAPIView):
    """Broadcasts, newest first, with their progress (GET); send one (POST)."""

    schema_tag = docs.BROADCASTS
    serializer_class = BroadcastSerializer
    pagination_class = RoomPagination

    def get_queryset(self):
        services.broadcasts_settle()
        return selectors.broadcast_list()

    @documented(
        request=BroadcastCreateSerializer,
        responses={201: BroadcastSerializer, 400: ErrorSerializer},
        description=(
            "Queue one message to each open chat room given by id (rooms) or by the room "
            "list's filters (filter); workers send them within each credential's rate "
            "limit. Closed and unknown rooms are skipped, counted in skipped_reasons. Bad "
            'input, or no room at all: 400 with {"detail": ..., "errors": {field: reason}} '
            "and nothing queued."
        ),
    )
    def post(self, request):
        body = BroadcastCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        if "rooms" in values:
            rooms = values["rooms"]
        else:
            rooms = rooms_filtered(request.user, values["filter"])
        broadcast = services.broadcast_create(
            rooms=rooms,
            type=values["type"],
            data=values["data"],
            author=request.user,
            name=values["name"],
        )
        return Response(broadcast_answer(broadcast.pk), status=status.HTTP_201_CREATED)


class BroadcastDetailView(RChatAPIView):
    schema_tag = docs.BROADCASTS
    serializer_class = BroadcastSerializer

    @documented(responses={200: BroadcastSerializer})
    def get(self, request, pk):
        """One broadcast and how far it has got."""
        return Response(broadcast_answer(pk))


class BroadcastCancelView(RChatAPIView):
    schema_tag = docs.BROADCASTS
    serializer_class = BroadcastSerializer

    @documented(request=None, responses={200: BroadcastSerializer, 400: ErrorSerializer})
    def post(self, request, pk):
        """Cancel what has not been sent yet (400 if the broadcast has finished)."""
        try:
            broadcast = selectors.broadcast_get(pk=pk)
        except Broadcast.DoesNotExist:
            raise Http404(_("No such broadcast.")) from None
        services.broadcast_cancel(broadcast=broadcast)
        return Response(broadcast_answer(pk))


# --- Attachments -------------------------------------------------------------------------


class RoomAttachmentsView(RChatAPIView):
    """Upload an image or a file to send to a room (multipart/form-data, field "file")."""

    schema_tag = docs.MESSAGES
    parser_classes = [MultiPartParser]
    serializer_class = AttachmentSerializer

    @documented(
        request={"multipart/form-data": AttachmentUploadSerializer},
        responses={201: AttachmentSerializer, 400: ErrorSerializer},
        description=(
            "Keep an image or a file for this room and answer its URL, which R-Chat can "
            'fetch without signing in. Then send it: post the answer\'s "message" to '
            "the room's messages. A file too large, of a type not accepted, or whose "
            "content is not what its name says: 400 with errors.file, and nothing kept."
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        upload = AttachmentUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        attachment = services.attachment_store(
            room=room, uploaded_by=request.user, upload=upload.validated_data["file"]
        )
        type, data = services.attachment_message(attachment=attachment, request=request)
        body = {
            "id": attachment.pk,
            "kind": attachment.kind,
            "name": attachment.name,
            "content_type": attachment.content_type,
            "size": attachment.size,
            "url": data["url"],
            "created_at": attachment.created_at,
            "message": {"type": type, "data": data},
        }
        return Response(AttachmentSerializer(body).data, status=status.HTTP_201_CREATED)


# --- Search --------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("q", required=True, description="Text to find (3+ letters or digits)"),
        OpenApiParameter(
            "view", enum=selectors.ROOM_VIEWS, description="Only these rooms' messages"
        ),
    ],
    responses={200: MessageSearchResultSerializer(many=True), 400: ErrorSerializer},
    description=(
        "Messages whose text holds q (a substring: Thai needs no spaces; any case; % and _ "
        "are literal), newest first, each with its room and the offsets of the matches. "
        "Follow next for older ones. A q without 3 letters or digits in a row: 400."
    ),
)
class MessageSearchView(RChatAPIView, generics.ListAPIView):
    """Messages holding a text, newest first."""

    schema_tag = docs.MESSAGES
    serializer_class = MessageSearchResultSerializer
    pagination_class = MessageCursorPagination

    def get_queryset(self):
        filters = MessageSearchFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        self.q = filters.validated_data["q"]
        return selectors.message_search(
            user=self.request.user, q=self.q, view=filters.validated_data["view"]
        )

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "q": getattr(self, "q", "")}


# --- Private notes and mentions -------------------------------------------------------------


class NoteCursorPagination(MessageCursorPagination):
    """Newest first; follow ``next`` for older notes (the rchat_note_room index)."""


class MentionCursorPagination(MessageCursorPagination):
    """Newest first; follow ``next`` for older mentions (the rchat_mention_unseen index)."""


class RoomNotesView(RChatAPIView, generics.ListAPIView):
    """A room's private notes, newest first (GET); add one (POST). Never sent to R-Chat."""

    schema_tag = docs.NOTES
    serializer_class = NoteSerializer
    pagination_class = NoteCursorPagination

    def get_queryset(self):
        return selectors.note_list(room=self.get_room())

    @documented(
        request=NoteCreateSerializer,
        responses={201: NoteSerializer, 400: ErrorSerializer},
        description=(
            'Add a private note: {"body": "..."}, staff only, never sent to R-Chat. '
            "@username mentions an active colleague who may see chat rooms (not you; "
            'unknown names stay text). Empty or too long: 400 with {"detail": ..., '
            '"errors": {"body": [reason]}} and nothing saved.'
        ),
    )
    def post(self, request, pk):
        room = self.get_room()
        body = NoteCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            note = services.note_add(
                room=room, author=request.user, body=body.validated_data["body"]
            )
        except DjangoValidationError as exc:
            reasons = exc.messages
            return Response({"detail": reasons[0], "errors": {"body": reasons}}, status=400)
        note = selectors.note_list(room=room).get(pk=note.pk)
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)


@extend_schema(
    parameters=[
        OpenApiParameter("unseen", bool, description="1: only the mentions not seen yet"),
    ],
    responses={200: MentionSerializer(many=True), 400: ErrorSerializer},
)
class MentionListView(RChatAPIView, generics.ListAPIView):
    """Notes that mention the caller, newest first, each with its chat room; a mention
    is seen once the caller opens the room in the inbox or admin."""

    schema_tag = docs.NOTES
    serializer_class = MentionSerializer
    pagination_class = MentionCursorPagination

    def get_queryset(self):
        filters = MentionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.mention_list(
            user=self.request.user, unseen=filters.validated_data["unseen"]
        )
