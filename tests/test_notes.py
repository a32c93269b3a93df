"""Private notes in a conversation and their @mentions: the services, the inbox, admin,
the API, what each page costs, and one colleague mentioning another in a real browser.
"""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from rchat import selectors, services
from rchat.models import Mention, Message, Note
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory, user_with
from tests.test_api import answer_schema  # noqa: F401  (a fixture: responses against the schema)
from tests.test_browser import WAIT_MS, log_in

pytestmark = pytest.mark.django_db


def agent(username, **fields):
    """An agent who may see and reply (not staff: agents sign in on the site)."""
    return user_with(username=username, is_staff=False, **fields)


def mentioned(note):
    return sorted(user.get_username() for user in note.mentioned.all())


@pytest.fixture
def kanya():
    return agent("kanya", first_name="Kanya")


@pytest.fixture
def somchai():
    return agent("somchai", first_name="Somchai")


@pytest.fixture
def room():
    return ChatRoomFactory(display_name="Malee")


# --- Writing a note: the service -------------------------------------------------------------


def test_a_note_is_saved_stripped_with_its_author_and_mentions(room, kanya, somchai):
    note = services.note_add(room=room, author=kanya, body="  ask @somchai about the refund \n")
    note.refresh_from_db()
    assert (note.room, note.author, note.body) == (room, kanya, "ask @somchai about the refund")
    assert mentioned(note) == ["somchai"]
    assert Mention.objects.get(note=note).seen_at is None


@pytest.mark.parametrize(
    "body",
    [
        "ฝาก@somchai ดูหน่อย",  # Thai right before the "@"
        "คุณ@somchaiช่วยดูหน่อยค่ะ",  # and right after the name: the script changes
        "@somchai",
        "(@somchai)",
        "ขอบคุณ @somchai.",  # a full stop ends the sentence, not the name
        "@SomChai ช่วยด้วย",  # any case
        "cc:@somchai,@somchai",  # twice: one mention
    ],
)
def test_a_mention_is_found_in_thai_text_and_around_punctuation(room, kanya, somchai, body):
    note = services.note_add(room=room, author=kanya, body=body)
    assert mentioned(note) == ["somchai"]


def test_a_thai_username_is_mentioned_when_a_space_follows_it(room, kanya):
    agent("สมหญิง")
    assert mentioned(services.note_add(room=room, author=kanya, body="ฝาก@สมหญิง ดูหน่อย")) == [
        "สมหญิง"
    ]


@pytest.mark.parametrize(
    "body",
    [
        "@nobody please look",  # no such user
        "mail somchai@example.com",  # an e-mail address
        "somchai@somchai",  # "@" inside a word
        "@somchai2 is someone else",  # a longer name nobody has
        "@ somchai",  # a space after "@"
    ],
)
def test_unknown_names_and_addresses_are_just_text(room, kanya, somchai, body):
    note = services.note_add(room=room, author=kanya, body=body)
    assert note.body == body
    assert not Mention.objects.exists()


def test_the_longest_name_a_user_has_wins(room, kanya, somchai):
    agent("somchai.k")
    assert mentioned(services.note_add(room=room, author=kanya, body="@somchai.k ok")) == [
        "somchai.k"
    ]
    assert mentioned(services.note_add(room=room, author=kanya, body="@somchai. ok")) == ["somchai"]


def test_the_author_never_mentions_themself(room, kanya, somchai):
    note = services.note_add(room=room, author=kanya, body="note to self @kanya, and @somchai")
    assert mentioned(note) == ["somchai"]


def test_only_active_people_who_may_open_the_inbox_are_mentioned(room, kanya):
    agent("gone", is_active=False)
    UserFactory(username="outsider", is_staff=True)  # staff, but no rchat permission
    UserFactory(username="root", is_superuser=True, is_staff=False)
    group = Group.objects.create(name="helpers")
    group.permissions.set(Permission.objects.filter(codename="view_chatroom"))
    UserFactory(username="viagroup", is_staff=False).groups.add(group)
    note = services.note_add(room=room, author=kanya, body="@gone @outsider @root @viagroup @kanya")
    assert mentioned(note) == ["root", "viagroup"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "Write something in the note."),
        ("  \n\t ", "Write something in the note."),
        ("@somchai " + "x" * 4992, "at most 5000 characters"),
        ("@somchai a\x00b", "NUL"),
    ],
)
def test_a_bad_note_is_refused_with_its_reason_and_nothing_is_saved(
    room, kanya, somchai, body, reason
):
    with pytest.raises(ValidationError, match=reason):
        services.note_add(room=room, author=kanya, body=body)
    assert not Note.objects.exists() and not Mention.objects.exists()


