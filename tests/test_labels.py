"""Labels on chat rooms: the services, the room list's filter and search, admin, the
inbox and the API."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rchat import selectors, services
from rchat.models import ChatRoom, Label
from tests.factories import ChatRoomFactory, MessageFactory

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
