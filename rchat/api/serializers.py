"""The API's JSON shapes for chat rooms, messages, broadcasts and private notes."""

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from .. import search
from ..models import Broadcast, CannedResponse, ChatRoom, Label, Mention, Message, Note
from ..selectors import ROOM_STATUSES, ROOM_VIEWS, BroadcastProgress
from .permissions import VIEW_PERMISSION


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk", read_only=True)
    username = serializers.CharField(source="get_username", read_only=True)


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "name", "color", "description"]
        read_only_fields = fields


class CannedResponseSerializer(serializers.ModelSerializer):
    """A canned response as stored: ``{name}`` and ``{agent}`` left in its text."""

    data = serializers.JSONField(
        read_only=True, help_text=_("The message's content; its shape depends on type.")
    )
    shared = serializers.BooleanField(
        source="is_shared", read_only=True, help_text=_("Shared with everyone, else yours.")
    )

    class Meta:
        model = CannedResponse
        fields = ["id", "shortcut", "title", "type", "data", "shared", "created_at", "updated_at"]
        read_only_fields = fields


class RoomLabelSerializer(serializers.ModelSerializer):
    """A label as a chat room shows it."""

    class Meta:
        model = Label
        fields = ["id", "name", "color"]
        read_only_fields = fields


class RoomLabelsSerializer(serializers.Serializer):
    """A chat room's labels, by name (any case); they replace the ones it has."""

    labels = serializers.ListField(
        child=serializers.CharField(max_length=Label.NAME_MAX),
        allow_empty=True,
        max_length=100,
        help_text=_("Label names; an empty list takes every label off."),
    )


class ChatRoomSerializer(serializers.ModelSerializer):
    credential = serializers.CharField(
        source="credential_name", read_only=True, help_text=_("The credential's name.")
    )
    assignee = UserSerializer(read_only=True, allow_null=True)
    labels = RoomLabelSerializer(many=True, read_only=True)

    class Meta:
        model = ChatRoom
        fields = [
            "id",
            "credential",
            "chat_id",
            "channel",
            "display_name",
            "avatar_url",
            "status",
            "assignee",
            "handler",
            "handler_since",
            "handover_reason",
            "labels",
            "unread_count",
            "last_message_at",
            "last_message_preview",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "handler": {"help_text": _("Who answers the end user: the bot or people.")},
            "handover_reason": {
                "help_text": _('Why people have the room ("" while the bot has it).')
            },
        }


class MessageSerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True, allow_null=True)
    data = serializers.JSONField(read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "room",
            "direction",
            "type",
            "data",
            "text",
            "status",
            "external_id",
            "attempts",
            "last_error",
            "author",
            "sender",
            "rule",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "sender": {
                "help_text": _(
                    'Who wrote an outbound message: "person", "bot" or "rule" (an '
                    'auto-reply rule); "" for inbound messages and older replies.'
                )
            },
            "rule": {"help_text": _("The auto-reply rule that wrote it (its id), or null.")},
        }


#: Who may write a reply through the API: a person (the default), or a bot.
REPLY_SENDERS = (Message.Sender.PERSON.value, Message.Sender.BOT.value)


def _reply_sender():
    return serializers.ChoiceField(
        choices=REPLY_SENDERS,
        default=Message.Sender.PERSON.value,
        help_text=_(
            '"person" (default): a person\'s reply, which takes a room the bot handles '
            'over. "bot": a bot\'s reply, refused with 409 when people handle the room.'
        ),
    )


class ReplySerializer(serializers.Serializer):
    """A reply to post: ``type`` and ``data`` as ``services.message_send`` takes them.

    text: ``"data": "Hello"``; image / file: ``"data": "https://…"`` or
    ``{"url": "https://…"}``; sticker: ``{"package_id": …, "sticker_id": …}``;
    location: ``{"latitude": …, "longitude": …, "title"?, "address"?}``.
    """

    type = serializers.CharField(max_length=50, help_text=_("text, image, file, sticker, location"))
    data = serializers.JSONField(help_text=_("The content; its shape depends on type."))
    sender = _reply_sender()


# --- The reply's documented shapes ---------------------------------------------------
# ReplySerializer takes any JSON ``data`` and services.message_send checks it by type
# (one set of rules for the API, the inbox, admin and bots). These serializers only
# describe those rules in the OpenAPI schema, one shape per type, so a client generated
# from the schema sends what the API accepts.


_URL_STRING = {"type": "string", "format": "uri", "pattern": "^https?://"}


@extend_schema_field(
    {
        "oneOf": [
            _URL_STRING,
            {
                "type": "object",
                "properties": {"url": _URL_STRING},
                "required": ["url"],
                "additionalProperties": True,
            },
        ]
    }
)
class _MediaField(serializers.JSONField):
    """An http(s) URL, or an object with ``url`` and extra fields sent as given."""