def test_a_note_of_exactly_the_longest_length_is_kept(room, kanya):
    assert len(services.note_add(room=room, author=kanya, body="ก" * 5000).body) == 5000


def test_a_note_is_never_sent_to_rchat(
    kanya, somchai, httpserver, celery_eager, django_capture_on_commit_callbacks
):
    """No Message row, nothing queued on commit, no request to R-Chat."""
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    room = ChatRoomFactory(credential=credential)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.note_add(room=room, author=kanya, body="@somchai the customer is upset")
    assert callbacks == []
    assert not Message.objects.exists()
    assert httpserver.log == []
    room.refresh_from_db()
    assert room.last_message_preview != "@somchai the customer is upset"


def test_mentions_seen_marks_that_users_mentions_in_that_room_in_one_query(
    room, kanya, somchai, django_assert_num_queries
):
    other_room = ChatRoomFactory()
    lek = agent("lek")
    services.note_add(room=room, author=kanya, body="@somchai @lek one")
    services.note_add(room=room, author=kanya, body="@somchai two")
    services.note_add(room=other_room, author=kanya, body="@somchai elsewhere")
    with django_assert_num_queries(1):
        assert services.mentions_seen(user=somchai, room=room) == 2
    assert selectors.mention_unseen_count(user=somchai) == 1
    assert selectors.mention_unseen_count(user=lek) == 1
    assert services.mentions_seen(user=somchai, room=room) == 0


def test_a_note_is_deleted_by_its_author_or_with_the_permission(room, kanya, somchai):
    note = services.note_add(room=room, author=kanya, body="@somchai hi")
    with pytest.raises(PermissionDenied):
        services.note_delete(note=note, user=somchai)
    services.note_delete(note=note, user=kanya)
    assert not Note.objects.exists() and not Mention.objects.exists()
    other = services.note_add(room=room, author=kanya, body="another")
    services.note_delete(note=other, user=user_with("view_chatroom", "delete_note"))
    assert not Note.objects.exists()


# --- Selectors ------------------------------------------------------------------------------


def test_room_notes_are_the_latest_ones_oldest_first(room, kanya):
    for n in range(5):
        services.note_add(room=room, author=kanya, body=f"note {n}")
    notes, older = selectors.room_notes(room=room, limit=3)
    assert [note.body for note in notes] == ["note 2", "note 3", "note 4"] and older
    notes, older = selectors.room_notes(room=room, limit=5)
    assert len(notes) == 5 and not older


def test_mention_list_is_newest_first_and_keeps_unseen_ones_on_request(room, kanya, somchai):
    first = services.note_add(room=room, author=kanya, body="@somchai first")
    services.note_add(room=ChatRoomFactory(), author=kanya, body="@somchai second")
    services.mentions_seen(user=somchai, room=room)
    rows = list(selectors.mention_list(user=somchai))
    assert [row.note.body for row in rows] == ["@somchai second", "@somchai first"]
    unseen = list(selectors.mention_list(user=somchai, unseen=True))
    assert [row.note.body for row in unseen] == ["@somchai second"]
    assert rows[1].note == first and rows[1].seen_at is not None


# --- The inbox ------------------------------------------------------------------------------


def room_url(room, name="rchat:inbox-room", **kwargs):
    return reverse(name, kwargs={"pk": room.pk, **kwargs})


def notes_panel(page):
    """The HTML of the conversation's notes panel."""
    html = page.content.decode()
    return html.split('id="rchat-notes"', 1)[1].split("</details>", 1)[0]


def thread(page):
    """The HTML of the message thread."""
    html = page.content.decode()
    return html.split('id="rchat-messages"', 1)[1].split("</section>", 1)[0]


