"""The agent workspace as a whole costs a fixed number of queries.

Each part has its own query-count test; this one fills one conversation with all of
them at once (messages of every kind, attachments, private notes with mentions,
labels, canned responses, colleagues viewing and typing) at two sizes, and asks every
page and poll that draws them. The benchmark database (bench/inbox.py, 10,000 rooms
and 1,000,000 messages) shows the same counts at its scale.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rchat import services
from rchat.models import Label
from tests.factories import ChatRoomFactory, MessageFactory, UserFactory, user_with

pytestmark = pytest.mark.django_db

#: A 1 by 1 PNG: an upload the attachment checks accept as an image.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _workspace(size, viewer, settings, tmp_path):
    """One room holding ``size`` of everything the workspace shows."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / f"media-{size}")},
        },
    }
    room = ChatRoomFactory(display_name=f"Room {size}")
    colleagues = [user_with(username=f"colleague{size}x{n}") for n in range(size)]
    for n in range(size):
        MessageFactory(room=room, data=f"สวัสดีครับ คำถาม {n}", text=f"สวัสดีครับ คำถาม {n}")
        MessageFactory(room=room, type="image", data={"url": f"https://cdn.example/{n}.jpg"})
        MessageFactory(
            room=room, type="file", data={"url": f"https://cdn.example/{n}.pdf", "name": "a.pdf"}
        )
        services.attachment_send(
            room=room, author=viewer, upload=SimpleUploadedFile(f"p{n}.png", PNG, "image/png")
        )
        services.note_add(
            room=room,
            author=colleagues[n],
            body=f"ฝาก@{viewer.username} ดูห้องนี้ และ @{colleagues[(n + 1) % size].username}",
        )
        label = Label.objects.create(name=f"label-{size}-{n}")
        services.room_label_add(room=room, label=label)
        services.canned_save(
            shortcut=f"c{size}x{n}", title=f"Canned {n}", type="text", data="Hi {name}"
        )
        services.canned_save(
            shortcut=f"m{size}x{n}", title=f"Mine {n}", type="text", data="Hi", owner=viewer
        )
        state = "typing" if n % 2 else "viewing"
        services.presence_report(room=room, user=colleagues[n], state=state)
    return room


def _queries(client, url, **params):
    # Once before counting: Django caches content types and the like on a first visit.
    client.get(url, params)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured)


@pytest.mark.parametrize(
    "page",
    [
        "inbox conversation",
        "inbox thread poll",
        "inbox room list poll",
        "inbox mentions",
        "inbox search",
        "admin change page",
        "admin live poll",
        "API notes",
        "API mentions",
        "API messages",
        "API search",
    ],
)
def test_every_page_of_the_workspace_costs_the_same_queries_for_2_or_25_of_everything(
    client, settings, tmp_path, page
):
    counts = []
    for size in (2, 25):
        viewer = UserFactory(
            username=f"boss{size}", first_name="Boss", is_staff=True, is_superuser=True
        )
        client.force_login(viewer)
        room = _workspace(size, viewer, settings, tmp_path)
        url, params = {
            "inbox conversation": (reverse("rchat:inbox-room", args=[room.pk]), {}),
            "inbox thread poll": (reverse("rchat:inbox-thread", args=[room.pk]), {}),
            "inbox room list poll": (reverse("rchat:inbox-rooms"), {"view": "all"}),
            "inbox mentions": (reverse("rchat:inbox-mentions"), {}),
            "inbox search": (reverse("rchat:inbox-search"), {"q": "คำถาม"}),
            "admin change page": (reverse("admin:rchat_chatroom_change", args=[room.pk]), {}),
            "admin live poll": (reverse("admin:rchat_chatroom_live", args=[room.pk]), {}),
            "API notes": (reverse("rchat:api:room-notes", args=[room.pk]), {}),
            "API mentions": (reverse("rchat:api:mention-list"), {}),
            "API messages": (reverse("rchat:api:room-messages", args=[room.pk]), {}),
            "API search": (reverse("rchat:api:message-search"), {"q": "คำถาม"}),
        }[page]
        counts.append(_queries(client, url, **params))
    assert counts[0] == counts[1], f"{page}: {counts[0]} queries for 2, {counts[1]} for 25"
