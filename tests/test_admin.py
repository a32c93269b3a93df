"""Operators' admin: every page renders with realistic data in a fixed number of queries,
replies reach R-Chat, permissions separate reading from replying, and Thai works."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format

from rchat import services
from rchat.conf import get_setting
from rchat.models import (
    AutoReply,
    ChatRoom,
    Credential,
    DeliveryAttempt,
    ErrorKind,
    Handover,
    Message,
    WebhookEvent,
)
from tests.factories import (
    ChatRoomFactory,
    CredentialFactory,
    MessageFactory,
    UserFactory,
    user_with,
)

pytestmark = pytest.mark.django_db


def _staff_with(client, *codenames):
    user = user_with(*codenames, username="viewer")
    client.force_login(user)
    return user


def _room_with_thread(credential=None, *, messages=3):
    room = ChatRoomFactory(credential=credential or CredentialFactory(), display_name="Somchai")
    for n in range(messages):
        MessageFactory(room=room, data=f"hello {n}", text=f"hello {n}")
    return room


def _count_queries(client, url):
    # A first request fills per-process caches (content types, permissions).
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(queries)


def _seed(rooms, messages_per_room):
    """Rooms with messages, failed attempts and webhook events, in a few bulk inserts."""
    credential = CredentialFactory()
    user = UserFactory()
    made = ChatRoom.objects.bulk_create(
        ChatRoomFactory.build(credential=credential, assignee=user if n % 2 else None)
        for n in range(rooms)
    )
    messages = Message.objects.bulk_create(
        MessageFactory.build(
            room=room,
            direction="out" if m % 2 else "in",
            status="failed" if m % 2 else "received",
            attempts=m % 3,
            last_error="R-Chat answered HTTP 500" if m % 2 else "",
        )
        for room in made
        for m in range(messages_per_room)
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            message=message, started_at=timezone.now(), outcome="failed", http_status=500
        )
        for message in messages
        if message.direction == "out"
    )
    WebhookEvent.objects.bulk_create(
        WebhookEvent(
            credential=credential, headers={"Content-Type": "application/json"}, body=b"{}"
        )
        for _ in made
    )


# --- query counts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:rchat_chatroom_changelist",
        "admin:rchat_message_changelist",
        "admin:rchat_webhookevent_changelist",
        "admin:rchat_credential_changelist",
        "admin:rchat_overview",
        "admin:app_list",
    ],
)
def test_list_pages_run_the_same_number_of_queries_for_few_and_many_rows(
    client, operator, url_name
):
    """A list page costs as many queries with 40 rooms of 6 messages as with 2 of 2."""
    url = reverse(url_name, kwargs={"app_label": "rchat"} if url_name == "admin:app_list" else {})
    _seed(rooms=2, messages_per_room=2)
    few = _count_queries(client, url)
    _seed(rooms=40, messages_per_room=6)
    many = _count_queries(client, url)
    assert many == few


def test_conversation_page_runs_the_same_number_of_queries_for_short_and_long_threads(
    client, operator
):
    """The chat room page costs as many queries for a thread of 2 as for one of 150."""
    short = _room_with_thread(messages=2)
    long = _room_with_thread(credential=short.credential, messages=150)
    out = MessageFactory(room=long, direction="out", status="sent", author=operator)
    few = _count_queries(client, reverse("admin:rchat_chatroom_change", args=[short.pk]))
    many = _count_queries(client, reverse("admin:rchat_chatroom_change", args=[long.pk]))
    assert many == few
    page = client.get(reverse("admin:rchat_chatroom_change", args=[long.pk])).content.decode()
    assert f"#{out.pk}" in page
    assert "All messages of this chat room" in page


def test_message_page_runs_the_same_number_of_queries_for_one_or_many_attempts(client, operator):
    """A message's page with 30 delivery attempts costs as many queries as with one."""
    few, many = MessageFactory.create_batch(2, direction="out", status="failed")
    for message, count in ((few, 1), (many, 30)):
        for _ in range(count):
            DeliveryAttempt.objects.create(
                message=message, started_at=timezone.now(), outcome="retry", http_status=503
            )
    assert _count_queries(
        client, reverse("admin:rchat_message_change", args=[many.pk])
    ) == _count_queries(client, reverse("admin:rchat_message_change", args=[few.pk]))


# --- credentials ------------------------------------------------------------------------


def test_credential_list_masks_tokens_and_offers_the_webhook_url_to_copy(client, operator):
    """Tokens appear only as their last 4 characters; the webhook URL has a Copy button."""
    credential = CredentialFactory(token="cdt_supersecretvalue1234")
    page = client.get(reverse("admin:rchat_credential_changelist")).content.decode()
    assert "cdt_supersecretvalue1234" not in page
    assert "••••1234" in page
    assert f'data-copy="{credential.webhook_url()}"' in page
    assert "https://site.example/rchat/webhook/" in page

    change = client.get(reverse("admin:rchat_credential_change", args=[credential.pk]))
    body = change.content.decode()
    assert "cdt_supersecretvalue1234" not in body
    assert credential.signature_token not in body


