"""Broadcasts: one message to many chat rooms, from the service, admin, the API and the
command, sent by the real batched drain to a real HTTP server standing in for R-Chat.

The tests run ``delivery_drain`` themselves, one batch at a time, instead of a worker;
wake-ups go to kombu's in-memory broker (as in tests/test_delivery.py).
"""

import json
import threading
from io import StringIO

import pytest
from django.contrib.admin import helpers
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from werkzeug import Response

from rchat import ratelimit, selectors, services
from rchat.exceptions import InvalidMessage
from rchat.management.commands import rchat_broadcast
from rchat.models import Broadcast, ChatRoom, Credential, Message
from rchat.services import broadcasts
from rchat.tasks import drain_outbound
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory, user_with

SEND_PATH = "/api/v1/external/send-message"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    """Wake-ups go to kombu's in-memory transport (Celery reads the environment first)."""
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


@pytest.fixture(autouse=True)
def _fresh_budgets(monkeypatch):
    # Without a shared Redis each process keeps its own rate budgets, by credential id;
    # a new set, so that a credential id an earlier test used starts with a full bucket.
    monkeypatch.setattr(ratelimit, "_local", ratelimit._LocalBudgets())


@pytest.fixture
def rchat_settings(settings):
    settings.RCHAT = {
        **settings.RCHAT,
        "RETRY_BASE_DELAY": 0.0,
        "DELIVERY_MAX_ATTEMPTS": 3,
        "CONNECT_TIMEOUT": 2.0,
        "READ_TIMEOUT": 5.0,
    }
    return settings


