"""factory_boy factories for rchat's models."""

import datetime
import secrets

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from rchat import crypto
from rchat.models import (
    AutoReply,
    BusinessHours,
    ChatRoom,
    Credential,
    ExternalBot,
    Holiday,
    Message,
    Shift,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"agent{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-for-tests")
    is_staff = True


def user_with(*codenames, **fields):
    """A user holding exactly these rchat permissions (default: see and reply)."""
    from django.contrib.auth.models import Permission

    user = UserFactory(**fields)
    codenames = codenames or ("view_chatroom", "reply_chatroom")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="rchat", codename__in=codenames)
    )
    return user


class CredentialFactory(factory.django.DjangoModelFactory):
    """An active credential with a signature token; ``signature_token`` is the plain value."""

    class Meta:
        model = Credential

    name = factory.Sequence(lambda n: f"shop-{n}")
    base_url = "http://127.0.0.1:9"
    token = factory.LazyFunction(lambda: "cdt_" + secrets.token_urlsafe(24))
    signature_token = factory.LazyFunction(lambda: "sig_" + secrets.token_urlsafe(24))
    signature_digest = factory.LazyAttribute(lambda o: crypto.digest(o.signature_token))
    status = Credential.Status.ACTIVE
    registered_at = factory.LazyFunction(timezone.now)


class ChatRoomFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChatRoom

    credential = factory.SubFactory(CredentialFactory)
    chat_id = factory.Sequence(lambda n: f"chat-{n}")
    channel = ChatRoom.Channel.WEB
    display_name = factory.Faker("name")
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    room = factory.SubFactory(ChatRoomFactory)
    direction = Message.Direction.IN
    type = "text"
    data = factory.Sequence(lambda n: f"message {n}")
    text = factory.LazyAttribute(lambda o: o.data if isinstance(o.data, str) else "")
    status = factory.LazyAttribute(
        lambda o: Message.Status.RECEIVED if o.direction == "in" else Message.Status.QUEUED
    )


# --- The chatbot back-office -------------------------------------------------------------


class AutoReplyFactory(factory.django.DjangoModelFactory):
    """A keyword rule for every credential unless told; ``reply_data`` a text."""

    class Meta:
        model = AutoReply

    name = factory.Sequence(lambda n: f"rule {n}")
    kind = AutoReply.Kind.KEYWORD
    match = "ราคา"
    reply_type = "text"
    reply_data = factory.Sequence(lambda n: f"reply {n}")


class BusinessHoursFactory(factory.django.DjangoModelFactory):
    """Hours in Asia/Bangkok with no shifts (closed) unless ShiftFactory adds some."""

    class Meta:
        model = BusinessHours

    credential = factory.SubFactory(CredentialFactory)
    time_zone = "Asia/Bangkok"
    reply_type = "text"
    reply_data = "We are closed now; we answer from 9:00."


class ShiftFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shift

    hours = factory.SubFactory(BusinessHoursFactory)
    weekday = Shift.Weekday.MONDAY
    start = datetime.time(9)
    end = datetime.time(17)


class HolidayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Holiday

    hours = factory.SubFactory(BusinessHoursFactory)
    date = datetime.date(2025, 4, 14)
    name = "Songkran"


class ExternalBotFactory(factory.django.DjangoModelFactory):
    """An active external bot; ``secret`` is the plain value."""

    class Meta:
        model = ExternalBot

    credential = factory.SubFactory(CredentialFactory)
    url = "http://127.0.0.1:9/bot"
    secret = factory.LazyFunction(lambda: "bot_" + secrets.token_urlsafe(24))