def test_credential_last_error_is_explained_in_plain_words(client, operator):
    """A refused token reads as advice, with R-Chat's answer below it."""
    CredentialFactory(
        status=Credential.Status.INVALID,
        last_error="R-Chat answered HTTP 401 to http://x/: the Chatday-Token ••••abcd was refused",
        last_error_kind="auth",
    )
    page = client.get(reverse("admin:rchat_credential_changelist")).content.decode()
    assert "R-Chat refused the Chatday-Token" in page
    assert "HTTP 401" in page


def test_the_advice_follows_the_kind_of_error_in_any_language(client, operator, httpserver):
    """The advice comes from what went wrong (RChatAPIError.kind), not from the wording of
    the message, so it is right in Thai too and for errors recorded in another language."""
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    httpserver.expect_request(get_setting("SEND_MESSAGE_PATH")).respond_with_json({}, status=401)
    client.post(
        reverse("admin:rchat_credential_changelist"),
        {"action": "test_connection", "_selected_action": [str(credential.pk)]},
        HTTP_ACCEPT_LANGUAGE="th",
    )
    credential.refresh_from_db()
    assert credential.last_error_kind == "auth"
    page = client.get(
        reverse("admin:rchat_credential_changelist"), HTTP_ACCEPT_LANGUAGE="th"
    ).content.decode()
    with translation.override("th"):
        advice = str(ErrorKind.AUTH.label)
    assert re.search("[\u0e00-\u0e7f]", advice)  # the Thai catalogue has it
    assert advice in page
    assert "R-Chat refused the Chatday-Token. Check it" not in page


