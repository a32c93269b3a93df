"""The agent inbox pages: seeing, replying, actions, live partials, bad input."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rchat.models import ChatRoom, Message
from tests.factories import ChatRoomFactory, MessageFactory, UserFactory, user_with

pytestmark = pytest.mark.django_db


def room_url(room, name="rchat:inbox-room", **kwargs):
    return reverse(name, kwargs={"pk": room.pk, **kwargs})


# --- Access ----------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_login_page(client):
    """Without a login the inbox redirects to the login page."""
    response = client.get(reverse("rchat:inbox"))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_user_without_view_permission_is_refused(client):
    """A logged-in user who may not see chat rooms gets 403."""
    client.force_login(user_with("add_credential"))
    room = ChatRoomFactory()
    assert client.get(reverse("rchat:inbox")).status_code == 403
    assert client.get(room_url(room)).status_code == 403


def test_viewer_can_read_but_not_reply(client):
    """With view_chatroom only, the page has no reply box and a POST is refused."""
    client.force_login(user_with("view_chatroom"))
    room = ChatRoomFactory()
    MessageFactory(room=room, data="hello there")
    page = client.get(room_url(room))
    assert page.status_code == 200
    assert "hello there" in page.content.decode()
    assert 'class="rchat-reply"' not in page.content.decode()
    refused = client.post(room_url(room), {"type": "text", "text": "hi"})
    assert refused.status_code == 403
    for action in ("rchat:inbox-assign", "rchat:inbox-close", "rchat:inbox-reopen"):
        assert client.post(room_url(room, action)).status_code == 403
    assert not Message.objects.filter(direction="out").exists()
    room.refresh_from_db()
    assert room.assignee is None and room.status == "open"


# --- The room list ---------------------------------------------------------------------


def test_list_shows_preview_unread_count_and_filters_by_tab(agent_client, agent):
    """Mine / unassigned / all tabs show the right rooms with preview and unread badge."""
    mine = ChatRoomFactory(
        display_name="Mine Person", assignee=agent, unread_count=3, last_message_preview="hi!"
    )
    free = ChatRoomFactory(display_name="Free Person")
    other = ChatRoomFactory(display_name="Other Person", assignee=UserFactory())
    page = agent_client.get(reverse("rchat:inbox"), {"view": "mine"}).content.decode()
    assert "Mine Person" in page and "Free Person" not in page and "Other Person" not in page
    assert "hi!" in page
    assert re.search(r"rchat-badge-unread[^>]*>3<", page)
    page = agent_client.get(reverse("rchat:inbox"), {"view": "unassigned"}).content.decode()
    assert "Free Person" in page and "Mine Person" not in page
    page = agent_client.get(reverse("rchat:inbox"), {"view": "all"}).content.decode()
    for room in (mine, free, other):
        assert room.display_name in page


def test_list_filters_open_and_closed(agent_client):
    """Closed rooms are hidden by default and shown with status=closed."""
    ChatRoomFactory(display_name="Still Open")
    ChatRoomFactory(display_name="Done Already", status=ChatRoom.Status.CLOSED)
    page = agent_client.get(reverse("rchat:inbox")).content.decode()
    assert "Still Open" in page and "Done Already" not in page
    page = agent_client.get(reverse("rchat:inbox"), {"status": "closed"}).content.decode()
    assert "Done Already" in page and "Still Open" not in page


@pytest.mark.parametrize("term", ["chat-special-42", "Somchai", "refund please"])
def test_search_matches_chat_id_name_and_message_text(agent_client, term):
    """The search box finds a room by its chat id, the end user's name or a message."""
    room = ChatRoomFactory(chat_id="chat-special-42", display_name="Somchai Jaidee")
    MessageFactory(room=room, data="I want a refund please", text="I want a refund please")
    ChatRoomFactory(display_name="Unrelated Person")
    page = agent_client.get(reverse("rchat:inbox"), {"q": term}).content.decode()
    assert "Somchai Jaidee" in page
    assert "Unrelated Person" not in page


def test_bad_filter_values_fall_back_to_defaults(agent_client):
    """Nonsense filters do not break the page: the defaults apply."""
    ChatRoomFactory(display_name="Visible Room")
    response = agent_client.get(reverse("rchat:inbox"), {"view": "zzz", "status": "?", "page": "x"})
    assert response.status_code == 200
    assert "Visible Room" in response.content.decode()