@extend_schema_field({"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]})
class _StickerIdField(serializers.JSONField):
    """A string or a number, as R-Chat's sticker sets number them."""


@extend_schema_field({"type": "string", "pattern": r"\S"})
class _TextField(serializers.CharField):
    """Not blank: at least one character that is not white space."""


def _reply_type(name):
    return serializers.ChoiceField(choices=[name])


class _ReplyShapeSerializer(serializers.Serializer):
    sender = _reply_sender()


class TextReplySerializer(_ReplyShapeSerializer):
    type = _reply_type("text")
    data = _TextField(help_text=_('Not blank; at most RCHAT["TEXT_MAX_LENGTH"] characters (5000).'))


class ImageReplySerializer(_ReplyShapeSerializer):
    type = _reply_type("image")
    data = _MediaField()


class FileReplySerializer(_ReplyShapeSerializer):
    type = _reply_type("file")
    data = _MediaField()


class StickerDataSerializer(serializers.Serializer):
    package_id = _StickerIdField()
    sticker_id = _StickerIdField()


class StickerReplySerializer(_ReplyShapeSerializer):
    type = _reply_type("sticker")
    data = StickerDataSerializer()


class LocationDataSerializer(serializers.Serializer):
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)
    title = serializers.CharField(required=False)
    address = serializers.CharField(required=False)


class LocationReplySerializer(_ReplyShapeSerializer):
    type = _reply_type("location")
    data = LocationDataSerializer()


REPLY_SCHEMA = PolymorphicProxySerializer(
    component_name="Reply",
    serializers={
        "text": TextReplySerializer,
        "image": ImageReplySerializer,
        "file": FileReplySerializer,
        "sticker": StickerReplySerializer,
        "location": LocationReplySerializer,
    },
    resource_type_field_name="type",
)


class ErrorSerializer(serializers.Serializer):
    """Every 4xx of the API: a reason, and the wrong fields when there are some."""

    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.JSONField(), required=False)


class AssignSerializer(serializers.Serializer):
    """Who gets the room: a user id, null for nobody; left out, the caller."""

    assignee = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.all(), allow_null=True, required=False
    )

    def validate_assignee(self, user):
        if user is not None and not (user.is_active and user.has_perm(VIEW_PERMISSION)):
            raise serializers.ValidationError(_("This user cannot see chat rooms."))
        return user


class HandOverSerializer(serializers.Serializer):
    """Why the bot gives the room to people (shown to them in the inbox and admin)."""

    reason = serializers.CharField(
        max_length=300,
        allow_blank=True,
        default="",
        help_text=_("Optional, at most 300 characters."),
    )


class RoomFilterSerializer(serializers.Serializer):
    """The room list's query parameters."""

    view = serializers.ChoiceField(choices=ROOM_VIEWS, default="all", required=False)
    status = serializers.ChoiceField(choices=ROOM_STATUSES, default="open", required=False)
    q = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    credential = serializers.CharField(max_length=100, required=False, allow_blank=True)
    chat_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
    handler = serializers.ChoiceField(
        choices=ChatRoom.Handler.choices, required=False, allow_blank=True
    )
    label = serializers.CharField(max_length=Label.NAME_MAX, required=False, allow_blank=True)


# --- Broadcasts ----------------------------------------------------------------------


class BroadcastRoomFilterSerializer(RoomFilterSerializer):
    """Which chat rooms get a broadcast: the room list's filters (default: open rooms)."""


