"""Labels on chat rooms: the services, the room list's filter and search, admin, the
inbox and the API."""

import re
from urllib.parse import unquote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rchat import selectors, services
from rchat.models import ChatRoom, Label
from tests.factories import ChatRoomFactory, MessageFactory, user_with
from tests.test_api import answer_schema  # noqa: F401  (a fixture: responses against the schema)

pytestmark = pytest.mark.django_db


def label(name, color="grey"):
    return services.label_save(name=name, color=color)


# --- Services ----------------------------------------------------------------------------


def test_a_label_is_saved_with_its_name_stripped():
    vip = services.label_save(name="  VIP ", color="red", description=" big spenders ")
    vip.refresh_from_db()
    assert (vip.name, vip.color, vip.description) == ("VIP", "red", "big spenders")


@pytest.mark.parametrize(
    ("first", "second"), [("VIP", "vip"), ("Refund", "REFUND "), ("ลูกค้าVIP", "ลูกค้าvip")]
)
def test_a_name_another_label_has_in_any_case_is_refused(first, second):
    label(first)
    with pytest.raises(ValueError, match="exists already"):
        label(second)
    assert Label.objects.count() == 1


def test_a_thai_name_is_kept_as_written():
    assert label("ลูกค้าVIP").name == "ลูกค้าVIP"
    assert label("ลูกค้าคืนเงิน").name == "ลูกค้าคืนเงิน"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "needs a name"), ("   ", "needs a name"), ("x" * 51, "at most 50"), ("a\x00b", "NUL")],
)
def test_a_bad_name_is_refused_with_its_reason(name, reason):
    with pytest.raises(ValueError, match=reason):
        label(name)
    assert not Label.objects.exists()


def test_an_unknown_colour_is_refused():
    with pytest.raises(ValueError, match="colour"):
        label("VIP", color="pink")


def test_renaming_a_label_keeps_it_and_may_change_only_its_case():
    vip = label("vip")
    label("refund")
    assert services.label_save(name="VIP", color="green", label=vip).pk == vip.pk
    with pytest.raises(ValueError, match="exists already"):
        services.label_save(name="Refund", label=vip)
    vip.refresh_from_db()
    assert (vip.name, vip.color) == ("VIP", "green")


def test_room_labels_are_set_added_and_removed():
    room = ChatRoomFactory()
    vip, refund, late = label("VIP"), label("refund"), label("late")
    services.room_labels_set(room=room, labels=[vip, refund])
    assert set(room.labels.all()) == {vip, refund}
    services.room_labels_set(room=room, labels=[late])
    assert list(room.labels.all()) == [late]
    services.room_label_add(room=room, label=vip)
    services.room_label_add(room=room, label=vip)
    services.room_label_remove(room=room, label=late)
    assert list(room.labels.all()) == [vip]


# --- Selectors ---------------------------------------------------------------------------


def rooms_for(**filters):
    return set(selectors.room_list(user=None, **filters))


def test_room_list_filters_by_a_labels_name_in_any_case_or_its_id():
    vip = label("ลูกค้าVIP")
    tagged, other = ChatRoomFactory(), ChatRoomFactory()
    services.room_labels_set(room=tagged, labels=[vip, label("refund")])
    assert rooms_for(label="ลูกค้าvip") == {tagged}
    assert rooms_for(label=str(vip.pk)) == {tagged}
    assert rooms_for(label=vip.pk) == {tagged}
    assert rooms_for(label="nothing") == set()
    assert rooms_for() == {tagged, other}
    # Two labels on the room: still listed once.
    assert selectors.room_list(user=None, label="refund").count() == 1


def test_search_matches_label_names():
    tagged = ChatRoomFactory(display_name="Somchai")
    ChatRoomFactory(display_name="Other")
    services.room_label_add(room=tagged, label=label("Refund"))
    assert rooms_for(q="refu") == {tagged}
    MessageFactory(room=tagged, data="refund please")
    assert selectors.room_list(user=None, q="refund").count() == 1


def test_room_lists_load_labels_in_one_query_for_any_number_of_rooms():
    vip = label("VIP")
    counts = []
    for size in (1, 30):
        ChatRoom.objects.all().delete()
        for room in ChatRoomFactory.create_batch(size):
            services.room_labels_set(room=room, labels=[vip])
        with CaptureQueriesContext(connection) as queries:
            rooms = list(selectors.room_list(user=None))
            assert all([r.name for r in room.labels.all()] == ["VIP"] for room in rooms)
        counts.append(len(queries))
    assert counts == [2, 2]