def _run_action(client, model, action, pks):
    return client.post(
        reverse(f"admin:rchat_{model}_changelist"),
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def test_test_connection_reports_an_accepted_token_and_changes_nothing_else(
    client, operator, httpserver
):
    """R-Chat answering 400 to the empty probe means the token works; no Register call."""
    credential = CredentialFactory(
        base_url=httpserver.url_for(""), last_error="old trouble", status="invalid"
    )
    before_signature = credential.signature_token
    httpserver.expect_request(get_setting("SEND_MESSAGE_PATH"), method="POST").respond_with_json(
        {"status": "ERROR", "reason": "chat_id is required"}, status=400
    )
    response = _run_action(client, "credential", "test_connection", [credential.pk])
    assert "R-Chat accepted the Chatday-Token" in response.content.decode()
    credential.refresh_from_db()
    assert credential.last_error == ""
    assert credential.status == Credential.Status.INVALID
    assert credential.signature_token == before_signature
    assert [r.path for r, _ in httpserver.log] == [get_setting("SEND_MESSAGE_PATH")]
    assert Message.objects.count() == 0


def test_test_connection_with_a_refused_token_records_the_error_but_not_the_status(
    client, operator, httpserver
):
    """A 401 is shown and kept as the last error; the credential stays active."""
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    httpserver.expect_request(get_setting("SEND_MESSAGE_PATH")).respond_with_json(
        {"error": "bad token"}, status=401
    )
    response = _run_action(client, "credential", "test_connection", [credential.pk])
    assert "the test failed. R-Chat refused the Chatday-Token" in response.content.decode()
    credential.refresh_from_db()
    assert "401" in credential.last_error
    assert credential.status == Credential.Status.ACTIVE


def test_test_connection_to_a_wrong_path_is_a_failure(client, operator, httpserver):
    """A 404 means the base URL or path is wrong, not that the token works."""
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    httpserver.expect_request(get_setting("SEND_MESSAGE_PATH")).respond_with_data(
        "Not Found", status=404
    )
    response = _run_action(client, "credential", "test_connection", [credential.pk])
    assert "R-Chat has no such address" in response.content.decode()
    credential.refresh_from_db()
    assert "404" in credential.last_error


def test_rotate_keeps_the_previous_signature_token_for_the_grace_period(
    client, operator, httpserver
):
    """Rotate stores the new signature token and accepts the old one for a while."""
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    old = credential.signature_token
    httpserver.expect_request(get_setting("REGISTER_PATH")).respond_with_json(
        {"Chatday-Signature-Token": "sig_brand_new_token_0001"}
    )
    response = _run_action(client, "credential", "rotate", [credential.pk])
    assert "1 credential has a new signature token." in response.content.decode()
    credential.refresh_from_db()
    assert credential.signature_token == "sig_brand_new_token_0001"
    assert credential.previous_signature_token == old
    assert credential.previous_valid_until > timezone.now()


def _change_credential(client, credential, **fields):
    data = {"name": credential.name, "base_url": credential.base_url, "token": "", **fields}
    url = reverse("admin:rchat_credential_change", args=[credential.pk])
    return client.post(url, data, follow=True)


def test_a_new_token_typed_in_admin_is_saved_only_once_r_chat_accepts_it(
    client, operator, httpserver
):
    """A mistyped token never replaces a working one: R-Chat's 401 keeps the old token."""
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    working, signature = credential.token, credential.signature_token
    httpserver.expect_oneshot_request(get_setting("REGISTER_PATH")).respond_with_data(
        "bad token", status=401
    )

    page = _change_credential(client, credential, token="cdt_mistyped_token_9999").content
    assert "The new Chatday-Token was not saved" in page.decode()
    assert b"cdt_mistyped_token_9999" not in page
    credential.refresh_from_db()
    assert credential.token == working
    assert credential.signature_token == signature
    assert credential.status == Credential.Status.ACTIVE


def test_a_new_token_accepted_by_r_chat_is_saved_with_its_signature_token(
    client, operator, httpserver
):
    credential = CredentialFactory(base_url=httpserver.url_for(""))
    httpserver.expect_oneshot_request(
        get_setting("REGISTER_PATH"), headers={"Authorization": "Bearer cdt_new_token_0000042"}
    ).respond_with_json({"Chatday-Signature-Token": "sig_for_the_new_token_77"})

    page = _change_credential(client, credential, token="cdt_new_token_0000042").content
    assert "R-Chat accepted the new Chatday-Token" in page.decode()
    credential.refresh_from_db()
    assert credential.token == "cdt_new_token_0000042"
    assert credential.signature_token == "sig_for_the_new_token_77"


def test_saving_a_credential_with_the_token_left_empty_keeps_it(client, operator):
    credential = CredentialFactory(base_url="https://old.example")
    token = credential.token
    _change_credential(client, credential, base_url="https://new.example")
    credential.refresh_from_db()
    assert credential.token == token
    assert credential.base_url == "https://new.example"


def test_a_credential_added_in_admin_is_saved_through_the_service(client, operator):
    response = client.post(
        reverse("admin:rchat_credential_add"),
        {"name": "  Bangkok shop ", "base_url": "rchat.example", "token": "cdt_fresh_token_1"},
    )
    assert response.status_code == 302
    credential = Credential.objects.get()
    assert credential.name == "Bangkok shop"
    assert credential.base_url == "https://rchat.example"  # admin assumes https
    assert credential.token == "cdt_fresh_token_1"
    assert credential.status == Credential.Status.NEW


def test_a_credential_s_send_rate_is_set_in_admin_and_must_be_above_zero(client, operator):
    credential = CredentialFactory()
    url = reverse("admin:rchat_credential_change", args=[credential.pk])
    form = {"name": credential.name, "base_url": "", "token": ""}

    page = client.post(url, {**form, "send_rate": "0"}).content.decode()
    assert "The send rate must be a number of messages per second above 0." in page
    credential.refresh_from_db()
    assert credential.send_rate is None

    assert client.post(url, {**form, "send_rate": "12.5"}).status_code == 302
    credential.refresh_from_db()
    assert credential.send_rate == 12.5
    assert client.post(url, {**form, "send_rate": ""}).status_code == 302
    credential.refresh_from_db()
    assert credential.send_rate is None


def test_admin_refuses_what_the_service_refuses_as_a_form_error(client, operator):
    """A pasted token with a space in it is refused in admin as on the command line."""
    response = client.post(
        reverse("admin:rchat_credential_add"),
        {"name": "shop", "base_url": "", "token": "cdt_half of_a_token"},
    )
    assert response.status_code == 200
    assert "A Chatday-Token has no spaces in it" in response.content.decode()
    assert not Credential.objects.exists()


def test_a_credential_renamed_in_admin_keeps_its_tokens(client, operator):
    credential = CredentialFactory(name="old name")
    token, signature = credential.token, credential.signature_token
    _change_credential(client, credential, name="new name")
    credential.refresh_from_db()
    assert credential.name == "new name"
    assert (credential.token, credential.signature_token) == (token, signature)
    assert credential.status == Credential.Status.ACTIVE


# --- chat rooms -------------------------------------------------------------------------


def test_chat_room_list_shows_what_an_operator_triages_by(client, operator):
    """Credential, chat id, channel, name, status, assignee and unread count are listed."""
    room = ChatRoomFactory(
        chat_id="line-U123", channel="line", display_name="Malee", unread_count=7, assignee=operator
    )
    page = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    for shown in (room.credential.name, "line-U123", "LINE", "Malee", "Open", "boss", ">7<"):
        assert shown in page


@pytest.mark.parametrize(
    "query, found", [("line-U9", True), ("Pranee", True), ("pad thai", True), ("nothing", False)]
)
def test_chat_rooms_are_found_by_chat_id_name_and_message_text(client, operator, query, found):
    """The search box looks in chat ids, end users' names and message text."""
    room = ChatRoomFactory(chat_id="line-U9", display_name="Pranee")
    MessageFactory(room=room, data="one pad thai please", text="one pad thai please")
    MessageFactory(room=room, data="and pad thai again", text="and pad thai again")
    response = client.get(reverse("admin:rchat_chatroom_changelist"), {"q": query})
    assert (f"/{room.pk}/change/" in response.content.decode()) is found
    assert response.context["cl"].result_count == (1 if found else 0)


def test_conversation_shows_each_message_type_as_a_chat(client, operator):
    """Inbound left, outbound right; image, file, sticker and location are drawn as such."""
    room = ChatRoomFactory()
    MessageFactory(room=room, data="Where is my order?", text="Where is my order?")
    MessageFactory(room=room, type="image", data={"url": "https://cdn.example/p.jpg"})
    MessageFactory(
        room=room, type="file", data={"url": "https://cdn.example/a.pdf", "name": "a.pdf"}
    )
    MessageFactory(room=room, type="sticker", data={"package_id": "11537", "sticker_id": "52002"})
    MessageFactory(room=room, type="location", data={"latitude": 13.75, "longitude": 100.5})
    MessageFactory(room=room, type="image", data="javascript:alert(1)")
    MessageFactory(
        room=room, direction="out", status="failed", data="On its way", last_error="HTTP 500"
    )
    MessageFactory(room=room, direction="out", status="sent", data="Thanks", text="Thanks")

    page = client.get(reverse("admin:rchat_chatroom_change", args=[room.pk])).content.decode()
    # The inbox's own bubbles (rchat/_message.html): the same markup on both pages.
    assert 'rchat-msg rchat-msg-in"' in page and 'rchat-msg rchat-msg-out"' in page
    assert '<img src="https://cdn.example/p.jpg"' in page
    assert 'href="https://cdn.example/a.pdf"' in page and "📎 a.pdf</a>" in page
    assert "11537/52002" in page
    assert "openstreetmap.org/?mlat=13.75&amp;mlon=100.5" in page
    assert 'src="javascript' not in page and 'href="javascript' not in page
    assert 'rchat-status-failed" title="HTTP 500">⚠ Failed' in page
    assert 'rchat-error">HTTP 500<' in page
    assert 'rchat-status-sent">✓ Sent' in page


def test_opening_a_conversation_marks_it_read(client, operator):
    """The unread count goes back to zero when an operator opens the room."""
    room = ChatRoomFactory(unread_count=4)
    client.get(reverse("admin:rchat_chatroom_change", args=[room.pk]))
    room.refresh_from_db()
    assert room.unread_count == 0


def test_a_reply_from_the_change_page_is_queued_and_delivered_to_r_chat(
    client, operator, httpserver
):
    """The reply becomes a queued message; delivery posts it to R-Chat and marks it sent."""
    room = ChatRoomFactory(
        chat_id="web-42", credential=CredentialFactory(base_url=httpserver.url_for(""))
    )
    url = reverse("admin:rchat_chatroom_change", args=[room.pk])
    response = client.post(url, {"_reply": "Send", "reply-type": "text", "reply-text": " Hi! "})
    assert response.status_code == 302
    message = Message.objects.get(room=room)
    assert (message.direction, message.status, message.data) == ("out", "queued", "Hi!")
    assert message.author == operator

    httpserver.expect_request(
        get_setting("SEND_MESSAGE_PATH"),
        method="POST",
        json={
            "message": {"type": "text", "data": "Hi!"},
            "chat_id": "web-42",
            "idempotency_key": message.dedup_key,
            # The project names who wrote it (RCHAT["SENDER_FIELD"] = "sender").
            "sender": {"kind": "person", "name": operator.get_full_name() or "boss"},
        },
    ).respond_with_json({"status": "SUCCESS", "message_id": "m-1"})
    services.delivery_drain()
    message.refresh_from_db()
    assert message.status == "sent"
    httpserver.check_assertions()

    page = client.get(url).content.decode()
    assert "Reply queued for delivery." in page
    assert "Hi!" in page and 'rchat-status-sent">✓ Sent' in page


def test_a_location_reply_is_sent_with_its_coordinates(client, operator):
    """The reply form builds each type's data: a location gets latitude and longitude."""
    room = ChatRoomFactory()
    client.post(
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        {
            "_reply": "Send",
            "reply-type": "location",
            "reply-latitude": "13.7563",
            "reply-longitude": "100.5018",
            "reply-title": "Shop",
        },
    )
    message = Message.objects.get(room=room)
    assert message.data == {"latitude": 13.7563, "longitude": 100.5018, "title": "Shop"}


@pytest.mark.parametrize(
    "form, field_error",
    [
        ({"reply-type": "text", "reply-text": "   "}, "A text message cannot be empty."),
        (
            {"reply-type": "image", "reply-url": "ftp://x/y.png"},
            "Enter an http:// or https:// URL.",
        ),
        ({"reply-type": "location", "reply-latitude": "95"}, "Must be between -90 and 90."),
        ({"reply-type": "carrier-pigeon"}, "Select a valid choice."),
    ],
)
def test_an_empty_or_invalid_reply_shows_a_form_error_and_queues_nothing(
    client, operator, form, field_error
):
    """Bad input re-shows the page with the reason; no message is stored."""
    room = ChatRoomFactory()
    response = client.post(
        reverse("admin:rchat_chatroom_change", args=[room.pk]), {"_reply": "Send", **form}
    )
    assert response.status_code == 200
    assert field_error in response.content.decode()
    assert 'class="errorlist' in response.content.decode()
    assert Message.objects.count() == 0


def test_a_reply_to_a_closed_room_is_refused_with_a_reason(client, operator):
    """A closed room takes no reply until it is reopened."""
    room = ChatRoomFactory(status=ChatRoom.Status.CLOSED)
    response = client.post(
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        {"_reply": "Send", "reply-type": "text", "reply-text": "Hello"},
    )
    assert "This chat room is closed; reopen it to reply." in response.content.decode()
    assert Message.objects.count() == 0


def test_an_operator_without_the_reply_permission_reads_but_cannot_reply(client):
    """view_chatroom shows the conversation without a reply form; a crafted POST gets 403."""
    _staff_with(client, "view_chatroom", "view_message")
    room = _room_with_thread()
    url = reverse("admin:rchat_chatroom_change", args=[room.pk])
    page = client.get(url).content.decode()
    assert "hello 2" in page
    assert 'name="_reply"' not in page
    assert "replying needs the permission" in page

    response = client.post(url, {"_reply": "Send", "reply-type": "text", "reply-text": "sneaky"})
    assert response.status_code == 403
    assert not Message.objects.filter(direction="out").exists()


def test_an_operator_with_the_reply_permission_can_reply_without_change_rights(client):
    """Replying needs reply_chatroom, not the right to edit the room."""
    _staff_with(client, "view_chatroom", "reply_chatroom")
    room = ChatRoomFactory()
    url = reverse("admin:rchat_chatroom_change", args=[room.pk])
    assert 'name="_reply"' in client.get(url).content.decode()
    client.post(url, {"_reply": "Send", "reply-type": "text", "reply-text": "hi"})
    assert Message.objects.get(room=room).status == "queued"


def test_room_actions_close_reopen_and_assign_to_me(client, operator):
    """The list's actions change status and assignee of the selected rooms."""
    rooms = ChatRoomFactory.create_batch(2)
    _run_action(client, "chatroom", "close_rooms", [r.pk for r in rooms])
    assert set(ChatRoom.objects.values_list("status", flat=True)) == {"closed"}
    _run_action(client, "chatroom", "reopen_rooms", [rooms[0].pk])
    assert ChatRoom.objects.get(pk=rooms[0].pk).status == "open"
    response = _run_action(client, "chatroom", "assign_to_me", [r.pk for r in rooms])
    assert "2 chat rooms assigned to you." in response.content.decode()
    assert set(ChatRoom.objects.values_list("assignee", flat=True)) == {operator.pk}


def test_changing_status_and_assignee_on_the_change_page(client, operator):
    """The room form edits only status and assignee."""
    room = ChatRoomFactory(chat_id="keep-me")
    client.post(
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        {"status": "closed", "assignee": str(operator.pk), "chat_id": "changed"},
    )
    room.refresh_from_db()
    assert (room.status, room.assignee, room.chat_id) == ("closed", operator, "keep-me")


# --- messages and webhook events --------------------------------------------------------


def test_message_page_shows_raw_data_read_only_and_its_delivery_attempts(client, operator):
    """Data is shown as JSON text, not a form field; attempts are listed."""
    message = MessageFactory(
        direction="out", status="failed", type="sticker", data={"package_id": "1", "sticker_id": 2}
    )
    DeliveryAttempt.objects.create(
        message=message,
        started_at=timezone.now(),
        outcome="failed",
        http_status=400,
        error="R-Chat said no",
    )
    page = client.get(reverse("admin:rchat_message_change", args=[message.pk])).content.decode()
    assert "&quot;package_id&quot;: &quot;1&quot;" in page
    assert 'name="data"' not in page
    assert "R-Chat said no" in page and "400" in page


def test_message_list_filters_by_status_direction_type_credential_and_date(client, operator):
    """Each filter narrows the list to the matching messages."""
    credential = CredentialFactory()
    failed = MessageFactory(
        room=ChatRoomFactory(credential=credential), direction="out", status="failed"
    )
    MessageFactory(type="image", data={"url": "https://x.example/i.png"})
    url = reverse("admin:rchat_message_changelist")
    today = timezone.localdate()
    for params in (
        {"status__exact": "failed"},
        {"direction__exact": "out"},
        {"room__credential__id__exact": credential.pk},
        {"type": "text", "status__exact": "failed"},
        {
            "created_at__year": today.year,
            "created_at__month": today.month,
            "created_at__day": today.day,
            "status__exact": "failed",
        },
    ):
        response = client.get(url, params)
        assert [m.pk for m in response.context["cl"].result_list] == [failed.pk], params


def test_send_again_requeues_failed_messages_only(client, operator):
    """ "Send again" puts failed outbound messages back in the queue and skips the rest."""
    failed = MessageFactory(direction="out", status="failed", attempts=8, last_error="boom")
    received = MessageFactory()
    response = _run_action(client, "message", "send_again", [failed.pk, received.pk])
    body = response.content.decode()
    assert "1 message queued again." in body
    assert "1 message was not sent again" in body
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("queued", 0)


def test_webhook_event_page_shows_redacted_headers_and_the_body_as_text(client, operator):
    """The log shows headers as stored (token masked) and the raw body; nothing is editable."""
    event = WebhookEvent.objects.create(
        credential=CredentialFactory(),
        headers={"X-Chatday-Signature-Token": "••••wxyz"},
        body='{"chat_id": "c-1", "message": {"type": "text", "data": "สวัสดี"}}'.encode(),
        outcome="failed",
        error="no chat_id",
    )
    page = client.get(reverse("admin:rchat_webhookevent_change", args=[event.pk])).content.decode()
    assert "••••wxyz" in page
    assert "สวัสดี" in page
    assert 'name="_save"' not in page
    listing = client.get(reverse("admin:rchat_webhookevent_changelist"), {"outcome__exact": "ping"})
    assert listing.context["cl"].result_count == 0


def test_reprocess_turns_a_failed_event_into_its_message(client, operator):
    """ "Re-process" stores the message of a failed event; other events are refused."""
    credential = CredentialFactory()
    failed = WebhookEvent.objects.create(
        credential=credential,
        body=b'{"chat_id": "c-7", "message": {"type": "text", "data": "hello again"}}',
        outcome="failed",
        error="database was down",
    )
    ping = WebhookEvent.objects.create(credential=credential, body=b"{}", outcome="ping")
    response = _run_action(client, "webhookevent", "reprocess", [failed.pk, ping.pk])
    body = response.content.decode()
    assert "1 event re-processed." in body
    assert "only failed events are re-processed" in body
    failed.refresh_from_db()
    assert failed.outcome == "processed"
    assert Message.objects.get(room__chat_id="c-7").text == "hello again"


# --- overview ---------------------------------------------------------------------------


def _bar(page, label, series):
    match = re.search(
        rf'data-label="{re.escape(label)}" data-series="{series}" data-value="(\d+)"', page
    )
    assert match, (label, series)
    return int(match.group(1))


def test_overview_draws_messages_per_day_and_the_success_rate(client, operator):
    """The SVG holds each day's counts; the page shows the delivery rate and links."""
    room = ChatRoomFactory()
    now = timezone.now()
    two_days_ago = now - timedelta(days=2)
    for _ in range(3):
        MessageFactory(room=room)
    for status in ("sent", "sent", "sent", "failed"):
        MessageFactory(room=room, direction="out", status=status)
    old = MessageFactory(room=room)
    Message.objects.filter(pk=old.pk).update(created_at=two_days_ago)
    ancient = MessageFactory(room=room)
    Message.objects.filter(pk=ancient.pk).update(created_at=now - timedelta(days=40))
    CredentialFactory(status="invalid")

    response = client.get(reverse("admin:rchat_overview"))
    page = response.content.decode()
    assert "<svg" in page and 'src="http' not in page
    today_label = _label(timezone.localtime(now))
    assert _bar(page, today_label, "Inbound") == 3
    assert _bar(page, today_label, "Outbound") == 4
    assert _bar(page, _label(timezone.localtime(two_days_ago)), "Inbound") == 1
    assert page.count('class="rchat-bar"') == 14 * 2
    assert 'id="rchat-total-in"><strong>4<' in page
    assert 'id="rchat-success-rate"><strong>75.0%' in page
    assert "?status__exact=failed" in page and ">1</a>" in page
    assert "?status__exact=invalid" in page

    thirty = client.get(reverse("admin:rchat_overview"), {"days": "30"}).content.decode()
    assert thirty.count('class="rchat-bar"') == 30 * 2


def _label(moment):
    return date_format(moment.date(), "j M")


def test_overview_is_linked_from_the_app_index_and_the_chat_room_list(client, operator):
    """Operators find the overview from the rchat app page and the chat room list."""
    overview = reverse("admin:rchat_overview")
    app = client.get(reverse("admin:app_list", kwargs={"app_label": "rchat"})).content.decode()
    assert overview in app
    rooms = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    assert overview in rooms


def test_overview_needs_the_view_permission(client):
    """Staff who may not see chat rooms do not see the overview."""
    _staff_with(client, "view_credential")
    assert client.get(reverse("admin:rchat_overview")).status_code == 403


# --- Thai -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_name, thai",
    [
        ("admin:rchat_overview", "ข้อความต่อวัน"),
        ("admin:rchat_chatroom_changelist", "ห้องแชท"),
        ("admin:rchat_credential_changelist", "ทดสอบการเชื่อมต่อกับ R-Chat"),
    ],
)
def test_pages_speak_thai_to_a_thai_browser(client, operator, url_name, thai):
    """With Accept-Language th the admin pages show rchat's Thai translations."""
    ChatRoomFactory()
    page = client.get(reverse(url_name), HTTP_ACCEPT_LANGUAGE="th").content.decode()
    assert thai in page


