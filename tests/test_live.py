"""Live status everywhere: admin's conversation updates without a reload, colleagues on
the same conversation see each other ("is also viewing", "is typing…"), and one
template draws a message on every page.

The presence service runs against the project's real cache; the polls against the
real database; the browser tests drive Chromium with an R-Chat stand-in
(pytest-httpserver) that receives the replies.
"""

import html
import re
import time
from pathlib import Path

import pytest
import requests
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

import rchat
from rchat import presence, selectors, services
from rchat.conf import get_setting
from rchat.models import Message
from tests.factories import (
    ChatRoomFactory,
    CredentialFactory,
    MessageFactory,
    UserFactory,
    user_with,
)
from tests.test_browser import SEND_PATH, WAIT_MS, log_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    """A superuser signed in to the test client."""
    user = UserFactory(username="boss", first_name="Boss", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def change_url(room):
    return reverse("admin:rchat_chatroom_change", args=[room.pk])


def live_url_on(page):
    """The URL (with the version shown) the admin page's poll asks."""
    found = re.search(r'id="rchat-live" data-live-url="([^"]+)"', page)
    assert found, "the conversation is live"
    return html.unescape(found.group(1))


def thread_url_on(page):
    """The URL (with the version shown) the inbox thread's poll asks."""
    found = re.search(r'id="rchat-thread"[^>]*hx-get="([^"]+)"', page, re.S)
    assert found, "the thread polls"
    return html.unescape(found.group(1))


def presence_line(page):
    found = re.search(r'<p class="rchat-presence" id="rchat-presence"[^>]*>(.*?)</p>', page, re.S)
    assert found, "the page has a presence line"
    return re.sub(r"<[^>]+>", " ", found.group(1)).split()


def said(page):
    """The presence line as text."""
    return " ".join(presence_line(page))


# --- Admin's conversation, live -----------------------------------------------------------


def test_admin_poll_answers_204_until_a_reply_is_sent_then_shows_it_sent(
    client, operator, httpserver
):
    """The change page's poll costs nothing while nothing changed; once the reply is
    delivered to R-Chat it brings the conversation with the reply "Sent"."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    room = ChatRoomFactory(credential=CredentialFactory(base_url=httpserver.url_for("")))
    MessageFactory(room=room, data="Is it in stock?")
    client.post(change_url(room), {"_reply": "1", "reply-type": "text", "reply-text": "Yes!"})
    reply = Message.objects.get(room=room, direction="out")
    page = client.get(change_url(room)).content.decode()
    assert re.search(rf'id="message-{reply.pk}".*?rchat-status-queued', page, re.S)
    url = live_url_on(page)

    assert client.get(url).status_code == 204
    services.delivery_drain()
    reply.refresh_from_db()
    assert reply.status == "sent"

    answer = client.get(url)
    assert answer.status_code == 200
    fragment = answer.content.decode()
    assert re.search(rf'id="message-{reply.pk}".*?rchat-status-sent', fragment, re.S)
    # The fragment carries the new version: asked again, nothing changed.
    assert client.get(live_url_on(fragment)).status_code == 204


def test_admin_poll_brings_a_new_inbound_message_and_marks_it_read(client, operator, credential):
    room = ChatRoomFactory(credential=credential, chat_id="web-7")
    MessageFactory(room=room, data="Hello")
    url = live_url_on(client.get(change_url(room)).content.decode())
    answer = client.post(
        reverse("rchat:webhook"),
        {"chat_id": "web-7", "message": {"type": "text", "data": "Are you there?"}},
        content_type="application/json",
        HTTP_X_CHATDAY_SIGNATURE_TOKEN=credential.signature_token,
    )
    assert answer.json() == {"status": "SUCCESS"}

    fragment = client.get(url).content.decode()
    assert re.search(r'rchat-msg-in".*?Are you there\?', fragment, re.S)
    room.refresh_from_db()
    assert room.unread_count == 0


def test_admin_poll_shows_a_failed_reply_with_retry_and_retry_queues_it_again(client, operator):
    room = ChatRoomFactory()
    reply = MessageFactory(room=room, direction="out", data="Price list", status="queued")
    url = live_url_on(client.get(change_url(room)).content.decode())
    Message.objects.filter(pk=reply.pk).update(status="failed", last_error="R-Chat said 400")

    fragment = client.get(url).content.decode()
    retry = reverse("admin:rchat_chatroom_retry", args=[room.pk, reply.pk])
    assert re.search(rf'id="message-{reply.pk}".*?Failed.*?action="{retry}"', fragment, re.S)
    assert "R-Chat said 400" in fragment

    answer = client.post(retry)
    assert answer.status_code == 302
    assert answer["Location"] == f"{change_url(room)}#message-{reply.pk}"
    reply.refresh_from_db()
    assert reply.status == "queued"


def test_admin_retry_of_a_message_of_another_room_is_not_found(client, operator):
    room, other = ChatRoomFactory(), ChatRoomFactory()
    reply = MessageFactory(room=other, direction="out", status="failed")
    answer = client.post(reverse("admin:rchat_chatroom_retry", args=[room.pk, reply.pk]))
    assert answer.status_code == 404
    reply.refresh_from_db()
    assert reply.status == "failed"


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("anonymous", 302),  # to admin's sign-in
        ("agent, not staff", 302),  # the inbox's agents are not admin users
        ("staff without view permission", 403),
        ("staff who may view", 200),
    ],
)
def test_admin_poll_needs_staff_and_the_view_permission(client, who, expected):
    room = ChatRoomFactory()
    MessageFactory(room=room)
    if who == "agent, not staff":
        client.force_login(user_with("view_chatroom", is_staff=False))
    elif who == "staff without view permission":
        client.force_login(user_with("view_message", is_staff=True))
    elif who == "staff who may view":
        client.force_login(user_with("view_chatroom", is_staff=True))
    url = reverse("admin:rchat_chatroom_live", args=[room.pk])
    answer = client.get(url)
    assert answer.status_code == expected
    if expected == 302:
        assert "/login/" in answer["Location"]  # a sign-in page
    presence_answer = client.post(
        reverse("admin:rchat_chatroom_presence", args=[room.pk]), {"state": "viewing"}
    )
    assert presence_answer.status_code == (204 if expected == 200 else expected)


def test_admin_retry_needs_the_reply_permission(client):
    room = ChatRoomFactory()
    reply = MessageFactory(room=room, direction="out", status="failed")
    client.force_login(user_with("view_chatroom", is_staff=True))
    page = client.get(change_url(room)).content.decode()
    assert "Retry" not in page
    answer = client.post(reverse("admin:rchat_chatroom_retry", args=[room.pk, reply.pk]))
    assert answer.status_code == 403
    reply.refresh_from_db()
    assert reply.status == "failed"


def test_admin_poll_of_an_unknown_room_is_not_found(client, operator):
    assert client.get(reverse("admin:rchat_chatroom_live", args=[999999])).status_code == 404


def test_the_admin_page_without_script_is_whole(client, operator):
    """The conversation, the reply box and the page's own form are all there; the
    scripts only add the poll and the beats (no inline script)."""
    room = ChatRoomFactory()
    MessageFactory(room=room, data="Hello")
    page = client.get(change_url(room)).content.decode()
    assert "Hello" in page and 'name="_reply"' in page and 'name="_save"' in page
    assert "rchat/admin_live.js" in page and "rchat/presence.js" in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "no inline script"


# --- Presence: the service and what it is read as -----------------------------------------


@pytest.fixture
def agents():
    anong = UserFactory(username="anong", first_name="Anong", last_name="")
    boon = UserFactory(username="boon", first_name="Boon", last_name="")
    return anong, boon


def test_a_colleague_viewing_is_seen_by_the_other_never_by_themself(agents):
    anong, boon = agents
    room, other_room = ChatRoomFactory(), ChatRoomFactory()
    services.presence_report(room=room, user=anong, state="viewing")

    assert [(p.name, p.typing) for p in selectors.room_presence(room=room, user=boon)] == [
        ("Anong", False)
    ]
    assert selectors.room_presence(room=room, user=anong) == []
    assert selectors.room_presence(room=other_room, user=boon) == []

    services.presence_report(room=room, user=boon, state="viewing")
    assert [p.name for p in selectors.room_presence(room=room, user=anong)] == ["Boon"]
    assert [p.name for p in selectors.room_presence(room=room, user=boon)] == ["Anong"]


def test_typing_shows_until_it_stops_or_a_viewing_beat_says_it_stopped(agents):
    anong, boon = agents
    room = ChatRoomFactory()
    now = time.time()
    services.presence_report(room=room, user=anong, state="typing", now=now)

    def anong_typing(at):
        [seen] = selectors.room_presence(room=room, user=boon, now=at)
        return seen.typing

    assert anong_typing(now + 1) is True
    assert anong_typing(now + presence.TYPING_SECONDS + 0.1) is False  # stopped: viewing
    services.presence_report(room=room, user=anong, state="typing", now=now + 2)
    services.presence_report(room=room, user=anong, state="viewing", now=now + 3)
    assert anong_typing(now + 3.1) is False


def test_presence_expires_without_a_beat(agents):
    anong, boon = agents
    room = ChatRoomFactory()
    now = time.time()
    services.presence_report(room=room, user=anong, state="viewing", now=now)
    assert selectors.room_presence(room=room, user=boon, now=now + presence.PRESENCE_SECONDS - 1)
    assert selectors.room_presence(room=room, user=boon, now=now + presence.PRESENCE_SECONDS) == []


def test_leaving_takes_the_colleague_away_at_once(agents):
    anong, boon = agents
    room = ChatRoomFactory()
    services.presence_report(room=room, user=anong, state="typing")
    services.presence_report(room=room, user=boon, state="viewing")
    services.presence_report(room=room, user=anong, state="left")
    assert selectors.room_presence(room=room, user=boon) == []
    # Leaving twice, or without having come, is harmless.
    services.presence_report(room=room, user=anong, state="left")
    services.presence_report(room=room, user=boon, state="left")
    assert caches[get_setting("PRESENCE_CACHE")].get(presence.key(room.pk)) is None


def test_a_room_keeps_one_small_entry_with_only_who_is_there(agents):
    """Beats rewrite one dict per room: one item per agent, who has gone is dropped."""
    anong, boon = agents
    room = ChatRoomFactory()
    now = time.time()
    for beat in range(20):
        services.presence_report(room=room, user=anong, state="viewing", now=now + beat)
    services.presence_report(room=room, user=boon, state="viewing", now=now + 40)
    stored = caches[get_setting("PRESENCE_CACHE")].get(presence.key(room.pk))
    assert list(stored) == [boon.pk]


def test_presence_costs_no_database_query(agents, django_assert_num_queries):
    anong, boon = agents
    room = ChatRoomFactory()
    with django_assert_num_queries(0):
        services.presence_report(room=room, user=anong, state="typing")
        selectors.room_presence(room=room, user=boon)


def test_an_unknown_state_is_refused(agents):
    with pytest.raises(ValueError, match="Unknown presence state"):
        services.presence_report(room=ChatRoomFactory(), user=agents[0], state="dancing")


def test_typing_colleagues_come_first_then_by_name():
    room = ChatRoomFactory()
    me = UserFactory()
    for name, state in (("Chai", "viewing"), ("Arun", "viewing"), ("Dao", "typing")):
        services.presence_report(
            room=room, user=UserFactory(first_name=name, last_name=""), state=state
        )
    assert [p.name for p in selectors.room_presence(room=room, user=me)] == ["Dao", "Arun", "Chai"]


# --- Presence on the pages: the beats and the polls -----------------------------------------


@pytest.fixture
def two_agents(agents):
    """Anong and Boon, inbox agents who may see and reply, each signed in to a client."""
    from django.contrib.auth.models import Permission

    may = Permission.objects.filter(
        content_type__app_label="rchat", codename__in=["view_chatroom", "reply_chatroom"]
    )
    clients = []
    for user in agents:
        user.user_permissions.set(may)
        agent_client = Client()
        agent_client.force_login(user)
        clients.append(agent_client)
    return clients


def room_url(room, name="rchat:inbox-room"):
    return reverse(name, kwargs={"pk": room.pk})


def test_the_inbox_thread_poll_says_who_else_is_viewing_and_typing(two_agents):
    anong, boon = two_agents
    room = ChatRoomFactory()
    MessageFactory(room=room, data="Hello")
    beat = room_url(room, "rchat:inbox-presence")
    boon_page = boon.get(room_url(room)).content.decode()
    assert presence_line(boon_page) == []
    poll = thread_url_on(boon_page)
    assert boon.get(poll).status_code == 204

    assert anong.post(beat, {"state": "viewing"}).status_code == 204
    fragment = boon.get(poll).content.decode()
    assert said(fragment) == "Anong is also viewing"
    poll = thread_url_on(fragment)
    # Another beat of the same: the thread is not drawn again.
    anong.post(beat, {"state": "viewing"})
    assert boon.get(poll).status_code == 204

    anong.post(beat, {"state": "typing"})
    fragment = boon.get(poll).content.decode()
    assert said(fragment) == "Anong is typing…"

    # Anong's own page names Boon once Boon's page beats, never Anong.
    boon.post(beat, {"state": "viewing"})
    assert said(anong.get(room_url(room)).content.decode()) == "Boon is also viewing"

    anong.post(beat, {"state": "left"})
    assert presence_line(boon.get(thread_url_on(fragment)).content.decode()) == []


def test_an_inbox_agent_and_an_admin_operator_see_each_other(client, operator, two_agents):
    anong, _boon = two_agents
    room = ChatRoomFactory()
    url = live_url_on(client.get(change_url(room)).content.decode())
    anong.post(room_url(room, "rchat:inbox-presence"), {"state": "typing"})
    assert said(client.get(url).content.decode()) == "Anong is typing…"

    client.post(reverse("admin:rchat_chatroom_presence", args=[room.pk]), {"state": "viewing"})
    assert said(anong.get(room_url(room)).content.decode()) == "Boss is also viewing"


@pytest.mark.parametrize(
    ("state", "status"), [("viewing", 204), ("typing", 204), ("left", 204), ("", 400), ("x", 400)]
)
def test_the_inbox_beat_accepts_the_three_states_and_says_why_not_others(two_agents, state, status):
    anong, _boon = two_agents
    room = ChatRoomFactory()
    answer = anong.post(room_url(room, "rchat:inbox-presence"), {"state": state})
    assert answer.status_code == status
    if status == 400:
        assert "viewing, typing, left" in answer.json()["error"]


def test_the_inbox_beat_is_a_post_with_csrf_from_someone_who_may_see(agents):
    room = ChatRoomFactory()
    url = room_url(room, "rchat:inbox-presence")
    anonymous = Client()
    assert anonymous.post(url, {"state": "viewing"}).status_code == 302  # to sign in
    nobody = Client()
    nobody.force_login(user_with("view_message"))
    assert nobody.post(url, {"state": "viewing"}).status_code == 403
    careful = Client(enforce_csrf_checks=True)
    careful.force_login(user_with("view_chatroom"))
    assert careful.post(url, {"state": "viewing"}).status_code == 403  # no CSRF token
    assert careful.get(url).status_code == 405
    assert selectors.room_presence(room=room, user=agents[0]) == []


def test_the_inbox_beat_for_an_unknown_room_is_not_found(two_agents):
    anong, _boon = two_agents
    url = reverse("rchat:inbox-presence", kwargs={"pk": 999999})
    assert anong.post(url, {"state": "viewing"}).status_code == 404


# --- Query counts: the polls stay flat as threads grow --------------------------------------


def _fill(room, messages):
    for n in range(messages):
        MessageFactory(room=room, data=f"question {n}", text=f"question {n}")
        MessageFactory(room=room, direction="out", data=f"answer {n}", status="sent")


@pytest.mark.parametrize("answer", [200, 204])
def test_the_admin_poll_runs_the_same_few_queries_for_4_or_80_messages(
    client, operator, answer, django_assert_max_num_queries
):
    counts = []
    for messages in (2, 40):
        room = ChatRoomFactory()
        _fill(room, messages)
        services.presence_report(room=room, user=UserFactory(), state="viewing")
        url = live_url_on(client.get(change_url(room)).content.decode())
        if answer == 200:
            url = re.sub(r"v=[^&]*", "v=old", url)
        with django_assert_max_num_queries(10) as captured:
            assert client.get(url).status_code == answer
        counts.append(len(captured))
    assert counts[0] == counts[1], counts


def test_the_inbox_thread_poll_and_the_beat_stay_flat_with_colleagues(
    two_agents, django_assert_max_num_queries
):
    anong, boon = two_agents
    counts = []
    for messages in (2, 40):
        room = ChatRoomFactory()
        _fill(room, messages)
        for _ in range(3):
            services.presence_report(room=room, user=UserFactory(), state="typing")
        with django_assert_max_num_queries(6) as beat:
            anong.post(room_url(room, "rchat:inbox-presence"), {"state": "viewing"})
        with django_assert_max_num_queries(15) as poll:
            assert boon.get(room_url(room, "rchat:inbox-thread")).status_code == 200
        counts.append((len(beat), len(poll)))
    assert counts[0] == counts[1], counts


# --- W007 / E013: the cache presence is kept in -------------------------------------------

PER_PROCESS = {
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}
SHARED = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x/1"}


@pytest.mark.parametrize("backend", ["locmem", "dummy"])
def test_w006_warns_when_presence_is_kept_per_process_and_debug_is_off(settings, backend):
    from rchat.checks import check_presence_cache

    settings.DEBUG = False
    settings.CACHES = {"default": PER_PROCESS[backend]}
    (warning,) = check_presence_cache()
    assert warning.id == "rchat.W007" and "do not see each other" in warning.msg
    assert "PRESENCE_CACHE" in warning.hint and "RedisCache" in warning.hint


def test_w006_is_quiet_with_a_shared_cache_or_while_debugging(settings):
    from rchat.checks import check_presence_cache

    settings.DEBUG = False
    settings.CACHES = {"default": SHARED, "local": PER_PROCESS["locmem"]}
    assert check_presence_cache() == []
    settings.RCHAT = {**settings.RCHAT, "PRESENCE_CACHE": "local"}
    assert [m.id for m in check_presence_cache()] == ["rchat.W007"]
    settings.DEBUG = True  # one runserver process: presence works there
    assert check_presence_cache() == []


def test_e012_names_a_presence_cache_that_does_not_exist(settings):
    from rchat.checks import check_presence_cache

    settings.RCHAT = {**settings.RCHAT, "PRESENCE_CACHE": "nope"}
    (error,) = check_presence_cache()
    assert error.id == "rchat.E013" and "'nope'" in error.msg and "default" in error.hint


# --- One template draws a message ------------------------------------------------------------

TEMPLATES = Path(rchat.__file__).parent / "templates"
SHARED_BUBBLE = TEMPLATES / "rchat" / "_message.html"
#: What only the drawing of a message's body or status has (an image or a sticker, a
#: map link, a reply's status), as the two copies of it once had.
BUBBLE_MARKUP = re.compile(
    r"rchat-bubble|rchat-sticker|rchat-location|rchat-status|rchat-thumb|\.kind ==|map_url"
    r"|\.package_id }}/"
)


def test_no_template_but_the_shared_one_draws_a_message():
    drawing = sorted(
        str(path.relative_to(TEMPLATES))
        for path in TEMPLATES.rglob("*.html")
        if BUBBLE_MARKUP.search(path.read_text(encoding="utf-8"))
    )
    assert drawing == ["rchat/_message.html"]
    assert SHARED_BUBBLE.is_file()


def _messages(page):
    """``{message id: its bubble's HTML}``, with what differs by design made equal: the
    Retry form's URL and token, and admin's "#id" link."""
    found = {}
    for match in re.finditer(
        r'<div class="rchat-msg [^"]*" id="message-(\d+)".*?</div>\s*</div>', page, re.S
    ):
        bubble = match.group(0)
        bubble = re.sub(r'action="[^"]*"', 'action="…"', bubble)
        bubble = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", bubble)
        bubble = re.sub(r'<a class="rchat-msg-link"[^>]*>#\d+</a>', "", bubble)
        found[int(match.group(1))] = " ".join(bubble.split())
    return found


def test_admin_and_the_inbox_draw_each_message_the_same(client, operator):
    """Every type and status, rendered by both pages: the same HTML, but for the Retry
    URL and admin's link to the message."""
    room = ChatRoomFactory()
    MessageFactory(room=room, data="Hello\nthere", text="Hello\nthere")
    MessageFactory(room=room, type="image", data={"url": "https://cdn.example/p.jpg"}, text="")
    MessageFactory(room=room, type="file", data={"url": "https://cdn.example/a.pdf", "name": "a"})
    MessageFactory(room=room, type="sticker", data={"package_id": "1", "sticker_id": "2"})
    MessageFactory(room=room, type="sticker", data={"sticker_url": "https://cdn.example/s.png"})
    MessageFactory(room=room, type="location", data={"latitude": 13.7, "longitude": 100.5})
    MessageFactory(room=room, type="something-new", data={"x": 1})
    for status in ("queued", "sending", "sent", "failed", "cancelled"):
        MessageFactory(
            room=room,
            direction="out",
            status=status,
            data=status,
            author=operator,
            last_error="500",
        )
    admin_page = client.get(change_url(room)).content.decode()
    inbox_page = client.get(room_url(room)).content.decode()

    in_admin, in_inbox = _messages(admin_page), _messages(inbox_page)
    assert len(in_admin) == room.messages.count() == 12
    assert in_admin == in_inbox
    # What differs by design: each page's Retry, and the "#id" links in admin only.
    [failed] = room.messages.filter(status="failed")
    assert reverse("admin:rchat_chatroom_retry", args=[room.pk, failed.pk]) in admin_page
    assert reverse("rchat:inbox-retry", args=[room.pk, failed.pk]) in inbox_page
    message_link = reverse("admin:rchat_message_change", args=[failed.pk])
    assert message_link in admin_page and message_link not in inbox_page


# --- In a real browser ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_admin_shows_a_reply_queued_then_sent_and_a_new_message_without_reload(
    browser,
    live_server,
    httpserver,
    credential,
):
    """An operator replies from admin: the page says Queued, then Sent once the
    delivery reaches R-Chat, and a message the end user sends appears, all without a
    reload."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential.base_url = httpserver.url_for("").rstrip("/")
    credential.save()
    room = ChatRoomFactory(credential=credential, chat_id="line-55", display_name="Malee")
    MessageFactory(room=room, data="Do you ship to Chiang Mai?")
    operator = UserFactory(username="root", is_staff=True, is_superuser=True)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, operator)
    page.goto(f"{live_server.url}{change_url(room)}")
    page.fill("textarea[name=reply-text]", "Yes, in 2-3 days.")
    page.click("input[name=_reply]")
    reply = page.locator(".rchat-msg-out", has_text="Yes, in 2-3 days.")
    reply.locator(".rchat-status-queued").wait_for(timeout=WAIT_MS)
    page.evaluate("window.__rchatNoReload = true")

    # The worker's part: the queued reply is delivered to R-Chat.
    services.delivery_drain()
    reply.locator(".rchat-status-sent").wait_for(timeout=WAIT_MS)
    [(request, _response)] = httpserver.log
    assert request.get_json()["message"] == {"type": "text", "data": "Yes, in 2-3 days."}

    answer = requests.post(
        f"{live_server.url}/rchat/webhook/",
        json={"chat_id": "line-55", "message": {"type": "text", "data": "Great, thank you!"}},
        headers={"X-Chatday-Signature-Token": credential.signature_token},
        timeout=10,
    )
    assert answer.json() == {"status": "SUCCESS"}
    page.locator(".rchat-msg-in", has_text="Great, thank you!").wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.__rchatNoReload") is True
    assert script_errors == []
    page.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_agents_on_one_conversation_see_each_other_view_type_and_leave(
    browser,
    live_server,
):
    """B sees "A is also viewing", then "A is typing…" while A types, and nothing once
    A has left (sooner than presence would expire on its own)."""
    room = ChatRoomFactory(display_name="Wanida")
    MessageFactory(room=room, data="สวัสดีค่ะ")
    anong = user_with(username="anong", first_name="Anong", last_name="", is_staff=False)
    boon = user_with(username="boon", first_name="Boon", last_name="", is_staff=False)
    conversation = f"{live_server.url}{room_url(room)}"

    pages = {}
    script_errors = []
    for name, user in (("a", anong), ("b", boon)):
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # own context
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        log_in(page, live_server, user)
        page.goto(conversation)
        page.wait_for_selector("text=สวัสดีค่ะ")
        pages[name] = page
    a, b = pages["a"], pages["b"]
    a_line, b_line = a.locator("#rchat-presence"), b.locator("#rchat-presence")

    b_line.get_by_text("Anong is also viewing").wait_for(timeout=WAIT_MS)
    a_line.get_by_text("Boon is also viewing").wait_for(timeout=WAIT_MS)
    assert "Anong" not in a_line.inner_text() and "Boon" not in b_line.inner_text()

    a.click("textarea[name=text]")
    a.keyboard.type("Let me check that for you", delay=50)
    b_line.get_by_text("Anong is typing…").wait_for(timeout=WAIT_MS)

    left = time.monotonic()
    a.goto(f"{live_server.url}/rchat/inbox/")  # A leaves the conversation
    b_line.get_by_text("Anong").wait_for(state="detached", timeout=WAIT_MS)
    assert time.monotonic() - left < presence.PRESENCE_SECONDS
    assert b.locator("#rchat-presence").inner_text().strip() == ""
    assert script_errors == []
    for page in pages.values():
        page.close()