# --- A conversation --------------------------------------------------------------------


def test_opening_a_conversation_marks_it_read(agent_client):
    """Unread messages count as read once the agent opens the room."""
    room = ChatRoomFactory(unread_count=4)
    assert agent_client.get(room_url(room)).status_code == 200
    room.refresh_from_db()
    assert room.unread_count == 0


def test_thread_shows_inbound_and_outbound_with_status(agent_client):
    """Inbound and outbound messages are told apart, with each reply's status."""
    room = ChatRoomFactory()
    MessageFactory(room=room, data="question from customer")
    MessageFactory(room=room, direction="out", data="queued answer", status="queued")
    MessageFactory(room=room, direction="out", data="sent answer", status="sent")
    MessageFactory(room=room, direction="out", data="failed answer", status="failed")
    page = agent_client.get(room_url(room)).content.decode()
    assert re.search(r'rchat-msg-in".*?question from customer', page, re.S)
    assert re.search(r'rchat-msg-out".*?queued answer.*?rchat-status-queued', page, re.S)
    assert re.search(r'rchat-msg-out".*?sent answer.*?rchat-status-sent', page, re.S)
    assert re.search(r"failed answer.*?rchat-status-failed.*?Retry", page, re.S)


def test_image_file_sticker_and_location_messages_render(agent_client):
    """Each known message type is shown in a readable way; unsafe URLs are not linked."""
    room = ChatRoomFactory()
    MessageFactory(room=room, type="image", data={"url": "https://img.example/a.png"}, text="")
    MessageFactory(room=room, type="file", data="https://files.example/doc.pdf", text="")
    MessageFactory(room=room, type="sticker", data={"package_id": "11", "sticker_id": "51"})
    MessageFactory(
        room=room,
        type="location",
        data={"latitude": 13.75, "longitude": 100.5, "address": "Bangkok"},
        text="",
    )
    MessageFactory(room=room, type="image", data={"url": "javascript:alert(1)"}, text="")
    page = agent_client.get(room_url(room)).content.decode()
    assert '<img src="https://img.example/a.png"' in page
    assert 'href="https://files.example/doc.pdf"' in page
    assert "11/51" in page
    assert "Bangkok" in page and "13.75000, 100.50000" in page
    assert "javascript:alert" not in page


def test_reply_is_queued_and_redirects_back(agent_client, agent):
    """A text reply is stored queued, by the agent, and the page redirects (PRG)."""
    room = ChatRoomFactory()
    response = agent_client.post(room_url(room), {"type": "text", "text": "  Hello there  "})
    assert response.status_code == 302
    assert response["Location"].startswith(room_url(room))
    message = Message.objects.get(room=room, direction="out")
    assert (message.type, message.data, message.status) == ("text", "Hello there", "queued")
    assert message.author == agent
    page = agent_client.get(response["Location"]).content.decode()
    assert "Hello there" in page and "rchat-status-queued" in page


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"type": "image", "url": "https://cdn.example/c.jpg"},
            {"url": "https://cdn.example/c.jpg"},
        ),
        (
            {"type": "file", "url": "http://files.example/a.pdf"},
            {"url": "http://files.example/a.pdf"},
        ),
        (
            {"type": "sticker", "package_id": "446", "sticker_id": "1988"},
            {"package_id": "446", "sticker_id": "1988"},
        ),
    ],
)
def test_image_file_and_sticker_replies(agent_client, fields, expected):
    """Image and file URLs and stickers are sent in the shape R-Chat expects."""
    room = ChatRoomFactory()
    assert agent_client.post(room_url(room), fields).status_code == 302
    message = Message.objects.get(room=room, direction="out")
    assert (message.type, message.data) == (fields["type"], expected)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        # The reasons are outbound_validate's, the same the API and admin give.
        ({"type": "text", "text": "   "}, "A text message cannot be empty."),
        ({"type": "text", "text": "x" * 5001}, "at most 5000 characters"),
        ({"type": "image", "url": "not a url"}, "Enter an http:// or https:// URL."),
        ({"type": "file", "url": "ftp://files.example/a.pdf"}, "Enter an http:// or https:// URL."),
        ({"type": "sticker", "package_id": "1"}, "A sticker needs a sticker_id"),
        ({"type": "location", "latitude": "13.7"}, "This field is required."),
        ({"type": "location", "latitude": "north", "longitude": "1"}, "Enter a number."),
        ({"type": "video", "text": "x"}, "Select a valid choice"),
    ],
)
def test_bad_reply_shows_a_form_error_and_queues_nothing(agent_client, fields, reason):
    """Empty, oversized or malformed replies re-render the page with the reason."""
    room = ChatRoomFactory()
    response = agent_client.post(room_url(room), fields)
    assert response.status_code == 200
    assert reason in response.content.decode()
    assert not Message.objects.filter(direction="out").exists()


