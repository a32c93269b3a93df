"""Who handles a chat room, in the agent inbox: badges, the Bot and Unassigned tabs, the
header, Take over / Return to bot, who wrote each reply, and flat query counts."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from rchat import services
from rchat.models import AutoReply, ChatRoom, Handover, Message
from tests.factories import ChatRoomFactory, MessageFactory, UserFactory, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    return user_with(username="somsri", first_name="Somsri", last_name="Dee")


def bot_room(**fields):
    return ChatRoomFactory(handler=ChatRoom.Handler.BOT, **fields)


def inbox(client, **params):
    response = client.get(reverse("rchat:inbox"), params)
    assert response.status_code == 200
    return response.content.decode()


def room_url(room, name="rchat:inbox-room"):
    return reverse(name, kwargs={"pk": room.pk})


def list_item(page, name):
    """The room list's entry for the room called ``name``."""
    for item in re.findall(r'<li class="rchat-room-item.*?</li>', page, re.S):
        if name in item:
            return item
    raise AssertionError(f"{name} is not in the list")


def flashes(page):
    return re.findall(r'<li class="rchat-flash-(\w+)">([^<]*)</li>', page)


# --- The room list ---------------------------------------------------------------------


def test_each_room_in_the_list_says_bot_or_people(agent_client):
    """A small badge on every room: "Bot" or "People"."""
    bot_room(display_name="Bot Kept")
    ChatRoomFactory(display_name="People Kept")
    page = inbox(agent_client, view="all")
    assert re.search(r'rchat-handler-bot"[^>]*>Bot<', list_item(page, "Bot Kept"))
    assert re.search(r'rchat-handler-people"[^>]*>People<', list_item(page, "People Kept"))


def test_the_bot_tab_shows_open_rooms_the_bot_handles(agent_client):
    """The Bot tab: the bot's rooms only; its count is of open ones."""
    bot_room(display_name="Answered By Bot")
    bot_room(display_name="Closed Bot Room", status=ChatRoom.Status.CLOSED)
    ChatRoomFactory(display_name="With People")
    page = inbox(agent_client, view="bot")
    assert "Answered By Bot" in page
    assert "With People" not in page and "Closed Bot Room" not in page
    assert re.search(r'view=bot[^"]*" class="rchat-tab is-active"[^>]*>\s*Bot <span[^>]*>1<', page)


def test_unassigned_means_people_handle_it_and_nobody_has_it(agent_client, agent):
    """Unassigned: rooms handed to people that no one has taken; the bot's are not."""
    ChatRoomFactory(display_name="Waiting For Someone")
    bot_room(display_name="Bot Has It")
    ChatRoomFactory(display_name="Somsri Has It", assignee=agent)
    page = inbox(agent_client, view="unassigned")
    assert "Waiting For Someone" in page
    assert "Bot Has It" not in page and "Somsri Has It" not in page
    assert re.search(r"Unassigned <span[^>]*>1</span>", page)


def test_a_room_handed_to_people_shows_in_unassigned_at_the_next_poll(agent_client):
    """The live list (and the tabs' counts) show a hand-over without a reload."""
    room = bot_room(display_name="Needs A Person")
    poll = {"view": "unassigned"}
    before = agent_client.get(reverse("rchat:inbox-rooms"), poll).content.decode()
    assert "Needs A Person" not in before
    services.room_hand_over(room=room, reason=Handover.Reason.ASKED, detail="“ขอคุยกับคน”")
    after = agent_client.get(reverse("rchat:inbox-rooms"), poll).content.decode()
    assert "Needs A Person" in after
    tabs = re.search(r'<nav id="rchat-tabs"[^>]*hx-swap-oob="true".*?</nav>', after, re.S)
    assert re.search(r"Unassigned <span[^>]*>1</span>", tabs.group(0))
    assert re.search(r"Bot <span[^>]*>0</span>", tabs.group(0))


def test_the_handler_filter_is_kept_in_links_and_polls(agent_client):
    """?handler=bot|people filters the list and rides along in every link of it."""
    room = bot_room(display_name="Bot Side")
    ChatRoomFactory(display_name="People Side")
    page = inbox(agent_client, view="all", handler="bot")
    assert "Bot Side" in page and "People Side" not in page
    assert re.search(rf'href="{room_url(room)}\?view=all[^"]*&amp;handler=bot"', page)
    assert re.search(r'hx-get="[^"]*/inbox/rooms/\?[^"]*handler=bot', page)
    assert re.search(r'<option value="bot" selected>Bot</option>', page)
    page = inbox(agent_client, view="all", handler="people")
    assert "People Side" in page and "Bot Side" not in page
    # Nonsense falls back to either.
    page = inbox(agent_client, view="all", handler="robots")
    assert "People Side" in page and "Bot Side" in page