def test_an_agent_adds_a_note_shown_apart_from_the_thread(client, room, kanya, somchai):
    client.force_login(kanya)
    page = client.get(room_url(room))
    panel = notes_panel(page)
    assert "Private note — not sent to the customer" in panel
    assert f'action="{room_url(room, "rchat:inbox-note-add")}' in panel
    assert 'name="csrfmiddlewaretoken"' in panel
    assert '<label for="id_body">Private note</label>' in panel
    response = client.post(
        room_url(room, "rchat:inbox-note-add") + "?view=mine",
        {"body": "ฝาก@somchai ดูหน่อย <b>now</b>"},
        follow=True,
    )
    landed = response.redirect_chain[-1][0]
    assert landed.startswith(room_url(room)) and "view=mine" in landed
    assert landed.endswith("#rchat-notes")
    panel = notes_panel(response)
    assert "Note added." in response.content.decode()
    assert '<mark class="rchat-mention">@somchai</mark>' in panel
    assert "&lt;b&gt;now&lt;/b&gt;" in panel  # escaped, not markup
    assert "Kanya" in panel
    assert "ดูหน่อย" not in thread(response)
    assert not Message.objects.exists()


def test_another_agent_sees_the_note_with_their_mention_marked(client, room, kanya, somchai):
    services.note_add(room=room, author=kanya, body="@somchai please call her")
    client.force_login(somchai)
    panel = notes_panel(client.get(room_url(room)))
    assert '<mark class="rchat-mention is-you">@somchai</mark> please call her' in panel


@pytest.mark.parametrize(
    ("body", "reason"),
    [("   ", "Write something in the note."), ("ยาว" * 2000, "at most 5000 characters")],
)
def test_a_refused_note_shows_the_reason_and_the_text_as_typed(client, room, kanya, body, reason):
    client.force_login(kanya)
    page = client.post(room_url(room, "rchat:inbox-note-add"), {"body": body})
    assert page.status_code == 200
    panel = notes_panel(page)
    assert reason in panel and 'role="alert"' in panel
    textarea = panel.split("<textarea", 1)[1].split("</textarea>", 1)[0]
    assert body in textarea and "autofocus" in textarea
    # Still the conversation page, with the reply box and the thread.
    assert 'class="rchat-reply"' in page.content.decode()
    assert not Note.objects.exists()


def test_a_reader_sees_notes_but_cannot_add_or_delete_one(client, room, kanya):
    note = services.note_add(room=room, author=kanya, body="VIP customer")
    reader = user_with("view_chatroom", username="reader")
    client.force_login(reader)
    panel = notes_panel(client.get(room_url(room)))
    assert "VIP customer" in panel and "<textarea" not in panel
    assert client.post(room_url(room, "rchat:inbox-note-add"), {"body": "x"}).status_code == 403
    delete = room_url(room, "rchat:inbox-note-delete", note_pk=note.pk)
    assert client.post(delete).status_code == 403
    assert Note.objects.count() == 1


def test_without_inbox_access_notes_and_mentions_are_refused(client, room, kanya):
    services.note_add(room=room, author=kanya, body="secret")
    add = room_url(room, "rchat:inbox-note-add")
    anonymous = client.get(reverse("rchat:inbox-mentions"))
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    assert "login" in client.post(add, {"body": "x"})["Location"]
    client.force_login(user_with("add_credential", username="stranger"))
    assert client.get(room_url(room)).status_code == 403
    assert client.get(reverse("rchat:inbox-mentions")).status_code == 403
    assert client.post(add, {"body": "x"}).status_code == 403
    assert client.get(add).status_code in (403, 405)
    assert Note.objects.count() == 1


def test_an_author_deletes_their_note_and_a_colleague_may_not(client, room, kanya, somchai):
    note = services.note_add(room=room, author=kanya, body="typo")
    delete = room_url(room, "rchat:inbox-note-delete", note_pk=note.pk)
    client.force_login(somchai)
    assert delete not in notes_panel(client.get(room_url(room)))
    assert client.post(delete).status_code == 403
    client.force_login(kanya)
    assert delete in notes_panel(client.get(room_url(room)))
    response = client.post(delete, follow=True)
    assert "Note deleted." in response.content.decode()
    assert not Note.objects.exists()
    other_room = ChatRoomFactory()
    note = services.note_add(room=room, author=kanya, body="mine")
    elsewhere = room_url(other_room, "rchat:inbox-note-delete", note_pk=note.pk)
    assert client.post(elsewhere).status_code == 404


def badge(page):
    html = page.content.decode()
    return html.split('id="rchat-mentions-badge"', 1)[1].split("</a>", 1)[0]