def test_conversation_and_reply_form_are_in_thai(client, operator):
    """The conversation page's own strings are translated too."""
    room = _room_with_thread(messages=1)
    page = client.get(
        reverse("admin:rchat_chatroom_change", args=[room.pk]), HTTP_ACCEPT_LANGUAGE="th"
    ).content.decode()
    assert "บทสนทนา" in page
    assert "ส่งคำตอบ" in page


def test_credential_actions_are_offered_only_to_those_who_may_change_credentials(client):
    """Register, Rotate and Test call R-Chat and change the row: "view" is not enough."""
    CredentialFactory()
    actions = ("register", "rotate", "test_connection")

    _staff_with(client, "view_credential")
    viewer_page = client.get(reverse("admin:rchat_credential_changelist")).content.decode()
    _staff_with(client, "view_credential", "change_credential")
    changer_page = client.get(reverse("admin:rchat_credential_changelist")).content.decode()

    assert [a for a in actions if f'value="{a}"' in viewer_page] == []
    assert [a for a in actions if f'value="{a}"' in changer_page] == list(actions)


# --- who handles a chat room: the bot or people -----------------------------------------


def _change_page(client, room):
    return client.get(reverse("admin:rchat_chatroom_change", args=[room.pk])).content.decode()


def test_chat_room_list_shows_and_filters_who_handles_each_room(client, operator):
    """ "Handled by" is a column and a filter of the chat room list."""
    ChatRoomFactory(display_name="Bot Room", handler="bot")
    ChatRoomFactory(display_name="People Room")
    page = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    assert "column-handler" in page and "handler__exact=bot" in page
    bots = client.get(reverse("admin:rchat_chatroom_changelist"), {"handler__exact": "bot"})
    assert [str(room) for room in bots.context["cl"].result_list] == ["Bot Room"]