# --- API ---------------------------------------------------------------------------------


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user_with())
    return client


def api_url(name, **kwargs):
    return reverse(f"rchat:api:{name}", kwargs=kwargs)


def set_labels(api, room, body):
    return api.post(api_url("room-labels", pk=room.pk), body, format="json")


def test_api_rooms_show_their_labels_and_filter_by_one(api):
    vip = label("VIP", "red")
    tagged, _other = ChatRoomFactory(), ChatRoomFactory()
    services.room_labels_set(room=tagged, labels=[vip])
    rows = api.get(api_url("room-list"), {"label": "vip"}).json()["results"]
    assert [row["id"] for row in rows] == [tagged.pk]
    assert rows[0]["labels"] == [{"id": vip.pk, "name": "VIP", "color": "red"}]
    assert api.get(api_url("room-list"), {"label": vip.pk}).json()["count"] == 1
    assert len(api.get(api_url("room-list")).json()["results"]) == 2
    detail = api.get(api_url("room-detail", pk=tagged.pk)).json()
    assert detail["labels"][0]["name"] == "VIP"


def test_api_an_unknown_label_filter_is_an_empty_list_a_bad_one_a_400(api):
    ChatRoomFactory()
    assert api.get(api_url("room-list"), {"label": "nobody"}).json()["count"] == 0
    bad = api.get(api_url("room-list"), {"label": "x" * 51})
    assert bad.status_code == 400 and "label" in bad.json()["errors"]


def test_api_lists_labels(api):
    label("refund", "blue")
    label("VIP", "red")
    rows = api.get(api_url("label-list")).json()
    assert [(row["name"], row["color"]) for row in rows] == [("refund", "blue"), ("VIP", "red")]


def test_api_sets_a_rooms_labels_by_name_in_any_case(api):
    room = ChatRoomFactory()
    vip, refund = label("VIP"), label("ลูกค้าคืนเงิน")
    answer = api.post(
        api_url("room-labels", pk=room.pk), {"labels": ["vip", "ลูกค้าคืนเงิน", "VIP"]}, format="json"
    )
    assert answer.status_code == 200
    assert {row["name"] for row in answer.json()["labels"]} == {"VIP", "ลูกค้าคืนเงิน"}
    assert set(room.labels.all()) == {vip, refund}
    cleared = api.post(api_url("room-labels", pk=room.pk), {"labels": []}, format="json")
    assert cleared.json()["labels"] == [] and not room.labels.exists()


def test_api_unknown_label_names_are_a_400_naming_them_and_change_nothing(api):
    room = ChatRoomFactory()
    vip = label("VIP")
    services.room_labels_set(room=room, labels=[vip])
    answer = api.post(
        api_url("room-labels", pk=room.pk), {"labels": ["VIP", "nope", "ไม่มี"]}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"labels": ["nope", "ไม่มี"]}
    assert "nope" in answer.json()["detail"]
    assert list(room.labels.all()) == [vip]
    assert (
        api.post(api_url("room-labels", pk=room.pk), {"labels": "VIP"}, format="json").status_code
        == 400
    )
    assert api.post(api_url("room-labels", pk=room.pk), {}, format="json").status_code == 400


def test_api_a_viewer_cannot_set_labels():
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user_with("view_chatroom"))
    room = ChatRoomFactory()
    label("VIP")
    answer = client.post(api_url("room-labels", pk=room.pk), {"labels": ["VIP"]}, format="json")
    assert answer.status_code == 403 and not room.labels.exists()


def test_api_label_answers_match_the_schema(api, answer_schema):  # noqa: F811
    room = ChatRoomFactory()
    services.room_labels_set(room=room, labels=[label("VIP", "purple")])
    answer_schema(api.get(api_url("room-list"), {"label": "VIP"}), "/rchat/api/rooms/", "get")
    answer_schema(api.get(api_url("room-list"), {"label": "x" * 51}), "/rchat/api/rooms/", "get")
    answer_schema(api.get(api_url("room-detail", pk=room.pk)), "/rchat/api/rooms/{id}/", "get")
    answer_schema(api.get(api_url("label-list")), "/rchat/api/labels/", "get")
    path = "/rchat/api/rooms/{id}/labels/"
    answer_schema(
        api.post(api_url("room-labels", pk=room.pk), {"labels": ["vip"]}, format="json"),
        path,
        "post",
    )
    answer_schema(
        api.post(api_url("room-labels", pk=room.pk), {"labels": ["no"]}, format="json"),
        path,
        "post",
    )