def test_reply_to_a_closed_room_is_refused(agent_client):
    """A closed room takes no reply: the page says why, nothing is queued."""
    room = ChatRoomFactory(status=ChatRoom.Status.CLOSED)
    page = agent_client.get(room_url(room)).content.decode()
    assert "Reopen it to reply" in page and 'class="rchat-reply"' not in page
    response = agent_client.post(room_url(room), {"type": "text", "text": "hello"})
    assert response.status_code == 200
    assert "closed" in response.content.decode()
    assert not Message.objects.filter(direction="out").exists()


def test_unknown_room_is_not_found(agent_client):
    """A room id that does not exist is a 404, for pages and actions alike."""
    assert agent_client.get(reverse("rchat:inbox-room", kwargs={"pk": 999999})).status_code == 404
    response = agent_client.post(reverse("rchat:inbox-close", kwargs={"pk": 999999}))
    assert response.status_code == 404


# --- Actions ---------------------------------------------------------------------------


def test_assign_to_me_then_unassign(agent_client, agent):
    """'Assign to me' gives the agent the room; 'Unassign' frees it."""
    room = ChatRoomFactory()
    response = agent_client.post(room_url(room, "rchat:inbox-assign"), follow=True)
    room.refresh_from_db()
    assert room.assignee == agent
    assert "Conversation assigned to you." in response.content.decode()
    agent_client.post(room_url(room, "rchat:inbox-assign"), {"unassign": "1"})
    room.refresh_from_db()
    assert room.assignee is None


def test_close_and_reopen(agent_client):
    """Closing hides the reply box; reopening brings it back."""
    room = ChatRoomFactory()
    page = agent_client.post(room_url(room, "rchat:inbox-close"), follow=True).content.decode()
    room.refresh_from_db()
    assert room.status == "closed" and "Reopen" in page
    page = agent_client.post(room_url(room, "rchat:inbox-reopen"), follow=True).content.decode()
    room.refresh_from_db()
    assert room.status == "open" and 'class="rchat-reply"' in page


def test_actions_refuse_get(agent_client):
    """Actions change state, so they take POST only."""
    room = ChatRoomFactory()
    assert agent_client.get(room_url(room, "rchat:inbox-close")).status_code == 405


def test_retry_requeues_a_failed_reply(agent_client):
    """The retry button puts a failed reply back in the queue."""
    room = ChatRoomFactory()
    failed = MessageFactory(room=room, direction="out", status="failed", attempts=8)
    response = agent_client.post(
        room_url(room, "rchat:inbox-retry", message_pk=failed.pk), follow=True
    )
    failed.refresh_from_db()
    assert failed.status == "queued" and failed.attempts == 0
    assert "Message queued again." in response.content.decode()


def test_retry_of_a_message_from_another_room_is_not_found(agent_client):
    """A message id that belongs to another room is a 404 and changes nothing."""
    room = ChatRoomFactory()
    elsewhere = MessageFactory(direction="out", status="failed")
    url = room_url(room, "rchat:inbox-retry", message_pk=elsewhere.pk)
    assert agent_client.post(url).status_code == 404
    elsewhere.refresh_from_db()
    assert elsewhere.status == "failed"


# --- Live updates ----------------------------------------------------------------------


