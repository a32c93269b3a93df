"""The REST API: auth, permissions, lists, replies, actions, throttling, schema."""

import jsonschema
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from rchat.models import AutoReply, ChatRoom, Handover, Message
from tests.factories import (
    ChatRoomFactory,
    CredentialFactory,
    MessageFactory,
    UserFactory,
    user_with,
)

pytestmark = pytest.mark.django_db


def token_client(user):
    """A client that authenticates the way a bot does: Authorization: Token <key>."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def bot():
    return user_with()


@pytest.fixture
def api(bot):
    return token_client(bot)


def url(name, **kwargs):
    return reverse(f"rchat:api:{name}", kwargs=kwargs)


# --- Authentication and permissions -----------------------------------------------------


def test_without_credentials_the_api_answers_401_in_json():
    """No session and no token: 401 with a JSON reason, not a login page redirect."""
    response = APIClient().get(url("room-list"))
    assert response.status_code == 401
    assert "detail" in response.json()


def test_a_wrong_token_is_refused():
    """An unknown token is a 401."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(url("room-list")).status_code == 401


def test_session_authentication_works(client):
    """An agent logged in to the site can call the API from the browser."""
    client.force_login(user_with("view_chatroom"))
    ChatRoomFactory(display_name="Session Room")
    response = client.get(url("room-list"))
    assert response.status_code == 200
    assert response.json()["results"][0]["display_name"] == "Session Room"


def test_user_without_view_permission_gets_403():
    """Authenticated but without rchat.view_chatroom: 403."""
    client = token_client(user_with("add_credential"))
    assert client.get(url("room-list")).status_code == 403


def test_viewer_cannot_reply_or_change_rooms():
    """With view_chatroom only, every POST is refused and nothing changes."""
    client = token_client(user_with("view_chatroom"))
    room = ChatRoomFactory()
    assert client.get(url("room-detail", pk=room.pk)).status_code == 200
    reply = client.post(
        url("room-messages", pk=room.pk), {"type": "text", "data": "hi"}, format="json"
    )
    assert reply.status_code == 403
    for action in ("room-assign", "room-close", "room-reopen"):
        assert client.post(url(action, pk=room.pk)).status_code == 403
    assert not Message.objects.exists()
    room.refresh_from_db()
    assert room.status == "open" and room.assignee is None


# --- Reading ---------------------------------------------------------------------------


def test_room_list_filters_like_the_inbox(api, bot):
    """view, status, q, credential and chat_id filter the room list."""
    shop = CredentialFactory(name="shop-a")
    mine = ChatRoomFactory(credential=shop, chat_id="c-1", display_name="Mine", assignee=bot)
    free = ChatRoomFactory(chat_id="c-2", display_name="Free")
    closed = ChatRoomFactory(chat_id="c-3", display_name="Closed", status="closed")
    MessageFactory(room=free, data="where is my parcel", text="where is my parcel")

    def ids(**params):
        return {row["id"] for row in api.get(url("room-list"), params).json()["results"]}

    assert ids() == {mine.pk, free.pk}
    assert ids(view="mine") == {mine.pk}
    assert ids(view="unassigned") == {free.pk}
    assert ids(status="closed") == {closed.pk}
    assert ids(status="all") == {mine.pk, free.pk, closed.pk}
    assert ids(q="parcel") == {free.pk}
    assert ids(credential="shop-a") == {mine.pk}
    assert ids(chat_id="c-2") == {free.pk}


def test_room_list_shows_what_an_inbox_needs(api, bot):
    """A room carries its credential name, assignee, unread count and preview."""
    room = ChatRoomFactory(assignee=bot, unread_count=2, last_message_preview="Hello?")
    row = api.get(url("room-list")).json()["results"][0]
    assert row["id"] == room.pk
    assert row["credential"] == room.credential.name
    assert row["assignee"] == {"id": bot.pk, "username": bot.username}
    assert (row["unread_count"], row["last_message_preview"]) == (2, "Hello?")
    assert "token" not in str(row).lower()