def test_the_mention_badge_counts_unseen_mentions_and_opening_the_room_clears_them(
    client, room, kanya, somchai
):
    other_room = ChatRoomFactory(display_name="Somsak")
    services.note_add(room=room, author=kanya, body="@somchai first")
    services.note_add(room=other_room, author=kanya, body="@somchai second")
    client.force_login(somchai)
    inbox = client.get(reverse("rchat:inbox"))
    assert '<span class="rchat-mention-count">2</span>' in badge(inbox)
    assert reverse("rchat:inbox-mentions") in inbox.content.decode()
    # The room list's poll carries the badge too (it replaces the tabs).
    polled = client.get(reverse("rchat:inbox-rooms"))
    assert '<span class="rchat-mention-count">2</span>' in badge(polled)

    listed = client.get(reverse("rchat:inbox-mentions"))
    html = listed.content.decode()
    assert html.index("@somchai second") < html.index("@somchai first")
    assert f'href="{room_url(room)}#rchat-notes"' in html
    assert f'href="{room_url(other_room)}#rchat-notes"' in html
    assert "by Kanya" in html and html.count("rchat-chip-new") == 2
    # The list itself marks nothing seen.
    assert selectors.mention_unseen_count(user=somchai) == 2

    opened = client.get(room_url(room))
    assert '<span class="rchat-mention-count">1</span>' in badge(opened)
    assert Mention.objects.get(note__room=room).seen_at is not None
    client.get(room_url(other_room))
    cleared = client.get(reverse("rchat:inbox-mentions"))
    assert "rchat-mention-count" not in badge(cleared)
    assert "rchat-chip-new" not in cleared.content.decode()


def test_opening_a_room_does_not_clear_a_colleagues_mentions(client, room, kanya, somchai):
    services.note_add(room=room, author=kanya, body="@somchai look")
    client.force_login(agent("lek"))
    client.get(room_url(room))
    assert selectors.mention_unseen_count(user=somchai) == 1


# --- Admin ----------------------------------------------------------------------------------


def admin_room(room):
    return reverse("admin:rchat_chatroom_change", args=[room.pk])


def test_admin_room_page_shows_the_notes_and_adds_one(client, operator, room, somchai):
    services.note_add(room=room, author=somchai, body="@boss refund approved?")
    page = client.get(admin_room(room)).content.decode()
    section = page.split('id="rchat-notes"', 1)[1].split("</section>", 1)[0]
    assert '<mark class="rchat-mention is-you">@boss</mark> refund approved?' in section
    assert "Private note — not sent to the customer" in section
    assert 'name="_note"' in section
    # Opening the room's page in admin is opening the room.
    assert selectors.mention_unseen_count(user=operator) == 0

    response = client.post(admin_room(room), {"_note": "1", "note-body": "yes @somchai"})
    assert response.status_code == 302 and response["Location"].endswith("#rchat-notes")
    note = Note.objects.latest("id")
    assert (note.author, note.body, mentioned(note)) == (operator, "yes @somchai", ["somchai"])
    assert not Message.objects.exists()
    room.refresh_from_db()
    assert room.status == "open"


def test_admin_a_refused_note_keeps_the_text_and_shows_why(client, operator, room):
    page = client.post(admin_room(room), {"_note": "1", "note-body": "x" * 5001})
    assert page.status_code == 200
    html = page.content.decode()
    assert "at most 5000 characters" in html and "x" * 5001 in html
    assert not Note.objects.exists()


def test_admin_without_reply_permission_cannot_add_a_note(client, room):
    client.force_login(user_with("view_chatroom", username="viewer", is_staff=True))
    page = client.get(admin_room(room)).content.decode()
    assert 'name="_note"' not in page
    assert client.post(admin_room(room), {"_note": "1", "note-body": "hi"}).status_code == 403
    assert not Note.objects.exists()


def test_admin_note_list_searches_and_deletes_notes(client, operator, room, somchai):
    services.note_add(room=room, author=somchai, body="ลูกค้าขอคืนเงิน @boss")
    services.note_add(room=room, author=somchai, body="something else")
    changelist = reverse("admin:rchat_note_changelist")
    page = client.get(changelist, {"q": "คืนเงิน"}).content.decode()
    assert "ลูกค้าขอคืนเงิน" in page and "something else" not in page
    assert "Malee" in page and "somchai" in page
    note = Note.objects.get(body__startswith="ลูกค้า")
    detail = client.get(reverse("admin:rchat_note_change", args=[note.pk])).content.decode()
    inline = detail.split('id="mentions-group"', 1)[1]
    assert "Mentions (read-only)" in inline and "boss" in inline
    assert "rchat_note_add" not in client.get(changelist).content.decode()
    deleted = client.post(reverse("admin:rchat_note_delete", args=[note.pk]), {"post": "yes"})
    assert deleted.status_code == 302
    assert list(Note.objects.values_list("body", flat=True)) == ["something else"]
    assert not Mention.objects.exists()