def test_change_page_shows_the_handler_read_only_and_the_latest_hand_overs(client, operator):
    """Handler, since and reason are read-only; the latest 20 hand-overs, newest first."""
    room = ChatRoomFactory(handler="bot")
    start = timezone.now() - timedelta(days=1)
    for n in range(22):
        Handover.objects.create(
            room=room,
            to="people" if n % 2 else "bot",
            reason="asked" if n % 2 else "returned",
            detail=f"detail {n}",
            by=operator if n == 21 else None,
            at=start + timedelta(minutes=n),
        )
    page = _change_page(client, room)
    assert 'name="handler"' not in page
    assert "Handled by" in page and "Hand-overs (latest first)" in page
    shown = re.findall(r"detail (\d+)", page)
    assert shown == [str(n) for n in range(21, 1, -1)]
    history = re.search(r'<table class="rchat-handovers">.*?</table>', page, re.S).group(0)
    assert "The end user asked for a person" in history and "boss" in history


def test_the_conversation_offers_take_over_and_return_to_the_bot(client, operator):
    """The change page's button takes a bot room over, then gives it back."""
    room = ChatRoomFactory(handler="bot")
    page = _change_page(client, room)
    take_over = reverse("admin:rchat_chatroom_take_over", args=[room.pk])
    assert f'action="{take_over}"' in page
    response = client.post(take_over, follow=True)
    room.refresh_from_db()
    assert (room.handler, room.assignee) == ("people", operator)
    page = response.content.decode()
    assert "You took over this chat room: the bot stays silent." in page
    back = reverse("admin:rchat_chatroom_return_to_bot", args=[room.pk])
    assert f'action="{back}"' in page
    page = client.post(back, follow=True).content.decode()
    room.refresh_from_db()
    assert room.handler == "bot" and "Chat room returned to the bot." in page
    assert client.get(take_over).status_code == 403  # POST only