def test_bad_filter_is_a_400_with_reason(api):
    """An unknown view or status is refused with the field and the reason."""
    response = api.get(url("room-list"), {"view": "everything"})
    assert response.status_code == 400
    body = response.json()
    assert "view" in body["errors"] and body["detail"]


def test_unknown_room_is_404(api):
    assert api.get(url("room-detail", pk=424242)).status_code == 404
    assert api.get(url("room-messages", pk=424242)).status_code == 404


def test_messages_are_paged_newest_first_with_a_cursor(api):
    """The message list pages with a cursor, newest first, and reaches every message."""
    room = ChatRoomFactory()
    created = [MessageFactory(room=room).pk for _ in range(7)]
    MessageFactory()  # another room's message never shows up
    seen, page = [], api.get(url("room-messages", pk=room.pk), {"page_size": 3}).json()
    while True:
        seen += [row["id"] for row in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert seen == sorted(created, reverse=True)


# --- Replying --------------------------------------------------------------------------


def test_post_a_reply_queues_it(api, bot):
    """A valid reply is stored queued, authored by the caller, and returned with 201."""
    room = ChatRoomFactory()
    response = api.post(
        url("room-messages", pk=room.pk), {"type": "text", "data": "Thank you!"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["direction"], body["data"]) == ("queued", "out", "Thank you!")
    message = Message.objects.get(pk=body["id"])
    assert message.author == bot and message.room == room


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "text", "data": ""}, "data"),
        ({"type": "text", "data": "x" * 5001}, "data"),
        ({"type": "image", "data": "not-a-url"}, "url"),
        ({"type": "file", "data": {"url": "javascript:alert(1)"}}, "url"),
        ({"type": "sticker", "data": {"package_id": "1"}}, "sticker_id"),
        ({"type": "location", "data": {"latitude": 1, "longitude": 2, "title": "a\x00"}}, "data"),
        ({"type": "hologram", "data": "x"}, "type"),
        ({"data": "no type"}, "type"),
        ({"type": "text"}, "data"),
    ],
)
def test_bad_reply_is_a_400_with_errors_and_nothing_queued(api, payload, field):
    """Bad input gets {"detail", "errors": {field: reason}} and queues nothing."""
    room = ChatRoomFactory()
    response = api.post(url("room-messages", pk=room.pk), payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] and field in body["errors"], body
    assert not Message.objects.exists()


def test_reply_to_a_closed_room_is_a_400(api):
    """A closed room takes no reply until it is reopened."""
    room = ChatRoomFactory(status=ChatRoom.Status.CLOSED)
    response = api.post(
        url("room-messages", pk=room.pk), {"type": "text", "data": "hello"}, format="json"
    )
    assert response.status_code == 400
    assert "room" in response.json()["errors"]
    assert not Message.objects.exists()


def test_malformed_json_is_a_400(api):
    room = ChatRoomFactory()
    response = api.post(
        url("room-messages", pk=room.pk), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] and response.json()["errors"] == {}
    assert not Message.objects.exists()


def test_retry_a_failed_reply(api):
    """Retry puts a failed reply back in the queue; a message of another room is 404."""
    room = ChatRoomFactory()
    failed = MessageFactory(room=room, direction="out", status="failed")
    other = MessageFactory(direction="out", status="failed")
    assert api.post(url("message-retry", pk=room.pk, message_pk=other.pk)).status_code == 404
    response = api.post(url("message-retry", pk=room.pk, message_pk=failed.pk))
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    again = api.post(url("message-retry", pk=room.pk, message_pk=failed.pk))
    assert again.status_code == 400 and "status" in again.json()["errors"]


# --- Actions ---------------------------------------------------------------------------


def test_assign_to_self_to_another_agent_and_to_nobody(api, bot):
    room = ChatRoomFactory()
    colleague = user_with("view_chatroom")
    response = api.post(url("room-assign", pk=room.pk), {}, format="json")
    assert response.status_code == 200 and response.json()["assignee"]["id"] == bot.pk
    api.post(url("room-assign", pk=room.pk), {"assignee": colleague.pk}, format="json")
    room.refresh_from_db()
    assert room.assignee == colleague
    api.post(url("room-assign", pk=room.pk), {"assignee": None}, format="json")
    room.refresh_from_db()
    assert room.assignee is None