# --- The API --------------------------------------------------------------------------------


@pytest.fixture
def api(kanya):
    client = APIClient()
    client.force_authenticate(kanya)
    return client


def api_url(name, **kwargs):
    return reverse(f"rchat:api:{name}", kwargs=kwargs)


def test_api_adds_a_note_and_lists_the_rooms_notes(api, room, kanya, somchai):
    url = api_url("room-notes", pk=room.pk)
    added = api.post(url, {"body": " ฝาก@somchai ดูหน่อย "}, format="json")
    assert added.status_code == 201
    body = added.json()
    assert body["body"] == "ฝาก@somchai ดูหน่อย" and body["room"] == room.pk
    assert body["author"] == {"id": kanya.pk, "username": "kanya"}
    assert body["mentioned"] == [{"id": somchai.pk, "username": "somchai"}]
    api.post(url, {"body": "second"}, format="json")
    listed = api.get(url).json()
    assert [row["body"] for row in listed["results"]] == ["second", "ฝาก@somchai ดูหน่อย"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"body": "   "}, "Write something in the note."),
        ({"body": "x" * 5001}, "at most 5000 characters"),
        ({}, "required"),
        ({"body": ["a list"]}, "valid string"),
    ],
)
def test_api_a_bad_note_is_a_400_with_the_reason(api, room, payload, reason):
    answer = api.post(api_url("room-notes", pk=room.pk), payload, format="json")
    assert answer.status_code == 400
    assert reason in str(answer.json()["errors"]["body"])
    assert "detail" in answer.json()
    assert not Note.objects.exists()


def test_api_notes_need_the_inbox_permissions(room):
    url = api_url("room-notes", pk=room.pk)
    assert APIClient().get(url).status_code == 401
    reader = APIClient()
    reader.force_authenticate(user_with("view_chatroom", username="reader"))
    assert reader.get(url).status_code == 200
    assert reader.post(url, {"body": "x"}, format="json").status_code == 403
    stranger = APIClient()
    stranger.force_authenticate(user_with("add_credential", username="stranger"))
    assert stranger.get(url).status_code == 403
    assert stranger.get(api_url("mention-list")).status_code == 403
    assert not Note.objects.exists()
    assert APIClient().get(api_url("room-notes", pk=999999)).status_code == 401


def test_api_lists_the_callers_mentions_unseen_ones_on_request(room, kanya, somchai):
    first = services.note_add(room=room, author=kanya, body="@somchai one")
    services.note_add(room=ChatRoomFactory(chat_id="line-2"), author=kanya, body="@somchai two")
    services.note_add(room=room, author=somchai, body="@kanya for kanya")
    services.mentions_seen(user=somchai, room=room)
    client = APIClient()
    client.force_authenticate(somchai)
    every = client.get(api_url("mention-list")).json()["results"]
    assert [row["note"]["body"] for row in every] == ["@somchai two", "@somchai one"]
    assert every[1]["note"]["id"] == first.pk and every[1]["seen_at"] is not None
    assert every[0]["room"]["chat_id"] == "line-2"
    assert every[0]["note"]["author"]["username"] == "kanya"
    unseen = client.get(api_url("mention-list"), {"unseen": "1"}).json()["results"]
    assert [row["note"]["body"] for row in unseen] == ["@somchai two"]
    bad = client.get(api_url("mention-list"), {"unseen": "perhaps"})
    assert bad.status_code == 400 and "unseen" in bad.json()["errors"]