# --- The conversation header and its buttons ---------------------------------------------


def test_the_header_says_who_handles_the_room_since_when_and_why(agent_client):
    """Handled by People, since the hand-over, with its reason; or by the Bot."""
    room = bot_room()
    page = agent_client.get(room_url(room)).content.decode()
    assert "Handled by: Bot" in page
    assert "Sending a reply takes it over" in page
    assert "rchat-take-over" in page and "rchat-return-to-bot" not in page

    services.room_hand_over(room=room, reason=Handover.Reason.HOURS, detail="Sunday")
    page = agent_client.get(room_url(room)).content.decode()
    assert "Handled by: People" in page
    assert "Why: Out of business hours: Sunday" in page
    room.refresh_from_db()
    assert f'datetime="{timezone.localtime(room.handler_since).isoformat()}"' in page
    assert "rchat-return-to-bot" in page and "rchat-take-over" not in page


def test_take_over_then_return_to_bot(agent_client, agent):
    """Take over: people answer, the agent gets the room; Return: the bot again."""
    room = bot_room()
    response = agent_client.post(room_url(room, "rchat:inbox-take-over") + "?view=bot")
    assert response.status_code == 302
    assert response["Location"].startswith(room_url(room) + "?view=bot")
    room.refresh_from_db()
    assert (room.handler, room.assignee) == ("people", agent)
    taken = Handover.objects.get(room=room)
    assert (taken.to, taken.reason, taken.by) == ("people", "taken", agent)
    page = agent_client.get(response["Location"]).content.decode()
    assert ("success", "You took over this conversation: the bot stays silent.") in flashes(page)
    assert "Handled by: People" in page and "Return to bot" in page

    response = agent_client.post(room_url(room, "rchat:inbox-return-to-bot"), follow=True)
    room.refresh_from_db()
    assert room.handler == "bot"
    page = response.content.decode()
    assert ("success", "Conversation returned to the bot.") in flashes(page)
    assert "Handled by: Bot" in page and "Take over" in page
    assert Handover.objects.filter(room=room, to="bot", reason="returned", by=agent).exists()


def test_taking_over_a_closed_room_is_refused_with_a_message(agent_client):
    """The service's refusal is shown as an error; the bot keeps the room."""
    room = bot_room(status=ChatRoom.Status.CLOSED)
    page = agent_client.get(room_url(room)).content.decode()
    assert "rchat-take-over" not in page  # no button that can only fail
    response = agent_client.post(room_url(room, "rchat:inbox-take-over"), follow=True)
    assert response.status_code == 200
    [(level, text)] = flashes(response.content.decode())
    assert level == "error" and text.startswith("Could not take over:") and "closed" in text
    room.refresh_from_db()
    assert room.handler == "bot" and not Handover.objects.exists()


def test_a_reader_sees_who_handles_it_but_cannot_change_it(client):
    """Without reply_chatroom: no buttons, and the POSTs are refused."""
    client.force_login(user_with("view_chatroom"))
    room = bot_room()
    page = client.get(room_url(room)).content.decode()
    assert "Handled by: Bot" in page
    assert "rchat-take-over" not in page and "rchat-return-to-bot" not in page
    assert client.post(room_url(room, "rchat:inbox-take-over")).status_code == 403
    people = ChatRoomFactory()
    assert client.post(room_url(people, "rchat:inbox-return-to-bot")).status_code == 403
    room.refresh_from_db()
    people.refresh_from_db()
    assert (room.handler, people.handler) == ("bot", "people")
    assert not Handover.objects.exists()


def test_the_buttons_take_post_only(agent_client):
    """Changing who handles a room is a POST."""
    room = bot_room()
    assert agent_client.get(room_url(room, "rchat:inbox-take-over")).status_code == 405
    assert agent_client.get(room_url(room, "rchat:inbox-return-to-bot")).status_code == 405


def test_a_reply_in_a_bot_room_takes_it_over(agent_client, agent):
    """Replying is taking over: the header says People afterwards."""
    room = bot_room()
    response = agent_client.post(room_url(room), {"type": "text", "text": "สวัสดีค่ะ"}, follow=True)
    room.refresh_from_db()
    assert (room.handler, room.assignee) == ("people", agent)
    assert "Handled by: People" in response.content.decode()