def test_assign_to_someone_who_cannot_see_rooms_is_refused(api):
    """Rooms go only to users who can see them; unknown users are refused too."""
    room = ChatRoomFactory()
    outsider = UserFactory()
    for assignee in (outsider.pk, 987654):
        response = api.post(url("room-assign", pk=room.pk), {"assignee": assignee}, format="json")
        assert response.status_code == 400 and "assignee" in response.json()["errors"]
    room.refresh_from_db()
    assert room.assignee is None


def test_close_reopen_and_mark_read(api):
    room = ChatRoomFactory(unread_count=5)
    assert api.post(url("room-close", pk=room.pk)).json()["status"] == "closed"
    assert api.post(url("room-reopen", pk=room.pk)).json()["status"] == "open"
    assert api.post(url("room-read", pk=room.pk)).json()["unread_count"] == 0


# --- Throttling, host defaults, schema --------------------------------------------------


def test_user_rate_limit_answers_429(api, settings):
    """Past RCHAT["API_THROTTLE_RATES"]["user"] a user gets 429 with Retry-After."""
    settings.RCHAT = {**settings.RCHAT, "API_THROTTLE_RATES": {"user": "3/minute", "write": None}}
    statuses = [api.get(url("room-list")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert api.get(url("room-list")).has_header("Retry-After")


def test_rate_limits_count_in_the_cache_throttle_cache_names(api, bot, settings, tmp_path):
    """The count lives in RCHAT["THROTTLE_CACHE"], which every process can share."""
    from django.core.cache import caches

    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "throttle"),
        },
    }
    settings.RCHAT = {
        **settings.RCHAT,
        "API_THROTTLE_RATES": {"user": "3/minute", "write": None},
        "THROTTLE_CACHE": "shared",
    }

    statuses = [api.get(url("room-list")).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    # The count is in the named cache (DRF's key: the scope and the user's id).
    assert len(caches["shared"].get(f"throttle_rchat_{bot.pk}")) == 3
    assert caches["default"].get(f"throttle_rchat_{bot.pk}") is None


def test_write_rate_limit_counts_only_changes(api, settings):
    """The write limit stops replies but leaves reading alone."""
    settings.RCHAT = {**settings.RCHAT, "API_THROTTLE_RATES": {"user": None, "write": "1/minute"}}
    room = ChatRoomFactory()
    send = url("room-messages", pk=room.pk)
    assert api.post(send, {"type": "text", "data": "one"}, format="json").status_code == 201
    assert api.post(send, {"type": "text", "data": "two"}, format="json").status_code == 429
    assert api.get(send).status_code == 200
    assert Message.objects.count() == 1


def test_host_rest_framework_defaults_do_not_change_the_api(settings, api):
    """A site whose DRF defaults deny everything and paginate oddly still gets rchat's API."""
    settings.REST_FRAMEWORK = {
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
        "PAGE_SIZE": 1,
    }
    ChatRoomFactory.create_batch(2)
    response = api.get(url("room-list"))
    assert response.status_code == 200
    assert len(response.json()["results"]) == 2 and "count" in response.json()


def test_openapi_schema_lists_rchat_endpoints(api):
    """The schema describes rchat's API and its webhook (and nothing else of the site)."""
    response = api.get(url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/rchat/api/rooms/" in paths
    assert "post" in paths["/rchat/api/rooms/{id}/messages/"]
    assert [path for path in paths if "webhook" in path] == [
        "/rchat/webhook/",
        "/rchat/webhook/{key}/",
    ]


GOOD_REPLIES = [
    {"type": "text", "data": "ขอบคุณค่ะ 🙏"},
    {"type": "text", "data": "สวัสดีค่ะ", "sender": "person"},
    {"type": "image", "data": "https://example.com/a.png"},
    {"type": "image", "data": {"url": "https://example.com/a.png", "preview": "x"}},
    {"type": "file", "data": {"url": "http://example.com/a.pdf", "name": "a.pdf"}},
    {"type": "sticker", "data": {"package_id": 11537, "sticker_id": "52002734"}},
    {"type": "location", "data": {"latitude": 13.75, "longitude": 100.5, "title": "BKK"}},
]
BAD_REPLIES = [
    {"type": "text", "data": ""},
    {"type": "text", "data": " \n\t "},
    {"type": "image", "data": "not-a-url"},
    {"type": "file", "data": {"url": "javascript:alert(1)"}},
    {"type": "file", "data": {"name": "no url"}},
    {"type": "sticker", "data": {"package_id": "1"}},
    {"type": "location", "data": {"latitude": 91, "longitude": 0}},
    {"type": "location", "data": {"latitude": 0}},
    {"type": "hologram", "data": "x"},
    {"type": "text", "data": "hello", "sender": "robot"},
]


@pytest.fixture
def reply_schema(api):
    document = api.get(url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = document["paths"]["/rchat/api/rooms/{id}/messages/"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


@pytest.mark.parametrize("payload", GOOD_REPLIES, ids=lambda p: p["type"])
def test_a_reply_the_schema_documents_is_accepted(api, reply_schema, payload):
    """The schema describes each type's data, and what it describes is queued."""
    assert list(reply_schema.iter_errors(payload)) == []
    response = api.post(url("room-messages", pk=ChatRoomFactory().pk), payload, format="json")
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("payload", BAD_REPLIES, ids=lambda p: p["type"])
def test_a_reply_the_api_refuses_does_not_match_the_schema(api, reply_schema, payload):
    """The schema is no looser than the API: a client checking against it learns early."""
    assert list(reply_schema.iter_errors(payload)) != []
    response = api.post(url("room-messages", pk=ChatRoomFactory().pk), payload, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"detail", "errors"}


def test_docs_page_uses_local_swagger_files(client):
    """The API docs page loads Swagger UI from the site's static files, not a CDN."""
    client.force_login(user_with("view_chatroom"))
    response = client.get(url("docs"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr" not in page


# --- Who handles a room: the bot or people -----------------------------------------------


def test_rooms_say_who_handles_them_and_the_list_filters_by_it(api):
    """handler, handler_since and handover_reason are shown; ?handler= filters."""
    bot_room = ChatRoomFactory(handler="bot")
    people_room = ChatRoomFactory(handler="people", handover_reason="A person took over")

    def rows(**params):
        return {row["id"]: row for row in api.get(url("room-list"), params).json()["results"]}

    assert set(rows()) == {bot_room.pk, people_room.pk}
    assert set(rows(handler="bot")) == {bot_room.pk}
    assert set(rows(handler="people")) == {people_room.pk}
    assert set(rows(handler="")) == {bot_room.pk, people_room.pk}
    shown = rows()[people_room.pk]
    assert (shown["handler"], shown["handover_reason"]) == ("people", "A person took over")
    assert "handler_since" in shown


def test_a_bad_handler_filter_is_a_400_with_reason(api):
    response = api.get(url("room-list"), {"handler": "robots"})
    assert response.status_code == 400
    assert response.json()["detail"] and "handler" in response.json()["errors"]


def test_take_over_gives_a_bot_room_to_the_caller(api, bot):
    """The caller takes the room: people handle it, and it is theirs if nobody had it."""
    room = ChatRoomFactory(handler="bot")

    response = api.post(url("room-take-over", pk=room.pk))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["handler"], body["assignee"]["id"]) == ("people", bot.pk)
    assert body["handler_since"] and body["handover_reason"]
    handover = Handover.objects.get(room=room)
    assert (handover.to, handover.reason, handover.by) == ("people", "taken", bot)


def test_take_over_of_a_closed_room_is_a_400(api):
    room = ChatRoomFactory(handler="bot", status="closed")
    response = api.post(url("room-take-over", pk=room.pk))
    assert response.status_code == 400 and "room" in response.json()["errors"]


def test_return_to_bot(api, bot):
    room = ChatRoomFactory(handler="people", handover_reason="A person took over")

    response = api.post(url("room-return-to-bot", pk=room.pk))

    assert response.status_code == 200
    assert (response.json()["handler"], response.json()["handover_reason"]) == ("bot", "")
    assert Handover.objects.get(room=room).by == bot


def test_a_bot_hands_a_room_over_with_its_reason(api, bot):
    """The reason is kept as the hand-over's detail; the room stays unassigned."""
    room = ChatRoomFactory(handler="bot")
    reason = "ลูกค้าขอใบเสนอราคา (asks for a quote)"

    response = api.post(url("room-hand-over", pk=room.pk), {"reason": reason}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["handler"], body["assignee"]) == ("people", None)
    assert reason in body["handover_reason"]
    handover = Handover.objects.get(room=room)
    assert (handover.reason, handover.detail, handover.by) == (Handover.Reason.BOT, reason, bot)


def test_hand_over_without_a_reason(api):
    room = ChatRoomFactory(handler="bot")
    assert api.post(url("room-hand-over", pk=room.pk)).json()["handler"] == "people"
    assert Handover.objects.get(room=room).detail == ""


def test_a_hand_over_reason_over_300_characters_is_a_400(api):
    room = ChatRoomFactory(handler="bot")
    response = api.post(url("room-hand-over", pk=room.pk), {"reason": "x" * 301}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    room.refresh_from_db()
    assert room.handler == "bot" and not Handover.objects.exists()


def test_a_viewer_cannot_change_who_handles_a_room():
    client = token_client(user_with("view_chatroom"))
    room = ChatRoomFactory(handler="bot")
    for action in ("room-take-over", "room-hand-over", "room-return-to-bot"):
        assert client.post(url(action, pk=room.pk)).status_code == 403
    room.refresh_from_db()
    assert room.handler == "bot" and not Handover.objects.exists()


def test_handler_changes_count_as_writes(api, settings):
    settings.RCHAT = {**settings.RCHAT, "API_THROTTLE_RATES": {"user": None, "write": "2/minute"}}
    room = ChatRoomFactory(handler="bot")
    assert api.post(url("room-take-over", pk=room.pk)).status_code == 200
    assert api.post(url("room-return-to-bot", pk=room.pk)).status_code == 200
    assert api.post(url("room-hand-over", pk=room.pk)).status_code == 429


def test_a_bot_reply_to_a_room_the_bot_handles_is_queued_as_the_bots(api, bot):
    room = ChatRoomFactory(handler="bot")

    response = api.post(
        url("room-messages", pk=room.pk),
        {"type": "text", "data": "ยินดีต้อนรับค่ะ", "sender": "bot"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert (response.json()["sender"], response.json()["rule"]) == ("bot", None)
    message = Message.objects.get()
    assert (message.sender, message.author) == ("bot", bot)
    room.refresh_from_db()
    assert room.handler == "bot"


def test_a_bot_reply_to_a_room_people_handle_is_a_409_and_nothing_is_queued(api):
    """People took the room: the bot is told so by the status, with the reason."""
    room = ChatRoomFactory(handler="people")

    response = api.post(
        url("room-messages", pk=room.pk),
        {"type": "text", "data": "hi", "sender": "bot"},
        format="json",
    )

    body = _json_error(response, 409)
    assert body["detail"] and set(body["errors"]) == {"sender"}
    assert not Message.objects.exists()


def test_a_persons_reply_takes_a_bot_room_over(api, bot):
    room = ChatRoomFactory(handler="bot")
    response = api.post(
        url("room-messages", pk=room.pk), {"type": "text", "data": "ครับ"}, format="json"
    )
    assert response.status_code == 201 and response.json()["sender"] == "person"
    room.refresh_from_db()
    assert (room.handler, room.assignee) == ("people", bot)


def test_an_unknown_sender_is_a_400_and_nothing_is_queued(api):
    room = ChatRoomFactory(handler="bot")
    for sender in ("rule", "robot", ""):
        response = api.post(
            url("room-messages", pk=room.pk),
            {"type": "text", "data": "hi", "sender": sender},
            format="json",
        )
        assert response.status_code == 400 and "sender" in response.json()["errors"], sender
    assert not Message.objects.exists()


def test_messages_show_who_wrote_them(api):
    room = ChatRoomFactory(handler="bot")
    rule = AutoReply.objects.create(name="hours", match="เปิดกี่โมง", reply_data="9:00-18:00")
    MessageFactory(room=room)
    MessageFactory(room=room, direction="out", sender="rule", rule=rule)
    MessageFactory(room=room, direction="out", sender="bot")
    rows = api.get(url("room-messages", pk=room.pk)).json()["results"]
    assert [(row["sender"], row["rule"]) for row in rows] == [
        ("bot", None),
        ("rule", rule.pk),
        ("", None),
    ]


# --- Answers match the schema ----------------------------------------------------------


def _as_json_schema(node):
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema terms (jsonschema ignores it)."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture
def answer_schema(api):
    """``check(response, path, method)``: the response's body matches what the schema
    documents for that path, method and status."""
    document = api.get(url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = _as_json_schema(document["components"])

    def check(response, path, method):
        operation = document["paths"][path][method]
        documented = operation["responses"][str(response.status_code)]
        schema = _as_json_schema(documented["content"]["application/json"]["schema"])
        validator = jsonschema.Draft202012Validator({**schema, "components": components})
        errors = [error.message for error in validator.iter_errors(response.json())]
        assert errors == [], (path, method, response.status_code, errors)

    return check


def test_the_schema_documents_who_handles_a_room(api):
    paths = api.get(url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for action in ("take-over", "return-to-bot", "hand-over"):
        assert "post" in paths[f"/rchat/api/rooms/{{id}}/{action}/"]
    replies = paths["/rchat/api/rooms/{id}/messages/"]["post"]["responses"]
    assert {"201", "400", "409"} <= set(replies)
    filters = paths["/rchat/api/rooms/"]["get"]["parameters"]
    assert any(each["name"] == "handler" for each in filters)


def test_answers_about_who_handles_a_room_match_the_schema(api, answer_schema):
    """Room lists and details, the three actions, a bot's reply (201 and 409), a bad
    sender and a bad hand-over: each body is what the schema says."""
    room = ChatRoomFactory(handler="bot")
    rooms, one = "/rchat/api/rooms/", "/rchat/api/rooms/{id}/"
    messages = "/rchat/api/rooms/{id}/messages/"
    answer_schema(api.get(url("room-list")), rooms, "get")
    answer_schema(api.get(url("room-detail", pk=room.pk)), one, "get")
    sent = api.post(
        url("room-messages", pk=room.pk),
        {"type": "text", "data": "hi", "sender": "bot"},
        format="json",
    )
    answer_schema(sent, messages, "post")
    bad = api.post(
        url("room-messages", pk=room.pk),
        {"type": "text", "data": "x", "sender": "x"},
        format="json",
    )
    answer_schema(bad, messages, "post")
    answer_schema(api.get(url("room-messages", pk=room.pk)), messages, "get")
    handed = api.post(url("room-hand-over", pk=room.pk), {"reason": "quote"}, format="json")
    answer_schema(handed, "/rchat/api/rooms/{id}/hand-over/", "post")
    refused = api.post(
        url("room-messages", pk=room.pk),
        {"type": "text", "data": "hi", "sender": "bot"},
        format="json",
    )
    assert refused.status_code == 409
    answer_schema(refused, messages, "post")
    returned = api.post(url("room-return-to-bot", pk=room.pk))
    answer_schema(returned, "/rchat/api/rooms/{id}/return-to-bot/", "post")
    taken = api.post(url("room-take-over", pk=room.pk))
    answer_schema(taken, "/rchat/api/rooms/{id}/take-over/", "post")
    too_long = api.post(url("room-hand-over", pk=room.pk), {"reason": "x" * 301}, format="json")
    answer_schema(too_long, "/rchat/api/rooms/{id}/hand-over/", "post")
    answer_schema(api.get(url("room-list"), {"handler": "x"}), rooms, "get")


# --- Fixed number of queries -----------------------------------------------------------


def _fill(rooms, messages, user):
    room = None
    for index in range(rooms):
        room = ChatRoomFactory(assignee=user if index % 2 else None)
        MessageFactory.create_batch(messages, room=room, direction="out", author=user)
    return room


@pytest.mark.parametrize("endpoint", ["room-list", "room-messages", "room-detail"])
def test_api_lists_run_the_same_queries_for_5_or_50_rooms(endpoint):
    """Room and message lists cost a fixed number of queries, whatever the volume."""
    counts = []
    for rooms, messages in ((5, 2), (50, 20)):
        Message.objects.all().delete()
        ChatRoom.objects.all().delete()
        user = user_with()
        client = token_client(user)
        room = _fill(rooms, messages, user)
        target = url(endpoint) if endpoint == "room-list" else url(endpoint, pk=room.pk)
        cache.clear()
        with CaptureQueriesContext(connection) as queries:
            assert client.get(target).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# --- Every error in JSON ---------------------------------------------------------------


def _json_error(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return response.json()


def test_a_body_over_the_sites_upload_limit_is_a_json_413(api, client, bot):
    room = ChatRoomFactory()
    big = "x" * 3_000_000

    as_json = api.post(
        url("room-messages", pk=room.pk), {"type": "text", "data": big}, format="json"
    )
    client.force_login(bot)
    as_form = client.post(url("room-messages", pk=room.pk), {"type": "text", "data": big})

    assert _json_error(as_json, 413)["detail"] == "The request body is too large."
    assert _json_error(as_form, 413)["errors"] == {}
    assert not Message.objects.exists()


def test_json_nested_deeper_than_pythons_parser_goes_is_a_json_400(api):
    room = ChatRoomFactory()
    deep = '{"type": "location", "data": ' + "[" * 50_000 + "]" * 50_000 + "}"

    response = api.post(url("room-messages", pk=room.pk), deep, content_type="application/json")

    assert "nested too deep" in _json_error(response, 400)["detail"]


def test_data_nested_deeper_than_rchat_stores_is_a_400_on_data(api):
    room = ChatRoomFactory()
    deep = {"type": "location", "data": {"latitude": 1, "longitude": 2, "x": [[[[[]]]]]}}
    for _ in range(250):
        deep["data"]["x"] = [deep["data"]["x"]]

    response = api.post(url("room-messages", pk=room.pk), deep, format="json")

    assert "levels deep" in _json_error(response, 400)["errors"]["data"]


def test_an_unknown_url_under_the_api_is_a_json_404(api):
    response = api.get("/rchat/api/no/such/thing/")

    assert _json_error(response, 404) == {"detail": "No such API endpoint."}


@pytest.mark.postgres
def test_with_the_database_out_of_reach_the_api_answers_503_in_json(tmp_path):
    """A real server whose database does not answer: 503 with Retry-After, not an HTML 500."""
    import requests

    from bench.common import free_port, gunicorn

    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    # The project's settings and logging (not bench's), with DEBUG off as in production.
    site = {"DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "0"}
    with gunicorn(
        unreachable, "memory://", workers=1, threads=1, log_dir=tmp_path, env_extra=site
    ) as server:
        response = requests.get(
            server.url + "/rchat/api/rooms/",
            headers={"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"},
            timeout=30,
        )
    log = server.log.read_text()

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "The service is unavailable just now; try again shortly."}
    # Logged once, with its traceback, by Django's own request logger.
    assert log.count("Service Unavailable: /rchat/api/rooms/") == 1
    assert "Traceback (most recent call last)" in log and "OperationalError" in log