def test_api_note_answers_match_the_schema(api, room, somchai, answer_schema):  # noqa: F811
    paths = api.get(api_url("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"get", "post"} <= set(paths["paths"]["/rchat/api/rooms/{id}/notes/"])
    assert "get" in paths["paths"]["/rchat/api/mentions/"]
    notes = "/rchat/api/rooms/{id}/notes/"
    url = api_url("room-notes", pk=room.pk)
    answer_schema(api.post(url, {"body": "@somchai hi"}, format="json"), notes, "post")
    answer_schema(api.post(url, {"body": ""}, format="json"), notes, "post")
    answer_schema(api.get(url), notes, "get")
    client = APIClient()
    client.force_authenticate(somchai)
    answer_schema(client.get(api_url("mention-list")), "/rchat/api/mentions/", "get")


# --- What each page costs -------------------------------------------------------------------


def _notes_and_mentions(room, author, reader, notes, mentions):
    """``notes`` notes in ``room``, ``mentions`` of them mentioning ``reader`` (in rooms of
    their own, so that opening ``room`` leaves them unseen)."""
    colleague = agent(f"colleague{notes}")
    for n in range(notes):
        services.note_add(room=room, author=author, body=f"note {n} @{colleague.username}")
    for n in range(mentions):
        services.note_add(room=ChatRoomFactory(), author=author, body=f"@{reader.username} {n}")


def _queries(client, url, **params):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params).status_code == 200
    return len(queries)


@pytest.mark.parametrize("page", ["conversation", "mentions", "inbox", "api-notes", "api-mentions"])
def test_pages_cost_the_same_for_1_or_50_notes_and_30_mentions(
    client, kanya, somchai, page, django_assert_max_num_queries
):
    api = APIClient()
    api.force_authenticate(somchai)
    client.force_login(somchai)
    urls = {}
    counts = []
    for notes, mentions in ((1, 1), (50, 30)):
        room = ChatRoomFactory()
        _notes_and_mentions(room, kanya, somchai, notes, mentions)
        urls = {
            "conversation": (client, room_url(room)),
            "mentions": (client, reverse("rchat:inbox-mentions")),
            "inbox": (client, reverse("rchat:inbox")),
            "api-notes": (api, api_url("room-notes", pk=room.pk)),
            "api-mentions": (api, api_url("mention-list")),
        }
        who, url = urls[page]
        who.get(url)  # per-process caches (permissions, content types) filled first
        if not counts:
            counts.append(_queries(who, url))
        else:
            with django_assert_max_num_queries(counts[0]):
                assert who.get(url).status_code == 200
    if page == "conversation":
        html = client.get(urls["conversation"][1]).content.decode()
        assert html.count('class="rchat-note"') == selectors.NOTES_LIMIT


# --- In a real browser ----------------------------------------------------------------------


def sign_in(browser, live_server, user):
    """A fresh browser session of ``user``, signed in through the real login form."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, live_server, user)
    return page


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_colleague_is_mentioned_in_a_note_and_finds_it(browser, live_server):
    """Kanya writes a note mentioning Somchai, with the keyboard only; Somchai sees the
    badge, opens the list, then the room: the badge clears. The note never shows in
    the message thread."""
    room = ChatRoomFactory(display_name="Malee", chat_id="web-55")
    kanya = agent("kanya", first_name="Kanya")
    somchai = agent("somchai", first_name="Somchai")
    errors = []

    page = sign_in(browser, live_server, kanya)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.click("text=Malee")
    page.wait_for_selector("#rchat-notes")
    page.keyboard.press("Escape")  # out of the reply box, which has the focus
    page.keyboard.press("n")
    assert page.evaluate("document.activeElement.id") == "id_body"
    page.keyboard.type("ฝาก@somchai ดูหน่อย")
    page.keyboard.press("Enter")  # a new line, not a submit
    page.keyboard.type("ลูกค้าขอคืนเงิน")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#rchat-notes mark.rchat-mention >> text=@somchai", timeout=WAIT_MS)
    note = Note.objects.get()
    assert note.body == "ฝาก@somchai ดูหน่อย\nลูกค้าขอคืนเงิน" and note.author == kanya
    page.context.close()

    page = sign_in(browser, live_server, somchai)
    page.on("pageerror", lambda error: errors.append(str(error)))
    badge = page.locator("#rchat-mentions-badge .rchat-mention-count")
    assert badge.inner_text() == "1"
    page.click("#rchat-mentions-badge")
    page.wait_for_url("**/rchat/inbox/mentions/")
    item = page.locator(".rchat-mention-item.is-unseen", has_text="ลูกค้าขอคืนเงิน")
    assert "Malee" in item.inner_text()
    item.locator("a").click()
    page.wait_for_url(f"**/rchat/inbox/{room.pk}/**")
    page.locator("#rchat-notes mark.rchat-mention.is-you").wait_for(timeout=WAIT_MS)
    assert page.locator("#rchat-mentions-badge .rchat-mention-count").count() == 0
    assert page.locator("#rchat-notes").evaluate("el => el.open") is True
    assert "ลูกค้าขอคืนเงิน" not in page.locator("#rchat-messages").inner_text()
    assert "Private note — not sent to the customer" in page.locator("#rchat-notes").inner_text()
    assert not Message.objects.exists()
    assert errors == []
    page.context.close()