def test_an_open_page_sees_a_hand_over_at_its_next_poll(agent_client):
    """The thread's poll answers with the new header when the room changes hands,
    even though no message changed."""
    room = bot_room()
    MessageFactory(room=room, data="ขอคุยกับพนักงาน")
    page = agent_client.get(room_url(room)).content.decode()
    poll = re.search(r'hx-get="([^"]+/thread/[^"]+)"', page).group(1).replace("&amp;", "&")
    assert agent_client.get(poll).status_code == 204
    services.room_hand_over(room=room, reason=Handover.Reason.ASKED)
    fresh = agent_client.get(poll)
    assert fresh.status_code == 200
    assert "Handled by: People" in fresh.content.decode()


# --- Who wrote each reply ----------------------------------------------------------------


def test_each_reply_says_who_wrote_it(agent_client, agent):
    """A person's name, "Bot", or "Rule: <name>"; inbound messages say nothing."""
    room = ChatRoomFactory()
    rule = AutoReply.objects.create(name="Opening hours", match="เปิด", reply_data="9-17")
    MessageFactory(room=room, data="เปิดกี่โมง")
    by_rule = MessageFactory(room=room, direction="out", sender="rule", rule=rule, data="9-17")
    by_bot = MessageFactory(room=room, direction="out", sender="bot", data="Anything else?")
    by_agent = MessageFactory(room=room, direction="out", sender="person", author=agent, data="Hi")
    legacy = MessageFactory(room=room, direction="out", author=UserFactory(username="old"))
    page = agent_client.get(room_url(room)).content.decode()

    def meta(message):
        bubble = re.search(rf'id="message-{message.pk}".*?rchat-msg-meta">(.*?)</div>', page, re.S)
        return bubble.group(1)

    assert re.search(r'rchat-by-rule">· Rule: Opening hours<', meta(by_rule))
    assert re.search(r'rchat-by-bot">· Bot<', meta(by_bot))
    assert re.search(r'rchat-by-person">· Somsri Dee<', meta(by_agent))
    assert re.search(r'rchat-by-person">· old<', meta(legacy))
    assert page.count("rchat-by ") == 4


def test_a_rule_deleted_since_still_reads_rule(agent_client):
    """A reply whose rule is gone says "Rule"."""
    room = ChatRoomFactory()
    rule = AutoReply.objects.create(name="Gone soon")
    reply = MessageFactory(room=room, direction="out", sender="rule", rule=rule)
    rule.delete()
    page = agent_client.get(room_url(room)).content.decode()
    assert re.search(rf'id="message-{reply.pk}".*?rchat-by-rule">· Rule<', page, re.S)


# --- Fixed number of queries -----------------------------------------------------------


def _fill(rooms, agent, first):
    """``rooms`` rooms, the first handled by ``first`` and unassigned (so that with one
    room, the tab shown still lists it), the rest of every kind."""
    rule = AutoReply.objects.create(name="Greeting")
    for index in range(rooms):
        room = ChatRoomFactory(
            handler=first if index == 0 else ("bot" if index % 2 else "people"),
            assignee=agent if index % 3 == 1 else None,
            last_message_preview="p",
        )
        MessageFactory(room=room)
        MessageFactory(room=room, direction="out", sender="rule", rule=rule, status="sent")
        MessageFactory(room=room, direction="out", sender="bot", status="sent")
        MessageFactory(room=room, direction="out", sender="person", author=agent)
        Handover.objects.create(room=room, to="people", reason="asked", at=room.created_at)
    return room


@pytest.mark.parametrize(
    ("page", "params"),
    [
        ("inbox", {"view": "all"}),
        ("inbox", {"view": "bot"}),
        ("inbox", {"view": "unassigned", "handler": "people"}),
        ("conversation", {"view": "all"}),
        ("rooms-partial", {"view": "bot"}),
        ("thread-partial", {"view": "all"}),
    ],
)
def test_pages_run_the_same_queries_for_1_or_30_rooms(client, page, params):
    """Badges, tabs, headers and who wrote each reply add no query per room or message."""
    counts = []
    for rooms in (1, 30):
        Handover.objects.all().delete()
        Message.objects.all().delete()
        ChatRoom.objects.all().delete()
        AutoReply.objects.all().delete()
        agent = user_with()
        client.force_login(agent)
        room = _fill(rooms, agent, first="bot" if params["view"] == "bot" else "people")
        url = {
            "inbox": reverse("rchat:inbox"),
            "conversation": room_url(room),
            "rooms-partial": reverse("rchat:inbox-rooms"),
            "thread-partial": room_url(room, "rchat:inbox-thread"),
        }[page]
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