class BroadcastCreateSerializer(serializers.Serializer):
    """A broadcast to post: the message as a reply takes it, and its chat rooms, either
    by id (``rooms``) or by the room list's filters (``filter``), not both."""

    #: Most room ids one request may list; a filter reaches any number of rooms.
    ROOMS_MAX = 10000

    name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text=_("For lists.")
    )
    type = serializers.CharField(max_length=50, help_text=_("text, image, file, sticker, location"))
    data = serializers.JSONField(
        help_text=_("The content, as in a reply; its shape depends on type.")
    )
    rooms = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=ROOMS_MAX,
        help_text=_("Chat room ids."),
    )
    filter = BroadcastRoomFilterSerializer(
        required=False,
        help_text=_("The room list's filters: view, status, q, credential, chat_id."),
    )

    def validate(self, attrs):
        if ("rooms" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError(
                {"rooms": _("Give either rooms (a list of chat room ids) or filter, not both.")}
            )
        return attrs


class BroadcastProgressSerializer(serializers.Serializer):
    """A broadcast's messages counted by status (``held``: queued for a refused credential)."""

    queued = serializers.IntegerField()
    sending = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    held = serializers.IntegerField(allow_null=True)
    pending = serializers.IntegerField()
    skipped = serializers.IntegerField()
    percent = serializers.IntegerField(help_text=_("Messages finished, of those queued."))


class BroadcastSerializer(serializers.ModelSerializer):
    """A broadcast with its progress (``progress`` is read from its messages)."""

    author = UserSerializer(read_only=True, allow_null=True)
    data = serializers.JSONField(read_only=True)
    skipped_reasons = serializers.JSONField(
        read_only=True,
        help_text=_('Per reason: {"count": n, "room_ids": [the first 100]}.'),
    )
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Broadcast
        fields = [
            "id",
            "name",
            "type",
            "data",
            "text",
            "status",
            "author",
            "rooms_total",
            "skipped",
            "skipped_reasons",
            "created_at",
            "finished_at",
            "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(BroadcastProgressSerializer)
    def get_progress(self, broadcast):
        # A detail view hands its freshly read progress in; a list row carries counts.
        progress = getattr(broadcast, "progress", None) or BroadcastProgress.of(broadcast)
        return BroadcastProgressSerializer(progress).data


# --- Attachments -------------------------------------------------------------------------


class AttachmentUploadSerializer(serializers.Serializer):
    """An image or a file to send, as a multipart/form-data upload."""

    file = serializers.FileField(
        allow_empty_file=False,
        use_url=False,
        help_text=_(
            'At most RCHAT["ATTACHMENT_MAX_BYTES"] (10 MB), of a type in '
            'RCHAT["ATTACHMENT_TYPES"]; an image is one only if its content is a JPEG, '
            "PNG, GIF or WebP image."
        ),
    )


class AttachmentMessageDataSerializer(serializers.Serializer):
    url = serializers.URLField(help_text=_("Where R-Chat fetches the file; no login needed."))
    name = serializers.CharField()


class AttachmentMessageSerializer(serializers.Serializer):
    """The reply that sends the attachment: post it as is to the room's messages."""

    type = serializers.CharField(help_text=_('"image" or "file", as the attachment\'s kind.'))
    data = AttachmentMessageDataSerializer()


class AttachmentSerializer(serializers.Serializer):
    """A kept attachment, and the message that sends it."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=["image", "file"], read_only=True)
    name = serializers.CharField(read_only=True)
    content_type = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True, help_text=_("Bytes."))
    url = serializers.URLField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    message = AttachmentMessageSerializer(read_only=True)


# --- Search --------------------------------------------------------------------------


class MessageSearchFilterSerializer(serializers.Serializer):
    """The message search's query parameters."""

    q = serializers.CharField(
        max_length=200,
        help_text=_("Text to find in messages: any part of a message, any case, any script."),
    )
    view = serializers.ChoiceField(choices=ROOM_VIEWS, default="all", required=False)

    def validate_q(self, value):
        if not search.can_search_messages(value):
            raise serializers.ValidationError(
                _("Give at least %(count)d letters or digits in a row.") % {"count": search.MIN_RUN}
            )
        return value


class SearchRoomSerializer(serializers.ModelSerializer):
    """The chat room a found message belongs to."""

    class Meta:
        model = ChatRoom
        fields = ["id", "chat_id", "display_name", "status"]
        read_only_fields = fields


class MessageSearchResultSerializer(MessageSerializer):
    """A message that holds the text searched for, with its room and where it matched."""

    room = SearchRoomSerializer(read_only=True)
    matches = serializers.SerializerMethodField(
        help_text=_(
            "Where the text was found in ``text``: [start, end) character offsets, "
            "widened to whole characters (a Thai consonant with its marks)."
        )
    )

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "matches"]
        read_only_fields = fields

    @extend_schema_field(
        serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))
    )
    def get_matches(self, message):
        return [list(span) for span in search.match_spans(message.text, self.context["q"])]


# --- Private notes and mentions -----------------------------------------------------------


class NoteSerializer(serializers.ModelSerializer):
    """A private note: staff only, never sent to R-Chat."""

    author = UserSerializer(read_only=True, allow_null=True)
    mentioned = serializers.SerializerMethodField(
        help_text=_("The colleagues the note mentions (@username).")
    )

    class Meta:
        model = Note
        fields = ["id", "room", "author", "body", "mentioned", "created_at"]
        read_only_fields = fields

    @extend_schema_field(UserSerializer(many=True))
    def get_mentioned(self, note):
        # From the prefetched mentions (selectors.note_list): no query per note.
        return UserSerializer([mention.user for mention in note.mentions.all()], many=True).data


class NoteCreateSerializer(serializers.Serializer):
    """A note to add: its text, with ``@username`` to mention a colleague."""

    body = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=_(
            "Not blank; at most 5000 characters (Note.BODY_MAX). @username mentions a colleague."
        ),
    )


class MentionNoteSerializer(serializers.ModelSerializer):
    author = UserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Note
        fields = ["id", "room", "author", "body", "created_at"]
        read_only_fields = fields


class MentionRoomSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChatRoom
        fields = ["id", "chat_id", "display_name"]
        read_only_fields = fields


class MentionSerializer(serializers.ModelSerializer):
    """A note that mentions the caller, with its chat room; ``seen_at`` null until the
    caller opens the room in the inbox or admin."""

    note = MentionNoteSerializer(read_only=True)
    room = MentionRoomSerializer(source="note.room", read_only=True)

    class Meta:
        model = Mention
        fields = ["id", "note", "room", "seen_at"]
        read_only_fields = fields


class MentionFilterSerializer(serializers.Serializer):
    """The mention list's query parameters."""

    unseen = serializers.BooleanField(
        required=False, default=False, help_text=_("1: only the mentions not seen yet.")
    )