def test_thread_poll_answers_204_until_something_changes(agent_client):
    """The thread partial has nothing to swap while the thread is unchanged."""
    room = ChatRoomFactory()
    first = MessageFactory(room=room, data="first")
    page = agent_client.get(room_url(room)).content.decode()
    poll_url = re.search(r'hx-get="([^"]+/thread/[^"]+)"', page).group(1).replace("&amp;", "&")
    assert agent_client.get(poll_url).status_code == 204

    MessageFactory(room=room, data="a new question")
    fresh = agent_client.get(poll_url)
    assert fresh.status_code == 200
    assert "a new question" in fresh.content.decode()
    assert "first" in fresh.content.decode()

    # A status change of a shown message counts as a change too.
    new_poll = re.search(r'hx-get="([^"]+)"', fresh.content.decode()).group(1).replace("&amp;", "&")
    assert agent_client.get(new_poll).status_code == 204
    Message.objects.filter(pk=first.pk).update(status="failed")
    assert agent_client.get(new_poll).status_code == 200


def test_polled_thread_marks_new_messages_read(agent_client):
    """Messages that arrive while the conversation is open do not count as unread."""
    room = ChatRoomFactory()
    agent_client.get(room_url(room))
    MessageFactory(room=room, data="while you watch")
    ChatRoom.objects.filter(pk=room.pk).update(unread_count=1)
    agent_client.get(room_url(room, "rchat:inbox-thread"), {"since": "0", "v": "stale"})
    room.refresh_from_db()
    assert room.unread_count == 0


def test_room_list_partial_shows_new_rooms(agent_client):
    """The polled room list shows a room that appeared after the page loaded."""
    agent_client.get(reverse("rchat:inbox"))
    ChatRoomFactory(display_name="Newcomer Nok")
    response = agent_client.get(reverse("rchat:inbox-rooms"), {"view": "all"})
    assert response.status_code == 200
    assert "Newcomer Nok" in response.content.decode()


def test_page_loads_vendored_htmx_not_a_cdn(agent_client):
    """The live updates use htmx served by the site itself."""
    page = agent_client.get(reverse("rchat:inbox")).content.decode()
    loaded = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', page)
    assert "/static/rchat/htmx.min.js" in loaded
    # Everything the page loads comes from this site: no scheme, no other host.
    assert [url for url in loaded if not url.startswith("/")] == []


# --- Fixed number of queries -----------------------------------------------------------


def _fill(rooms, messages, agent):
    for index in range(rooms):
        room = ChatRoomFactory(
            assignee=agent if index % 2 else None, unread_count=index % 3, last_message_preview="p"
        )
        MessageFactory.create_batch(messages // 2, room=room)
        MessageFactory.create_batch(
            messages - messages // 2, room=room, direction="out", status="sent", author=agent
        )
    return room


def _count_queries(client, url, **params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "page",
    ["inbox", "conversation", "rooms-partial", "thread-partial"],
)
def test_pages_run_the_same_queries_for_5_or_50_rooms(client, page):
    """The inbox, the conversation and the polls cost a fixed number of queries."""
    counts = []
    for rooms, messages in ((5, 2), (50, 20)):
        Message.objects.all().delete()
        ChatRoom.objects.all().delete()
        agent = user_with()
        client.force_login(agent)
        room = _fill(rooms, messages, agent)
        url = {
            "inbox": reverse("rchat:inbox"),
            "conversation": room_url(room),
            "rooms-partial": reverse("rchat:inbox-rooms"),
            "thread-partial": room_url(room, "rchat:inbox-thread"),
        }[page]
        counts.append(_count_queries(client, url, view="all"))
    assert counts[0] == counts[1], counts


def test_reply_box_starts_on_text_and_posts_what_it_shows(agent_client):
    """The reply box's type defaults to text, so typing and sending is enough."""
    room = ChatRoomFactory()
    page = agent_client.get(room_url(room)).content.decode()
    assert re.search(r'<input type="radio" name="type" value="text"[^>]*checked', page)


def test_room_list_poll_refreshes_the_tab_counts(agent_client):
    """The polled list brings the tabs' counts along, to replace them in place."""
    ChatRoomFactory(unread_count=1)
    ChatRoomFactory(unread_count=0)
    response = agent_client.get(reverse("rchat:inbox-rooms"), {"view": "all"})
    tabs = re.search(
        r'<nav id="rchat-tabs"[^>]*hx-swap-oob="true".*?</nav>', response.content.decode(), re.S
    )
    assert tabs, "the tabs come out of band"
    assert re.search(r"All <span[^>]*>2</span><span[^>]*>1</span>", tabs.group(0))
