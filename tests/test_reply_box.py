"""One reply box everywhere: admin's chat room page and the inbox send the same
messages through one form, refuse the same replies for the same reasons, and the
inbox can be left with its Sign out button."""

import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape

from rchat import payloads
from rchat.exceptions import InvalidMessage
from rchat.models import ChatRoom, Message
from tests.factories import ChatRoomFactory, UserFactory, user_with

pytestmark = pytest.mark.django_db

RCHAT = Path(__file__).resolve().parent.parent / "rchat"


@pytest.fixture
def operator():
    return UserFactory(username="boss", is_staff=True, is_superuser=True)


def post_reply(client, page, room, fields):
    """Post ``fields`` (unprefixed names) as a reply from admin or from the inbox."""
    if page == "admin":
        url = reverse("admin:rchat_chatroom_change", args=[room.pk])
        return client.post(url, {"_reply": "1", **{f"reply-{k}": v for k, v in fields.items()}})
    return client.post(reverse("rchat:inbox-room", kwargs={"pk": room.pk}), fields)


REPLIES = {
    "text": ({"type": "text", "text": "  Hello there  "}, "Hello there"),
    "image": (
        {"type": "image", "url": " https://cdn.example/c.jpg "},
        {"url": "https://cdn.example/c.jpg"},
    ),
    "file": (
        {"type": "file", "url": "https://files.example/a.pdf", "name": "Price list.pdf"},
        {"url": "https://files.example/a.pdf", "name": "Price list.pdf"},
    ),
    "sticker": (
        {"type": "sticker", "package_id": "446", "sticker_id": "1988"},
        {"package_id": "446", "sticker_id": "1988"},
    ),
    "location": (
        {"type": "location", "latitude": "13.7563", "longitude": "100.5018", "title": "Shop"},
        {"latitude": 13.7563, "longitude": 100.5018, "title": "Shop"},
    ),
}


@pytest.mark.parametrize("kind", list(REPLIES))
def test_admin_and_the_inbox_queue_the_same_message_for_the_same_reply(client, operator, kind):
    """Every message type, typed the same way on both pages, is queued identically."""
    fields, expected = REPLIES[kind]
    client.force_login(operator)
    queued = {}
    for page in ("admin", "inbox"):
        room = ChatRoomFactory()
        response = post_reply(client, page, room, fields)
        assert response.status_code == 302, page
        message = Message.objects.get(room=room, direction="out")
        assert message.status == "queued"
        queued[page] = (message.type, message.data)
    assert queued["admin"] == queued["inbox"] == (kind, expected)


BAD_REPLIES = [
    # (the fields posted, the type and data outbound_validate is asked about)
    ({"type": "text", "text": "   "}, ("text", "   ")),
    ({"type": "text", "text": "x" * 5001}, ("text", "x" * 5001)),
    ({"type": "image", "url": "ftp://x/y.png"}, ("image", {"url": "ftp://x/y.png"})),
    ({"type": "file", "url": ""}, ("file", {"url": ""})),
    (
        {"type": "sticker", "package_id": "446"},
        ("sticker", {"package_id": "446", "sticker_id": ""}),
    ),
    (
        {"type": "location", "latitude": "95", "longitude": "0"},
        ("location", {"latitude": 95.0, "longitude": 0.0}),
    ),
    ({"type": "location", "longitude": "0"}, ("location", {"longitude": 0.0})),
]


@pytest.mark.parametrize(("fields", "checked"), BAD_REPLIES)
def test_a_bad_reply_is_refused_with_outbound_validates_reason_on_both_pages(
    client, operator, fields, checked
):
    """The reason shown is outbound_validate's own, the same in admin and in the inbox."""
    with pytest.raises(InvalidMessage) as refused:
        payloads.outbound_validate(*checked)
    reasons = list(refused.value.errors.values())
    client.force_login(operator)
    room = ChatRoomFactory()
    for page in ("admin", "inbox"):
        html = post_reply(client, page, room, fields).content.decode()
        for reason in reasons:
            assert escape(reason) in html, (page, reason)
        assert 'class="errorlist' in html
    assert not Message.objects.filter(direction="out").exists()


def test_a_closed_room_refuses_a_reply_with_the_services_reason_on_both_pages(client, operator):
    """What only the room can tell (it is closed) comes back from the service on both pages."""
    client.force_login(operator)
    room = ChatRoomFactory(status=ChatRoom.Status.CLOSED)
    for page in ("admin", "inbox"):
        html = post_reply(client, page, room, {"type": "text", "text": "Hello"}).content.decode()
        assert "closed" in html, page
    assert not Message.objects.exists()


def test_both_pages_render_the_one_reply_box_template(client, operator):
    """Same markup and field names, admin's prefixed "reply-", the inbox's not."""
    client.force_login(operator)
    room = ChatRoomFactory()
    admin = client.get(reverse("admin:rchat_chatroom_change", args=[room.pk])).content.decode()
    inbox = client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).content.decode()
    names = ("type", "text", "url", "name", "package_id", "sticker_id", "latitude", "longitude")
    for name in (*names, "title"):
        assert f'name="reply-{name}"' in admin, name
        assert f'name="{name}"' in inbox, name
    for html in (admin, inbox):
        assert '<form class="rchat-reply" id="rchat-reply"' in html
        assert 'data-for-types="location"' in html


def test_there_is_one_reply_form_class_in_rchat():
    """A second ``class ReplyForm`` anywhere in rchat/ would be a second set of rules."""
    found = [
        str(path.relative_to(RCHAT))
        for path in RCHAT.rglob("*.py")
        if re.search(r"^\s*class ReplyForm\b", path.read_text(encoding="utf-8"), re.M)
    ]
    assert found == ["ui/reply.py"]


# --- Signing out of the inbox ------------------------------------------------------------


def test_the_inbox_offers_sign_out_as_a_post_form_with_csrf(client):
    client.force_login(user_with())
    html = client.get(reverse("rchat:inbox")).content.decode()
    logout = re.escape(reverse("rchat:logout"))
    form = re.search(rf'<form[^>]*method="post"[^>]*action="{logout}".*?</form>', html, re.S)
    assert form, "a sign-out form"
    assert "csrfmiddlewaretoken" in form.group(0) and "Sign out" in form.group(0)


def test_sign_out_logs_out_and_lands_on_the_sign_in_page_with_a_message(client):
    client.force_login(user_with())
    response = client.post(reverse("rchat:logout"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("rchat:login")
    assert "You are signed out." in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("rchat:inbox")).status_code == 302


def test_sign_out_by_get_is_not_allowed(client):
    user = user_with()
    client.force_login(user)
    assert client.get(reverse("rchat:logout")).status_code == 405
    assert client.get(reverse("rchat:inbox")).status_code == 200