def _labelled_rooms(size):
    ChatRoom.objects.all().delete()
    vip, refund = Label.objects.get_or_create(name="VIP")[0], label_or("refund")
    for room in ChatRoomFactory.create_batch(size):
        services.room_labels_set(room=room, labels=[vip, refund])
    return room


def label_or(name):
    return Label.objects.filter(name=name).first() or label(name)


def test_api_room_list_runs_the_same_queries_for_1_or_30_labelled_rooms(api):
    api.get(api_url("label-list"))  # the user's permissions, read once and kept
    counts = []
    for size in (1, 30):
        _labelled_rooms(size)
        with CaptureQueriesContext(connection) as queries:
            rows = api.get(api_url("room-list")).json()["results"]
        assert len(rows) == size and all(len(row["labels"]) == 2 for row in rows)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# --- Admin -------------------------------------------------------------------------------


def test_admin_room_list_shows_label_chips_and_filters_by_label(client, operator):
    vip = label("VIP", "red")
    tagged = ChatRoomFactory(display_name="Tagged Person")
    ChatRoomFactory(display_name="Plain Person")
    services.room_labels_set(room=tagged, labels=[vip])
    changelist = reverse("admin:rchat_chatroom_changelist")
    page = client.get(changelist).content.decode()
    assert '<span class="rchat-label rchat-label-red">VIP</span>' in page
    assert "rchat/labels.css" in page
    filtered = client.get(changelist, {"labels__id__exact": vip.pk}).content.decode()
    assert "Tagged Person" in filtered and "Plain Person" not in filtered


def test_admin_room_list_runs_the_same_queries_for_1_or_30_labelled_rooms(client, operator):
    counts = []
    for size in (1, 30):
        _labelled_rooms(size)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("admin:rchat_chatroom_changelist")).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_admin_change_page_saves_the_rooms_labels(client, operator):
    vip, refund = label("VIP"), label("refund")
    room = ChatRoomFactory()
    services.room_labels_set(room=room, labels=[refund])
    change = reverse("admin:rchat_chatroom_change", args=[room.pk])
    assert 'name="labels"' in client.get(change).content.decode()
    response = client.post(change, {"status": "open", "assignee": "", "labels": [vip.pk]})
    assert response.status_code == 302
    assert list(room.labels.all()) == [vip]


def test_admin_label_list_shows_a_swatch_and_the_rooms_count(client, operator):
    vip = label("ลูกค้าVIP", "purple")
    for room in ChatRoomFactory.create_batch(3):
        services.room_label_add(room=room, label=vip)
    page = client.get(reverse("admin:rchat_label_changelist"), {"q": "ลูกค้า"}).content.decode()
    assert 'class="rchat-label rchat-label-purple"' in page
    assert re.search(r"field-rooms_count[^>]*>3<", page)


def test_admin_refuses_a_label_name_another_label_has_in_any_case(client, operator):
    label("VIP")
    add = reverse("admin:rchat_label_add")
    page = client.post(add, {"name": "vip", "color": "red", "description": ""})
    assert page.status_code == 200
    assert "exists already" in page.content.decode()
    assert Label.objects.count() == 1
    saved = client.post(add, {"name": " Refund ", "color": "blue", "description": ""})
    assert saved.status_code == 302
    assert Label.objects.filter(name="Refund", color="blue").exists()


# --- Inbox -------------------------------------------------------------------------------


def inbox_url(room=None, name="rchat:inbox-room"):
    return reverse("rchat:inbox") if room is None else reverse(name, kwargs={"pk": room.pk})


def test_inbox_list_and_header_show_the_rooms_labels(agent_client):
    room = ChatRoomFactory(display_name="Malee")
    services.room_labels_set(room=room, labels=[label("ลูกค้าVIP", "orange")])
    chip = '<span class="rchat-label rchat-label-orange">ลูกค้าVIP'
    assert chip in agent_client.get(inbox_url()).content.decode()
    assert chip in agent_client.get(inbox_url(room)).content.decode()