def test_taking_over_a_closed_room_from_its_page_shows_why_not(client, operator):
    """The service's refusal becomes an error message; nothing changes."""
    room = ChatRoomFactory(handler="bot", status="closed")
    url = reverse("admin:rchat_chatroom_take_over", args=[room.pk])
    page = client.post(url, follow=True).content.decode()
    assert "closed" in page and 'class="error"' in page
    room.refresh_from_db()
    assert room.handler == "bot"


def test_a_reader_cannot_take_over_or_return(client):
    """Without reply_chatroom: no buttons, no actions, and the POSTs are refused."""
    _staff_with(client, "view_chatroom")
    room = ChatRoomFactory(handler="bot")
    page = _change_page(client, room)
    assert "Handled by" in page and "Take over" not in page
    assert client.post(reverse("admin:rchat_chatroom_take_over", args=[room.pk])).status_code == 403
    back = reverse("admin:rchat_chatroom_return_to_bot", args=[room.pk])
    assert client.post(back).status_code == 403
    listing = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    assert 'value="take_over"' not in listing and 'value="return_to_bot"' not in listing
    room.refresh_from_db()
    assert room.handler == "bot"


def test_take_over_and_return_actions_count_what_they_did_and_what_failed(client, operator):
    """The actions go through the services; a closed room is counted as refused, with why."""
    rooms = ChatRoomFactory.create_batch(2, handler="bot")
    closed = ChatRoomFactory(handler="bot", status="closed", display_name="Shut")
    page = _run_action(
        client, "chatroom", "take_over", [r.pk for r in rooms] + [closed.pk]
    ).content.decode()
    assert "2 chat rooms taken over: people answer them, the bot is silent." in page
    assert "1 chat room could not be taken over: Shut:" in page
    assert set(
        ChatRoom.objects.filter(pk__in=[r.pk for r in rooms]).values_list("handler", "assignee")
    ) == {("people", operator.pk)}
    page = _run_action(client, "chatroom", "return_to_bot", [r.pk for r in rooms]).content.decode()
    assert "2 chat rooms returned to the bot." in page
    assert set(ChatRoom.objects.values_list("handler", flat=True)) == {"bot"}
    assert Handover.objects.filter(reason="returned", by=operator).count() == 2


