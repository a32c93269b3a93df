"""Every JSON type in every field, odd query strings and odd arguments, at every entry point.

The webhook has its own property tests (test_webhook_property.py); these cover the
API, the inbox, admin and the commands. Nothing may answer 5xx or escape as an
exception: the API answers 4xx in JSON, pages answer 4xx or show a form error, and a
command fails with a one-line reason.
"""

import itertools
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from rchat.models import Message
from tests.factories import ChatRoomFactory, MessageFactory, UserFactory

pytestmark = pytest.mark.django_db

VALUES = [None, True, 0, -1, 1e308, 10**30, "", "x", "\x00", "\ud800", [], [1], {}, {"a": 1}]
ODD_QUERIES = [
    "page=abc",
    "page=-1",
    "page=99999999999999999999",
    "page_size=abc",
    "page_size=0",
    "status=zzz",
    "view=zz",
    "q=%00",
    "q=" + "a" * 5000,
    "credential=%00",
    "chat_id=%00",
    "cursor=zzz",
    "cursor=%00",
    "before=abc",
    "before=99999999999999999999999",
    "since=99999999999999999999999",
    "v=%00",
]


@pytest.fixture
def boss():
    return UserFactory(is_superuser=True)


@pytest.fixture
def room():
    room = ChatRoomFactory()
    MessageFactory(room=room, direction="out", status="failed")
    return room


def test_the_api_answers_any_json_in_any_field_with_a_json_4xx_or_success(boss, room):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=boss).key}")
    bodies = [
        (f"/rchat/api/rooms/{room.pk}/messages/", {"type": kind, "data": data})
        for kind, data in itertools.product([*VALUES, "text", "image", "location"], VALUES)
    ]
    bodies += [(f"/rchat/api/rooms/{room.pk}/assign/", {"user": value}) for value in VALUES]
    bodies += [(f"/rchat/api/rooms/{room.pk}/assign/", {"username": value}) for value in VALUES]

    wrong = []
    for path, body in bodies:
        response = api.post(path, json.dumps(body), content_type="application/json")
        if response.status_code >= 500 or "json" not in response["Content-Type"]:
            wrong.append((path, body, response.status_code))

    assert wrong == []
    # What was queued is only what the rules allow: text with a non-empty string.
    queued = Message.objects.filter(room=room, status="queued")
    assert all(m.type == "text" and isinstance(m.data, str) and m.data for m in queued)


def test_odd_query_strings_never_break_a_page(client, boss, room):
    client.force_login(boss)
    api = APIClient()
    api.force_authenticate(boss)
    pages = [
        "/rchat/api/rooms/",
        f"/rchat/api/rooms/{room.pk}/messages/",
        "/rchat/inbox/",
        f"/rchat/inbox/{room.pk}/",
        f"/rchat/inbox/{room.pk}/thread/",
        "/rchat/inbox/rooms/",
        "/admin/rchat/chatroom/",
        "/admin/rchat/message/",
        "/admin/rchat/webhookevent/",
        "/admin/rchat/credential/",
    ]

    answers = {
        f"{page}?{query}": (api if "/api/" in page else client).get(f"{page}?{query}").status_code
        for page in pages
        for query in ODD_QUERIES
    }

    assert {url: status for url, status in answers.items() if status >= 500} == {}


@pytest.mark.parametrize(
    "reply",
    [
        {"type": "text", "text": "\x00"},
        {"type": "zzz"},
        {"type": "image", "url": "javascript:alert(1)"},
        {"type": "sticker"},
        {"type": "text", "text": "x" * 100_000},
    ],
)
def test_a_bad_reply_from_the_inbox_or_admin_is_a_form_error_and_queues_nothing(
    client, boss, room, reply
):
    client.force_login(boss)
    before = Message.objects.count()

    inbox = client.post(f"/rchat/inbox/{room.pk}/", reply)
    admin = client.post(
        f"/admin/rchat/chatroom/{room.pk}/change/",
        {"_reply": "1", **{f"reply-{key}": value for key, value in reply.items()}},
    )

    assert inbox.status_code == 200 and 'role="alert"' in inbox.content.decode()
    assert admin.status_code == 200 and "errorlist" in admin.content.decode()
    assert Message.objects.count() == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--chat-id", "\x00", "--data", "x"), "NUL"),
        (("--chat-id", "x" * 300, "--data", "x"), "at most 255"),
        (("--chat-id", "c", "--data", "\x00"), "NUL"),
        (("--chat-id", "c", "--type", "location", "--data", "[" * 3000), "must be JSON"),
        (("--chat-id", "c", "--type", "location", "--data", "[" * 300 + "]" * 300), "deep"),
        (("--chat-id", "c", "--type", "location", "--data", '{"latitude": 1e400}'), "range"),
    ],
)
def test_rchat_send_refuses_hostile_arguments_with_one_line(room, args, says):
    with pytest.raises(CommandError) as refused:
        call_command("rchat_send", *args, "--credential", room.credential.name, stdout=StringIO())

    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert not Message.objects.filter(status="queued").exists()