def test_inbox_filters_by_label_and_keeps_it_in_links(agent_client):
    vip = label("VIP")
    tagged = ChatRoomFactory(display_name="Tagged Person")
    ChatRoomFactory(display_name="Plain Person")
    services.room_label_add(room=tagged, label=vip)
    page = agent_client.get(inbox_url(), {"label": "vip"}).content.decode()
    assert "Tagged Person" in page and "Plain Person" not in page
    assert f"{inbox_url(tagged)}?status=open&amp;label=vip" in page.replace("view=all&amp;", "")
    assert re.search(r'<option value="VIP" selected>VIP</option>', page)
    nobody = agent_client.get(inbox_url(), {"label": "nope"}).content.decode()
    assert "Tagged Person" not in nobody
    polled = agent_client.get(reverse("rchat:inbox-rooms"), {"label": "VIP"}).content.decode()
    assert "Tagged Person" in polled and "Plain Person" not in polled


def test_inbox_search_finds_rooms_by_label_name(agent_client):
    tagged = ChatRoomFactory(display_name="Tagged Person")
    ChatRoomFactory(display_name="Plain Person")
    services.room_label_add(room=tagged, label=label("ลูกค้าคืนเงิน"))
    page = agent_client.get(inbox_url(), {"q": "คืนเงิน"}).content.decode()
    assert "Tagged Person" in page and "Plain Person" not in page


def test_inbox_adds_and_removes_a_label_with_a_message(agent_client):
    room = ChatRoomFactory()
    vip, refund = label("VIP"), label("refund")
    page = agent_client.get(inbox_url(room)).content.decode()
    assert reverse("rchat:inbox-label-add", kwargs={"pk": room.pk}) in page
    add = inbox_url(room, "rchat:inbox-label-add")
    response = agent_client.post(add + "?label=VIP", {"label": vip.pk}, follow=True)
    assert list(room.labels.all()) == [vip]
    assert "label=VIP" in response.redirect_chain[-1][0]
    assert "Label “VIP” added." in response.content.decode()
    # The header offers only the labels the room does not have.
    header = response.content.decode().split('id="rchat-room-labels"')[1].split("</div>")[0]
    assert f'<option value="{refund.pk}">refund</option>' in header
    assert f'<option value="{vip.pk}">' not in header
    removed = agent_client.post(
        inbox_url(room, "rchat:inbox-label-remove"), {"label": vip.pk}, follow=True
    )
    assert "Label “VIP” removed." in removed.content.decode()
    assert not room.labels.exists()


def test_inbox_a_missing_or_unknown_label_is_an_error_message(agent_client):
    room = ChatRoomFactory()
    for value in ("", "999999", "x"):
        response = agent_client.post(
            inbox_url(room, "rchat:inbox-label-add"), {"label": value}, follow=True
        )
        assert "Choose a label to add." in response.content.decode()
    gone = agent_client.post(
        inbox_url(room, "rchat:inbox-label-remove"), {"label": "999999"}, follow=True
    )
    assert "does not exist any more" in gone.content.decode()
    assert agent_client.get(inbox_url(room, "rchat:inbox-label-add")).status_code == 405


def test_inbox_a_reader_sees_labels_but_cannot_change_them(client):
    client.force_login(user_with("view_chatroom"))
    room = ChatRoomFactory()
    vip = label("VIP")
    services.room_label_add(room=room, label=vip)
    page = client.get(inbox_url(room)).content.decode()
    assert "rchat-label-grey" in page and "inbox-label" not in page
    assert "labels/add/" not in page and "labels/remove/" not in page
    for name in ("rchat:inbox-label-add", "rchat:inbox-label-remove"):
        assert client.post(inbox_url(room, name), {"label": vip.pk}).status_code == 403
    assert list(room.labels.all()) == [vip]


def test_inbox_thread_poll_sees_a_label_change(agent_client):
    room = ChatRoomFactory()
    MessageFactory(room=room)
    thread = inbox_url(room, "rchat:inbox-thread")
    first = agent_client.get(thread)
    version = re.search(r"v=([^&\"]+)", first.content.decode()).group(1)
    assert agent_client.get(thread, {"v": unquote(version)}).status_code == 204
    services.room_label_add(room=room, label=label("VIP"))
    changed = agent_client.get(thread, {"v": unquote(version)})
    assert changed.status_code == 200 and "VIP" in changed.content.decode()


@pytest.mark.parametrize("page", ["inbox", "conversation", "rooms-partial", "thread-partial"])
def test_inbox_pages_run_the_same_queries_for_1_or_30_labelled_rooms(client, page):
    client.force_login(user_with())
    counts = []
    for size in (1, 30):
        room = _labelled_rooms(size)
        url = {
            "inbox": inbox_url(),
            "conversation": inbox_url(room),
            "rooms-partial": reverse("rchat:inbox-rooms"),
            "thread-partial": inbox_url(room, "rchat:inbox-thread"),
        }[page]
        client.get(url)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