def test_each_reply_in_the_admin_conversation_says_who_wrote_it(client, operator):
    """The same renderer as the inbox: a person's name, "Bot", "Rule: <name>"."""
    room = ChatRoomFactory()
    rule = AutoReply.objects.create(name="Price list")
    MessageFactory(room=room, direction="out", sender="rule", rule=rule, status="sent")
    MessageFactory(room=room, direction="out", sender="bot", status="sent")
    MessageFactory(room=room, direction="out", sender="person", author=operator, status="sent")
    page = _change_page(client, room)
    assert 'rchat-by-rule">· Rule: Price list<' in page
    assert 'rchat-by-bot">· Bot<' in page
    assert 'rchat-by-person">· boss<' in page


def test_message_list_shows_and_filters_who_wrote_each_message(client, operator):
    """ "Written by" is a column and a filter of the message list."""
    MessageFactory(direction="out", sender="bot")
    MessageFactory(direction="out", sender="person", author=operator)
    page = client.get(reverse("admin:rchat_message_changelist")).content.decode()
    assert "column-sender" in page and "sender__exact=bot" in page
    bots = client.get(reverse("admin:rchat_message_changelist"), {"sender__exact": "bot"})
    assert [m.sender for m in bots.context["cl"].result_list] == ["bot"]


def test_a_credential_s_new_rooms_can_start_with_the_bot(client, operator):
    """ "New chat rooms start with the bot" is set on the credential's page."""
    credential = CredentialFactory()
    url = reverse("admin:rchat_credential_change", args=[credential.pk])
    assert 'name="bot_first"' in client.get(url).content.decode()
    form = {"name": credential.name, "base_url": "", "token": "", "send_rate": ""}
    assert client.post(url, {**form, "bot_first": "on"}).status_code == 302
    credential.refresh_from_db()
    assert credential.bot_first is True
    assert client.post(url, form).status_code == 302
    credential.refresh_from_db()
    assert credential.bot_first is False


def test_the_chat_room_list_offers_the_bot_s_actions(client, operator):
    """Take over, Return to the bot and the bot's replay are actions of the room list."""
    ChatRoomFactory()
    listing = client.get(reverse("admin:rchat_chatroom_changelist")).content.decode()
    for action in ("take_over", "return_to_bot", "replay_action"):
        assert f'value="{action}"' in listing