@pytest.fixture
def shop(httpserver, rchat_settings):
    """A credential whose R-Chat is the test's HTTP server, which accepts every message."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"status": "SUCCESS"})
    return CredentialFactory(name="shop", base_url=httpserver.url_for("/").rstrip("/"))


@pytest.fixture
def rooms(shop):
    """Three open chat rooms of ``shop`` and a closed one."""
    made = [ChatRoomFactory(credential=shop, chat_id=f"chat-{n}") for n in range(3)]
    made.append(ChatRoomFactory(credential=shop, chat_id="chat-closed", status="closed"))
    return made


def sent_to(httpserver):
    """(chat_id, data) of every Send Message call, in order."""
    bodies = [
        json.loads(request.data) for request, _ in httpserver.log if request.path == SEND_PATH
    ]
    return [(body["chat_id"], body["message"]["data"]) for body in bodies]


def drain(capture):
    """One batch of the real drain, with its after-commit work run."""
    with capture(execute=True):
        return services.delivery_drain()


def drain_all(capture, limit=20):
    for _ in range(limit):
        if not drain(capture).claimed:
            return
    raise AssertionError("the queue did not empty")


def progress_of(broadcast):
    services.broadcasts_settle(broadcasts=[broadcast])
    return selectors.broadcast_progress(broadcast)


def counts(progress):
    return {
        "queued": progress.queued,
        "sending": progress.sending,
        "sent": progress.sent,
        "failed": progress.failed,
        "cancelled": progress.cancelled,
        "skipped": progress.skipped,
    }


# --- Queueing ------------------------------------------------------------------------------


def test_a_broadcast_queues_one_message_per_open_room_and_skips_closed_and_unknown_ones(
    rooms, httpserver, django_capture_on_commit_callbacks
):
    author = UserFactory()
    open_rooms, closed = rooms[:3], rooms[3]
    ids = [room.pk for room in rooms] + [987654, rooms[0].pk]  # unknown, and a repeat

    broadcast = services.broadcast_create(
        rooms=ids, type="text", data="  Flash sale today!  ", author=author, name="Sale"
    )

    assert (broadcast.status, broadcast.rooms_total, broadcast.skipped) == ("sending", 5, 2)
    assert broadcast.skipped_reasons == {
        "closed": {"count": 1, "room_ids": [closed.pk]},
        "not_found": {"count": 1, "room_ids": [987654]},
    }
    assert (broadcast.name, broadcast.type, broadcast.data) == ("Sale", "text", "Flash sale today!")
    messages = list(broadcast.messages.order_by("room_id"))
    assert [m.room_id for m in messages] == sorted(room.pk for room in open_rooms)
    for message in messages:
        assert (message.direction, message.status, message.author) == ("out", "queued", author)
        assert (message.type, message.data, message.text) == ("text",) + ("Flash sale today!",) * 2
    assert len({m.dedup_key for m in messages}) == 3, "each message its own idempotency key"
    for room in open_rooms:
        room.refresh_from_db()
        assert room.last_message_preview == "Flash sale today!"
        assert room.send_after is not None, "due for the drain"
    closed.refresh_from_db()
    assert closed.send_after is None and not closed.messages.exists()

    drain_all(django_capture_on_commit_callbacks)

    assert sorted(sent_to(httpserver)) == [(f"chat-{n}", "Flash sale today!") for n in range(3)]
    progress = progress_of(broadcast)
    assert counts(progress) == {
        "queued": 0,
        "sending": 0,
        "sent": 3,
        "failed": 0,
        "cancelled": 0,
        "skipped": 2,
    }
    broadcast.refresh_from_db()
    assert broadcast.status == "done" and broadcast.finished_at is not None
    assert progress.percent == 100


def test_the_broadcast_comes_after_what_a_room_already_has_queued(
    rooms, httpserver, django_capture_on_commit_callbacks
):
    busy, other = rooms[0], rooms[1]
    services.message_send(room=busy, type="text", data="reply 1")
    services.message_send(room=busy, type="text", data="reply 2")

    services.broadcast_create(rooms=[busy.pk, other.pk], type="text", data="news")
    services.message_send(room=busy, type="text", data="reply 3")
    drain_all(django_capture_on_commit_callbacks)

    in_busy = [data for chat_id, data in sent_to(httpserver) if chat_id == busy.chat_id]
    assert in_busy == ["reply 1", "reply 2", "news", "reply 3"]
    assert ("chat-1", "news") in sent_to(httpserver)


def test_rooms_are_queued_in_batches_with_progress_after_each(rooms, monkeypatch):
    monkeypatch.setattr(broadcasts, "BATCH_ROOMS", 2)
    extra = [ChatRoomFactory(credential=rooms[0].credential) for _ in range(2)]
    seen = []

    broadcast = services.broadcast_create(
        rooms=ChatRoom.objects.filter(pk__in=[r.pk for r in rooms + extra]),
        type="text",
        data="hello",
        progress=lambda b, done, total: seen.append((b.pk, done, total, b.messages.count())),
    )

    pk = broadcast.pk
    assert seen == [(pk, 0, 6, 0), (pk, 2, 6, 2), (pk, 4, 6, 3), (pk, 6, 6, 5)]
    assert broadcast.skipped_reasons == {"closed": {"count": 1, "room_ids": [rooms[3].pk]}}


def test_a_broadcast_to_a_search_result_counts_each_room_once(rooms):
    for room in rooms[:2]:
        for text in ("parcel late", "parcel lost"):
            services.message_send(room=room, type="text", data=text)
    found = selectors.room_list(user=None, status="all", q="parcel")

    broadcast = services.broadcast_create(rooms=found, type="text", data="sorry")

    assert broadcast.rooms_total == 2 and broadcast.messages.count() == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"type": "text", "data": "   "}, "data"),
        ({"type": "location", "data": {"latitude": 91, "longitude": 0}}, "latitude"),
        ({"type": "video", "data": "x"}, "type"),
        ({"type": "text", "data": "hi", "name": "n" * 201}, "name"),
    ],
)
def test_a_bad_message_stores_nothing(rooms, kwargs, field):
    with pytest.raises(InvalidMessage) as caught:
        services.broadcast_create(rooms=[rooms[0].pk], **kwargs)
    assert field in caught.value.errors
    assert not Broadcast.objects.exists() and not Message.objects.exists()


def test_no_room_at_all_is_refused(rooms):
    with pytest.raises(InvalidMessage) as caught:
        services.broadcast_create(rooms=ChatRoom.objects.none(), type="text", data="hi")
    assert "rooms" in caught.value.errors
    with pytest.raises(InvalidMessage):
        services.broadcast_create(rooms=["seven"], type="text", data="hi")
    assert not Broadcast.objects.exists()


def test_only_closed_rooms_make_a_finished_broadcast_with_the_reason(rooms):
    broadcast = services.broadcast_create(rooms=[rooms[3].pk], type="text", data="hi")
    assert (broadcast.status, broadcast.skipped) == ("done", 1)
    assert broadcast.finished_at is not None and not broadcast.messages.exists()


def test_a_room_of_a_refused_credential_is_queued_and_held_until_it_is_registered(
    rooms, httpserver, django_capture_on_commit_callbacks
):
    refused = CredentialFactory(
        status=Credential.Status.INVALID, base_url=rooms[0].credential.base_url
    )
    waiting = ChatRoomFactory(credential=refused, chat_id="chat-refused")

    broadcast = services.broadcast_create(rooms=[rooms[0].pk, waiting.pk], type="text", data="hi")
    drain_all(django_capture_on_commit_callbacks)

    assert sent_to(httpserver) == [("chat-0", "hi")]
    progress = progress_of(broadcast)
    assert (progress.sent, progress.queued, progress.held, progress.skipped) == (1, 1, 1, 0)
    broadcast.refresh_from_db()
    assert broadcast.status == "sending", "not done while a message waits"


def test_a_broadcast_is_sent_within_the_credentials_rate_limit(
    rooms, django_capture_on_commit_callbacks
):
    """The drain applies the credential's shared rate limit: at one message per 1,000
    seconds (burst 1) one room gets its message and the others wait their turn."""
    Credential.objects.filter(pk=rooms[0].credential_id).update(send_rate=0.001)

    broadcast = services.broadcast_create(rooms=[r.pk for r in rooms[:3]], type="text", data="hi")
    result = drain(django_capture_on_commit_callbacks)

    assert (result.sent, result.waiting) == (1, 2)
    progress = progress_of(broadcast)
    assert (progress.sent, progress.queued, progress.failed) == (1, 2, 0)


def test_progress_is_read_in_one_query(rooms, django_assert_num_queries):
    broadcast = services.broadcast_create(rooms=[r.pk for r in rooms], type="text", data="hi")
    with django_assert_num_queries(1):
        progress = selectors.broadcast_progress(broadcast)
    assert (progress.queued, progress.skipped, progress.status) == (3, 1, "sending")


def test_interrupted_queueing_sends_what_was_queued_and_counts_the_rest(rooms, monkeypatch):
    """Ctrl-C (or an error) between batches: the broadcast does not stay "queueing"."""
    monkeypatch.setattr(broadcasts, "BATCH_ROOMS", 1)

    def stop_after_first(broadcast, done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        services.broadcast_create(
            rooms=[r.pk for r in rooms[:3]], type="text", data="hi", progress=stop_after_first
        )

    broadcast = Broadcast.objects.get()
    assert (broadcast.status, broadcast.skipped) == ("sending", 2)
    assert broadcast.skipped_reasons["interrupted"]["count"] == 2
    assert broadcast.messages.count() == 1


# --- Cancelling ----------------------------------------------------------------------------


def test_cancel_mid_way_keeps_what_was_sent_and_the_rooms_take_new_messages(
    rooms, httpserver, django_capture_on_commit_callbacks
):
    open_rooms = rooms[:3]
    broadcast = services.broadcast_create(
        rooms=[r.pk for r in open_rooms], type="text", data="news"
    )
    # One batch of one message, and the drain stops (its time budget is spent).
    with django_capture_on_commit_callbacks(execute=True):
        assert services.delivery_drain(batch_size=1, budget=0).sent == 1
    # One room has a reply queued behind the broadcast's message: it keeps its place.
    unsent = [r for r in open_rooms if r.chat_id not in dict(sent_to(httpserver))]
    services.message_send(room=unsent[0], type="text", data="reply behind")

    assert services.broadcast_cancel(broadcast=broadcast) == 2

    broadcast.refresh_from_db()
    assert broadcast.status == "cancelled" and broadcast.finished_at is not None
    unsent[0].refresh_from_db()
    unsent[1].refresh_from_db()
    assert unsent[0].send_after is not None, "its reply is still due"
    assert unsent[1].send_after is None, "nothing pending: out of the queue"
    drain_all(django_capture_on_commit_callbacks)
    assert [data for _, data in sent_to(httpserver)] == ["news", "reply behind"]

    services.message_send(room=unsent[1], type="text", data="later")
    drain_all(django_capture_on_commit_callbacks)
    assert sent_to(httpserver)[-1] == (unsent[1].chat_id, "later")
    assert counts(progress_of(broadcast)) == {
        "queued": 0,
        "sending": 0,
        "sent": 1,
        "failed": 0,
        "cancelled": 2,
        "skipped": 0,
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_cancel_while_a_worker_sends_leaves_that_message_to_the_worker(
    httpserver, rchat_settings, django_capture_on_commit_callbacks
):
    """The broadcast is cancelled (in another connection) while R-Chat is answering the
    first message: that one is recorded sent, the others are never sent."""
    rchat_settings.RCHAT = {**rchat_settings.RCHAT, "DELIVERY_BATCH_SIZE": 1}
    shop = CredentialFactory(base_url=httpserver.url_for("/").rstrip("/"))
    made = [ChatRoomFactory(credential=shop, chat_id=f"chat-{n}") for n in range(3)]
    broadcast = services.broadcast_create(rooms=[r.pk for r in made], type="text", data="news")
    cancelled = []

    def answer_after_cancelling(request):
        def cancel():
            try:
                cancelled.append(services.broadcast_cancel(broadcast=broadcast))
            finally:
                connection.close()

        thread = threading.Thread(target=cancel)
        thread.start()
        thread.join(timeout=30)
        return Response(json.dumps({"status": "SUCCESS"}), content_type="application/json")

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_handler(
        answer_after_cancelling
    )
    assert drain(django_capture_on_commit_callbacks).sent == 1
    assert drain(django_capture_on_commit_callbacks).claimed == 0

    assert cancelled == [2]
    assert len(sent_to(httpserver)) == 1
    assert counts(progress_of(broadcast)) == {
        "queued": 0,
        "sending": 0,
        "sent": 1,
        "failed": 0,
        "cancelled": 2,
        "skipped": 0,
    }
    assert not ChatRoom.objects.filter(send_after__isnull=False).exists()


def test_cancelling_twice_is_harmless_and_a_finished_broadcast_cannot_be_cancelled(
    rooms, django_capture_on_commit_callbacks
):
    first = services.broadcast_create(rooms=[rooms[0].pk], type="text", data="one")
    assert services.broadcast_cancel(broadcast=first) == 1
    assert services.broadcast_cancel(broadcast=first) == 0

    second = services.broadcast_create(rooms=[rooms[1].pk], type="text", data="two")
    drain_all(django_capture_on_commit_callbacks)
    with pytest.raises(InvalidMessage, match="finished"):
        services.broadcast_cancel(broadcast=second)
    second.refresh_from_db()
    assert second.status == "done", "the refusal settles it"
    assert second.messages.get().status == "sent"


def test_a_broadcast_cancelled_while_it_is_queued_stops_at_the_next_batch(rooms, monkeypatch):
    monkeypatch.setattr(broadcasts, "BATCH_ROOMS", 1)

    def cancel_after_first(broadcast, done, total):
        if done == 1:
            services.broadcast_cancel(broadcast=broadcast)

    broadcast = services.broadcast_create(
        rooms=[r.pk for r in rooms[:3]], type="text", data="hi", progress=cancel_after_first
    )

    assert broadcast.status == "cancelled"
    assert broadcast.skipped_reasons == {
        "cancelled": {"count": 2, "room_ids": [r.pk for r in rooms[1:3]]}
    }
    assert list(broadcast.messages.values_list("status", flat=True)) == ["cancelled"]


def test_settling_leaves_a_broadcast_being_queued_alone(rooms):
    broadcast = Broadcast.objects.create(text="x", rooms_total=3)
    assert services.broadcasts_settle() == 0
    broadcast.refresh_from_db()
    assert broadcast.status == "queueing"


# --- Admin ---------------------------------------------------------------------------------


def action_post(client, room_ids, url=None, **fields):
    data = {"action": "send_broadcast", helpers.ACTION_CHECKBOX_NAME: room_ids, **fields}
    return client.post(url or reverse("admin:rchat_chatroom_changelist"), data)


def test_admin_action_asks_for_the_message_then_queues_the_broadcast(
    client, operator, rooms, httpserver, django_capture_on_commit_callbacks
):
    ids = [room.pk for room in rooms]
    page = action_post(client, ids)
    assert page.status_code == 200
    html = page.content.decode()
    assert "4 chat rooms selected." in html
    assert "One of them is closed and will be skipped." in html
    assert 'name="broadcast-text"' in html

    done = action_post(
        client,
        ids,
        **{
            "_broadcast": "1",
            "broadcast-type": "text",
            "broadcast-text": "Sale!",
            "broadcast-broadcast_name": "Sale",
        },
    )

    broadcast = Broadcast.objects.get()
    assert done.status_code == 302
    assert done.url == reverse("admin:rchat_broadcast_change", args=[broadcast.pk])
    assert (broadcast.name, broadcast.author, broadcast.rooms_total) == ("Sale", operator, 4)
    assert broadcast.messages.count() == 3
    drain_all(django_capture_on_commit_callbacks)
    detail = client.get(done.url).content.decode()
    assert 'id="rchat-broadcast-sent"><strong>3</strong>' in detail
    assert "The chat room is closed" in detail and str(rooms[3].pk) in detail
    assert "Cancel the broadcast" not in detail, "nothing left to cancel"


def test_admin_action_sends_an_image_from_its_url(client, operator, rooms):
    action_post(
        client,
        [rooms[0].pk],
        **{
            "_broadcast": "1",
            "broadcast-type": "image",
            "broadcast-url": "https://cdn.example/a.png",
        },
    )
    message = Message.objects.get()
    assert (message.type, message.data) == ("image", {"url": "https://cdn.example/a.png"})


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"broadcast-type": "text", "broadcast-text": "   "}, "empty"),
        ({"broadcast-type": "image", "broadcast-url": "ftp://x/a.png"}, "http"),
        (
            {"broadcast-type": "location", "broadcast-latitude": "95", "broadcast-longitude": "0"},
            "90",
        ),
    ],
)
def test_admin_form_shows_what_is_wrong_and_queues_nothing(client, operator, rooms, fields, error):
    page = action_post(client, [rooms[0].pk], _broadcast="1", **fields)
    assert page.status_code == 200
    assert "errorlist" in page.content.decode()
    assert error in page.content.decode()
    assert not Broadcast.objects.exists()


def test_admin_action_on_every_room_of_a_filtered_list(client, operator, rooms):
    other = ChatRoomFactory(status="open")  # another credential's room, filtered out
    url = (
        reverse("admin:rchat_chatroom_changelist")
        + f"?credential__id__exact={rooms[0].credential_id}"
    )
    action_post(
        client,
        [rooms[0].pk],
        url=url,
        select_across="1",
        _broadcast="1",
        **{"broadcast-type": "text", "broadcast-text": "all of shop"},
    )
    broadcast = Broadcast.objects.get()
    assert broadcast.rooms_total == 4 and broadcast.skipped == 1
    assert not other.messages.exists()


def test_admin_action_needs_the_reply_permission(client, rooms):
    client.force_login(user_with("view_chatroom", "change_chatroom"))
    listing = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    assert "send_broadcast" not in listing
    action_post(
        client, [rooms[0].pk], _broadcast="1", **{"broadcast-type": "text", "broadcast-text": "x"}
    )
    assert not Broadcast.objects.exists()


def test_broadcast_list_shows_progress_and_cancels_from_the_page_and_the_action(
    client, operator, rooms
):
    first = services.broadcast_create(rooms=[rooms[0].pk], type="text", data="one", name="First")
    second = services.broadcast_create(rooms=[rooms[1].pk, rooms[3].pk], type="text", data="two")
    listing = client.get(reverse("admin:rchat_broadcast_changelist")).content.decode()
    assert listing.count("<progress") == 2
    assert "sent 0 · failed 0 · waiting 1 · cancelled 0 · skipped 1" in listing

    detail = client.get(reverse("admin:rchat_broadcast_change", args=[first.pk])).content.decode()
    assert "Cancel the broadcast" in detail
    client.post(reverse("admin:rchat_broadcast_cancel", args=[first.pk]))
    first.refresh_from_db()
    assert first.status == "cancelled"

    client.post(
        reverse("admin:rchat_broadcast_changelist"),
        {"action": "cancel_broadcasts", helpers.ACTION_CHECKBOX_NAME: [second.pk]},
    )
    second.refresh_from_db()
    assert second.status == "cancelled"
    assert second.messages.get().status == "cancelled"


def test_broadcast_list_runs_the_same_number_of_queries_for_one_or_many(client, operator, rooms):
    from django.test.utils import CaptureQueriesContext

    url = reverse("admin:rchat_broadcast_changelist")
    found = []
    for how_many in (1, 8):
        while Broadcast.objects.count() < how_many:
            services.broadcast_create(rooms=[r.pk for r in rooms], type="text", data="hi")
        client.get(url)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        found.append(len(queries))
    assert found[0] == found[1], found


def test_broadcasts_are_read_only_for_those_who_see_chat_rooms(client, rooms):
    broadcast = services.broadcast_create(rooms=[rooms[0].pk], type="text", data="one")
    client.force_login(user_with("view_chatroom"))
    assert client.get(reverse("admin:rchat_broadcast_changelist")).status_code == 200
    page = client.get(reverse("admin:rchat_broadcast_change", args=[broadcast.pk]))
    assert page.status_code == 200 and "Cancel the broadcast" not in page.content.decode()
    assert (
        client.post(reverse("admin:rchat_broadcast_cancel", args=[broadcast.pk])).status_code == 403
    )
    broadcast.refresh_from_db()
    assert broadcast.status == "sending"


# --- API -----------------------------------------------------------------------------------


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def bot():
    return user_with()


@pytest.fixture
def api(bot):
    return token_client(bot)


def api_url(name, **kwargs):
    return reverse(f"rchat:api:{name}", kwargs=kwargs)


def test_api_queues_a_broadcast_to_rooms_by_id(api, bot, rooms):
    response = api.post(
        api_url("broadcast-list"),
        {
            "name": "Sale",
            "type": "text",
            "data": "Sale!",
            "rooms": [r.pk for r in rooms] + [987654],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["rooms_total"], body["skipped"]) == ("sending", 5, 2)
    assert body["author"]["id"] == bot.pk
    assert body["skipped_reasons"]["not_found"] == {"count": 1, "room_ids": [987654]}
    assert body["progress"]["queued"] == 3 and body["progress"]["held"] == 0
    assert Broadcast.objects.get().messages.count() == 3


def test_api_queues_a_broadcast_to_the_rooms_a_filter_finds(api, rooms):
    elsewhere = ChatRoomFactory(chat_id="other-shop")
    response = api.post(
        api_url("broadcast-list"),
        {
            "type": "sticker",
            "data": {"package_id": 1, "sticker_id": 2},
            "filter": {"credential": "shop"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["rooms_total"] == 3, "open rooms only, by default"
    assert not elsewhere.messages.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "text", "data": "hi"}, "rooms"),
        ({"type": "text", "data": "hi", "rooms": [1], "filter": {}}, "rooms"),
        ({"type": "text", "data": "hi", "rooms": []}, "rooms"),
        ({"type": "text", "data": "hi", "rooms": ["seven"]}, "rooms"),
        ({"type": "text", "data": "", "rooms": [1]}, "data"),
        ({"type": "image", "data": "ftp://x", "rooms": [1]}, "url"),
        ({"type": "text", "data": "hi", "filter": {"credential": "nobody"}}, "rooms"),
        ({"type": "text", "data": "hi", "filter": {"view": "everything"}}, "filter"),
    ],
)
def test_api_refuses_bad_input_with_the_reason_and_queues_nothing(api, rooms, body, field):
    response = api.post(api_url("broadcast-list"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert response.json()["detail"]
    assert not Broadcast.objects.exists()


def test_api_needs_the_reply_permission_to_send_or_cancel(rooms):
    broadcast = services.broadcast_create(rooms=[rooms[0].pk], type="text", data="hi")
    viewer = token_client(user_with("view_chatroom"))
    response = viewer.post(
        api_url("broadcast-list"),
        {"type": "text", "data": "hi", "rooms": [rooms[0].pk]},
        format="json",
    )
    assert response.status_code == 403 and "detail" in response.json()
    assert viewer.post(api_url("broadcast-cancel", pk=broadcast.pk)).status_code == 403
    assert viewer.get(api_url("broadcast-detail", pk=broadcast.pk)).status_code == 200
    assert APIClient().get(api_url("broadcast-list")).status_code == 401
    assert Broadcast.objects.count() == 1


def test_api_shows_progress_and_turns_the_broadcast_done(
    api, rooms, httpserver, django_capture_on_commit_callbacks
):
    broadcast = services.broadcast_create(rooms=[r.pk for r in rooms], type="text", data="hi")
    drain_all(django_capture_on_commit_callbacks)

    body = api.get(api_url("broadcast-detail", pk=broadcast.pk)).json()

    assert body["status"] == "done" and body["finished_at"]
    assert body["progress"] | {} == {
        "queued": 0,
        "sending": 0,
        "sent": 3,
        "failed": 0,
        "cancelled": 0,
        "held": 0,
        "pending": 0,
        "skipped": 1,
        "percent": 100,
    }
    listing = api.get(api_url("broadcast-list")).json()
    assert [row["id"] for row in listing["results"]] == [broadcast.pk]
    assert listing["results"][0]["progress"]["sent"] == 3


def test_api_cancels_and_refuses_to_cancel_a_finished_broadcast(
    api, rooms, django_capture_on_commit_callbacks
):
    broadcast = services.broadcast_create(rooms=[r.pk for r in rooms[:2]], type="text", data="hi")
    response = api.post(api_url("broadcast-cancel", pk=broadcast.pk))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["progress"]["cancelled"] == 2

    done = services.broadcast_create(rooms=[rooms[0].pk], type="text", data="again")
    drain_all(django_capture_on_commit_callbacks)
    refused = api.post(api_url("broadcast-cancel", pk=done.pk))
    assert refused.status_code == 400
    assert "status" in refused.json()["errors"]


def test_api_unknown_broadcast_is_a_json_404(api):
    for response in (
        api.get(api_url("broadcast-detail", pk=987654)),
        api.post(api_url("broadcast-cancel", pk=987654)),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "No such broadcast."}


def test_api_broadcasts_count_as_writes_for_throttling(api, rooms, settings):
    settings.RCHAT = {**settings.RCHAT, "API_THROTTLE_RATES": {"user": None, "write": "1/minute"}}
    body = {"type": "text", "data": "hi", "rooms": [rooms[0].pk]}
    assert api.post(api_url("broadcast-list"), body, format="json").status_code == 201
    assert api.post(api_url("broadcast-list"), body, format="json").status_code == 429
    assert api.get(api_url("broadcast-list")).status_code == 200, "reading is not a write"


def test_api_schema_documents_the_broadcast_endpoints(api):
    document = api.get(api_url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/rchat/api/broadcasts/"])
    assert "get" in paths["/rchat/api/broadcasts/{id}/"]
    assert "post" in paths["/rchat/api/broadcasts/{id}/cancel/"]
    components = document["components"]["schemas"]
    assert {"rooms", "filter", "type", "data"} <= set(components["BroadcastCreate"]["properties"])
    assert set(components["BroadcastProgress"]["properties"]) == {
        "queued",
        "sending",
        "sent",
        "failed",
        "cancelled",
        "held",
        "pending",
        "skipped",
        "percent",
    }


# --- The command ---------------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("rchat_broadcast", *args, stdout=out)
    return out.getvalue()


def test_command_queues_to_rooms_by_id_and_prints_a_summary(rooms):
    output = run("--room-ids", ",".join(str(r.pk) for r in rooms), "--text", "Sale!")
    broadcast = Broadcast.objects.get()
    assert f"Queued broadcast #{broadcast.pk} to 3 chat rooms." in output
    assert "skipped 1: the chat room is closed" in output
    assert (
        f"Broadcast #{broadcast.pk}: sent 0, failed 0, skipped 1, cancelled 0 (still to send: 3)."
        in output
    )
    assert "queued 4 of 4 chat rooms" in output


def test_command_selects_the_open_rooms_of_a_credential_or_channel(rooms):
    ChatRoomFactory(chat_id="elsewhere")
    line = ChatRoomFactory(credential=rooms[0].credential, channel="line", chat_id="line-1")
    run(
        "--credential",
        "shop",
        "--type",
        "location",
        "--data",
        '{"latitude": 13.7, "longitude": 100.5}',
    )
    assert Broadcast.objects.get().rooms_total == 4
    run("--channel", "line", "--text", "for LINE")
    assert list(Broadcast.objects.get(text="for LINE").messages.values_list("room", flat=True)) == [
        line.pk
    ]


def test_command_dry_run_counts_and_queues_nothing(rooms):
    output = run("--room-ids", f"{rooms[0].pk},{rooms[3].pk},987654", "--text", "hi", "--dry-run")
    assert "1 of 3 chat rooms would get the message (skipped: 1 closed, 1 not found)" in output
    assert not Broadcast.objects.exists() and not Message.objects.exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--text", "hi"], "Choose the chat rooms"),
        (["--all-open"], "Give the message"),
        (["--all-open", "--room-ids", "1", "--text", "hi"], "cannot be combined"),
        (["--room-ids", "1,x", "--text", "hi"], "separated by commas"),
        (["--credential", "nobody", "--text", "hi"], "No credential named nobody"),
        (["--all-open", "--text", "hi", "--data", "x"], "not both"),
        (["--all-open", "--type", "location", "--data", "{bad"], "must be JSON"),
        (["--all-open", "--text", "   "], "empty"),
        (["--all-open", "--text", "hi", "--dry-run", "--channel", "facebook"], "No chat room"),
        (["--cancel", "987654"], "No broadcast #987654"),
        (["--all-open", "--text", "hi", "--wait", "--timeout", "0"], "--timeout"),
    ],
)
def test_command_bad_input_is_a_one_line_error_and_queues_nothing(rooms, args, reason):
    with pytest.raises(CommandError, match=reason) as caught:
        run(*args)
    assert "\n" not in str(caught.value)
    assert caught.value.returncode == 1
    assert not Broadcast.objects.exists()


def test_command_exits_non_zero_with_one_line_on_stderr(rooms, capsys):
    with pytest.raises(SystemExit) as exit_:
        rchat_broadcast.Command().run_from_argv(["manage.py", "rchat_broadcast", "--text", "hi"])
    assert exit_.value.code == 1
    # (System check warnings, if any, come first.)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("CommandError: Choose the chat rooms")


def test_command_waits_until_everything_is_sent(
    rooms, httpserver, monkeypatch, django_capture_on_commit_callbacks
):
    # The wait's pause runs a batch of the real drain: the worker, in this process.
    monkeypatch.setattr(
        rchat_broadcast, "_pause", lambda seconds: drain(django_capture_on_commit_callbacks)
    )

    output = run("--all-open", "--text", "hi", "--wait")

    pk = Broadcast.objects.get().pk
    assert "sent 0, failed 0, to send 3, cancelled 0" in output
    assert output.rstrip().endswith(f"Broadcast #{pk}: sent 3, failed 0, skipped 0, cancelled 0.")
    assert Broadcast.objects.get().status == "done"


def test_command_ctrl_c_while_waiting_leaves_the_broadcast_going(rooms, monkeypatch):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(rchat_broadcast, "_pause", interrupt)
    with pytest.raises(CommandError, match="goes on") as caught:
        run("--all-open", "--text", "hi", "--wait")
    assert caught.value.returncode == 130
    assert Broadcast.objects.get().status == "sending"
    assert Message.objects.filter(status="queued").count() == 3


def test_command_stops_waiting_for_messages_held_by_a_refused_credential(rooms):
    Credential.objects.filter(pk=rooms[0].credential_id).update(status=Credential.Status.INVALID)
    with pytest.raises(CommandError, match="refused") as caught:
        run("--all-open", "--text", "hi", "--wait")
    assert "still to send: 3" in str(caught.value)


def test_command_cancels_and_shows_a_broadcast(rooms):
    broadcast = services.broadcast_create(rooms=[r.pk for r in rooms], type="text", data="hi")

    output = run("--cancel", str(broadcast.pk))

    assert f"Broadcast #{broadcast.pk} cancelled: 3 messages will not be sent." in output
    assert f"Broadcast #{broadcast.pk}: sent 0, failed 0, skipped 1, cancelled 3." in output
    assert run("--status", str(broadcast.pk)).strip() == (
        f"Broadcast #{broadcast.pk}: sent 0, failed 0, skipped 1, cancelled 3."
    )
    assert "Broadcast #" in run("--cancel", str(broadcast.pk)), "again: nothing more to do"
