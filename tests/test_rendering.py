"""Any JSON R-Chat may send as a message's data shows on every page that shows messages.

One message whose data is an array, a number, a boolean or null used to break a
conversation page (500) until it dropped out of the newest fifty.
"""

import json

import pytest
from django.urls import reverse

from rchat.models import ChatRoom, Message
from tests.factories import CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db

ODD_DATA = [
    ["an", "array", 1],
    [],
    42,
    -3.5,
    True,
    False,
    None,
    "",
    {},
    {"url": 5, "name": ["x"], "latitude": "north", "longitude": True},
    {"latitude": 1e308, "longitude": -1e308},
    {"package_id": {"nested": 1}, "sticker_id": None},
    "javascript:alert(1)",
    {"url": "javascript:alert(1)"},
]
TYPES = ["text", "image", "file", "sticker", "location", "something-new"]


@pytest.fixture
def room_with_odd_messages(client):
    """Every odd data under every type, received through the webhook as R-Chat sends it."""
    credential = CredentialFactory()
    for type in TYPES:
        for data in ODD_DATA:
            body = {"chat_id": "odd", "message": {"type": type, "data": data}}
            response = client.post(
                reverse("rchat:webhook"),
                data=json.dumps(body),
                content_type="application/json",
                HTTP_X_CHATDAY_SIGNATURE_TOKEN=credential.signature_token,
            )
            assert response.status_code == 200, (type, data, response.content)
    room = ChatRoom.objects.get(chat_id="odd")
    assert room.messages.count() == len(TYPES) * len(ODD_DATA)
    return room


def test_every_page_that_shows_messages_shows_any_json_data(client, room_with_odd_messages):
    room = room_with_odd_messages
    client.force_login(UserFactory(is_superuser=True))
    # More than a conversation page shows at once: page back through the older ones too.
    oldest = room.messages.order_by("id").first()
    pages = [
        reverse("rchat:inbox"),
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}),
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}) + f"?before={oldest.pk + 40}",
        reverse("rchat:inbox-thread", kwargs={"pk": room.pk}),
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        reverse("admin:rchat_chatroom_changelist"),
        reverse("admin:rchat_message_changelist"),
        reverse("rchat:api:room-messages", kwargs={"pk": room.pk}) + "?page_size=200",
        reverse("rchat:api:room-list"),
    ]
    pages += [reverse("admin:rchat_message_change", args=[m.pk]) for m in room.messages.all()]

    answers = {page: client.get(page).status_code for page in pages}

    assert {page: status for page, status in answers.items() if status != 200} == {}


def test_unsafe_or_odd_urls_never_become_links(client, room_with_odd_messages):
    client.force_login(UserFactory(is_superuser=True))
    room = room_with_odd_messages
    for page in (
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}),
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
    ):
        html = client.get(page).content.decode()
        assert 'href="javascript:' not in html and 'src="javascript:' not in html


def test_the_api_gives_each_messages_data_back_as_it_came(client, room_with_odd_messages):
    client.force_login(UserFactory(is_superuser=True))
    room = room_with_odd_messages
    url = reverse("rchat:api:room-messages", kwargs={"pk": room.pk}) + "?page_size=200"

    listed = client.get(url).json()["results"]

    stored = {m.pk: m.data for m in Message.objects.filter(room=room)}
    assert {row["id"]: row["data"] for row in listed} == stored
