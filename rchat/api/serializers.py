"""The API's JSON shapes for chat rooms and messages."""

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ..models import ChatRoom, Message
from ..selectors import ROOM_STATUSES, ROOM_VIEWS
from .permissions import VIEW_PERMISSION


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk", read_only=True)
    username = serializers.CharField(source="get_username", read_only=True)


class ChatRoomSerializer(serializers.ModelSerializer):
    credential = serializers.CharField(
        source="credential_name", read_only=True, help_text=_("The credential's name.")
    )
    assignee = UserSerializer(read_only=True, allow_null=True)

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
            "unread_count",
            "last_message_at",
            "last_message_preview",
            "created_at",
        ]
        read_only_fields = fields


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
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


class ReplySerializer(serializers.Serializer):
    """A reply to post: ``type`` and ``data`` as ``services.message_send`` takes them.

    text: ``"data": "Hello"``; image / file: ``"data": "https://…"`` or
    ``{"url": "https://…"}``; sticker: ``{"package_id": …, "sticker_id": …}``;
    location: ``{"latitude": …, "longitude": …, "title"?, "address"?}``.
    """

    type = serializers.CharField(max_length=50, help_text=_("text, image, file, sticker, location"))
    data = serializers.JSONField(help_text=_("The content; its shape depends on type."))


class AssignSerializer(serializers.Serializer):
    """Who gets the room: a user id, null for nobody; left out, the caller."""

    assignee = serializers.PrimaryKeyRelatedField(
        queryset=get_user_model().objects.all(), allow_null=True, required=False
    )

    def validate_assignee(self, user):
        if user is not None and not (user.is_active and user.has_perm(VIEW_PERMISSION)):
            raise serializers.ValidationError(_("This user cannot see chat rooms."))
        return user


class RoomFilterSerializer(serializers.Serializer):
    """The room list's query parameters."""

    view = serializers.ChoiceField(choices=ROOM_VIEWS, default="all", required=False)
    status = serializers.ChoiceField(choices=ROOM_STATUSES, default="open", required=False)
    q = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    credential = serializers.CharField(max_length=100, required=False, allow_blank=True)
    chat_id = serializers.CharField(max_length=255, required=False, allow_blank=True)
