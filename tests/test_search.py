"""Search in Thai and any script: the lookup, the snippets, the inbox's search page,
the room list's box, admin, the API, the trigram indexes, and a search in a browser."""

import re
import unicodedata
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from rchat import search, selectors
from rchat.models import Message
from tests.factories import ChatRoomFactory, CredentialFactory, MessageFactory, user_with
from tests.test_api import (
    answer_schema,  # noqa: F401  (a fixture: responses against the schema)
    token_client,
)

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="trigram indexes exist on PostgreSQL only"
)
TRIGRAM_INDEXES = {
    "rchat_msg_text_trgm": ("rchat_message", "text"),
    "rchat_room_name_trgm": ("rchat_chatroom", "display_name"),
    "rchat_room_chat_id_trgm": ("rchat_chatroom", "chat_id"),
}
#: A Thai sentence as Thai is written: no spaces between its words.
GREETING = "สวัสดีครับสนใจสินค้าตัวนี้ครับ"
REFUND = "ขอคืนเงินค่ะสินค้าชำรุด Please REFUND my order"


def say(room, text, **fields):
    return MessageFactory(room=room, data=text, **fields)


def found(q, **kwargs):
    """The texts ``message_search`` finds for ``q``, newest first."""
    user = get_user_model()(username="nobody")
    return [message.text for message in selectors.message_search(user=user, q=q, **kwargs)]


def search_page(client, q, **params):
    return client.get(reverse("rchat:inbox-search"), {"q": q, **params})


def marked(html):
    """The texts inside <mark> in ``html``."""
    return re.findall(r"<mark>(.*?)</mark>", html)


# --- What a query may search --------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "searchable"),
    [("ab", False), ("12", False), ("ข้", False), ("a b c", False), ("50%", False),
     ("abc", True), ("100%", True), ("ค้า", True), ("ข้อ", True), ("ลูกค้า 12", True),
     ("ok ลูก", True)],
)  # fmt: skip
def test_message_text_is_searched_from_three_letters_or_digits_in_a_row(q, searchable):
    """The trigram index needs three characters of one word; Thai marks count as
    letters (ข้อ is ข, a tone mark and อ)."""
    assert search.can_search_messages(q) is searchable


# --- Snippets -------------------------------------------------------------------------------


def test_a_snippet_marks_every_match_in_any_case():
    html = search.snippet("Refund please, REFUND now", "refund")
    assert marked(html) == ["Refund", "REFUND"]
    assert html == "<mark>Refund</mark> please, <mark>REFUND</mark> now"


def test_a_snippet_marks_a_thai_word_in_the_middle_of_a_run():
    html = search.snippet(GREETING, "สินค้า")
    assert html == "สวัสดีครับสนใจ<mark>สินค้า</mark>ตัวนี้ครับ"


def test_a_snippet_escapes_the_message_and_the_match():
    html = search.snippet('<b onclick="x()">ข้อความ</b> & <script>', "ข้อความ")
    assert "<b" not in html and "<script" not in html
    assert html == (
        "&lt;b onclick=&quot;x()&quot;&gt;<mark>ข้อความ</mark>&lt;/b&gt; &amp; &lt;script&gt;"
    )
    assert search.snippet("a <b> c", "<b>") == "a <mark>&lt;b&gt;</mark> c"


@pytest.mark.parametrize(
    ("text", "q", "mark"),
    [
        # ที่ is ท, a vowel mark and a tone mark: searching ที marks all three.
        ("อยู่ที่นี่", "ที", "ที่"),
        # A query that starts on a mark takes its consonant with it.
        ("ข้อความ", "้อค", "ข้อค"),
        ("ชำรุด", "ชำ", "ชำ"),  # sara am is a letter of its own
    ],
)
def test_a_mark_never_parts_a_thai_consonant_from_its_marks(text, q, mark):
    assert marked(search.snippet(text, q)) == [mark]


def test_a_long_message_is_cut_around_the_match_on_whole_characters():
    before = "ก่อน" * 60  # ก, a tone mark, อ, น: a cut must not strand the tone mark
    after = "หลัง" * 60
    text = f"{before}คืนเงิน{after}"
    html = search.snippet(text, "คืนเงิน", width=40)
    assert marked(html) == ["คืนเงิน"]
    assert html.startswith("…") and html.endswith("…")
    shown = html.strip("…").replace("<mark>", "").replace("</mark>", "")
    start = text.index("คืนเงิน") - shown.index("คืนเงิน")
    end = start + len(shown)
    assert text[start:end] == shown and len(shown) <= 60
    # Neither cut leaves a mark without its consonant: no mark just after either cut.
    assert not unicodedata.category(text[start]).startswith("M")
    assert not unicodedata.category(text[end]).startswith("M")


def test_a_snippet_prefers_to_cut_at_spaces_and_joins_lines():
    text = "first line\nsecond line with the word refund in it and " + "more words " * 20
    html = search.snippet(text, "refund", width=40)
    assert "\n" not in html
    assert re.match(r"…\S", html)  # starts on a word, after the ellipsis
    assert marked(html) == ["refund"]


# --- Finding messages --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("q", ["สินค้า", "ค้าตัว", "นี้ครับ", "สวัสดี"])
def test_a_thai_word_is_found_anywhere_in_a_run_without_spaces(q):
    room = ChatRoomFactory()
    say(room, GREETING)
    say(room, "ขอบคุณมากค่ะ")
    assert found(q) == [GREETING]


@pytest.mark.django_db
def test_mixed_thai_and_english_and_latin_case_are_found():
    room = ChatRoomFactory()
    say(room, REFUND)
    say(room, "ราคาPromoพิเศษ")
    say(room, "nothing to see")
    assert found("refund") == [REFUND]
    assert found("ชำรุด please") == [REFUND]
    assert found("าpromoพ") == ["ราคาPromoพิเศษ"]
    assert found("PROMO") == ["ราคาPromoพิเศษ"]


@pytest.mark.django_db
def test_percent_and_underscore_are_literal():
    room = ChatRoomFactory()
    say(room, "ลดราคา 100% วันนี้")
    say(room, "ลดราคา 1000 บาท")
    say(room, "your user_id please")
    say(room, "your userXid please")
    assert found("100%") == ["ลดราคา 100% วันนี้"]
    assert found("user_id") == ["your user_id please"]
    assert found("%%%") == []


@pytest.mark.django_db
def test_results_are_newest_first_and_a_tab_narrows_them(agent):
    mine = ChatRoomFactory(assignee=agent)
    other = ChatRoomFactory()
    first = say(mine, "refund one")
    second = say(other, "refund two")
    third = say(mine, "refund three")
    assert [m.pk for m in selectors.message_search(user=agent, q="refund")] == [
        third.pk,
        second.pk,
        first.pk,
    ]
    assert [m.pk for m in selectors.message_search(user=agent, q="refund", view="mine")] == [
        third.pk,
        first.pk,
    ]
    older = selectors.message_search(user=agent, q="refund", before=second.pk)
    assert [m.pk for m in older] == [first.pk]


@pytest.mark.django_db
def test_one_or_two_letters_search_rooms_names_not_message_text(agent):
    """The room list polls every 2 s: a too-short query reads rooms, not every message."""
    # Chat ids without digits: the factory's own (chat-12, …) would match "12".
    named = ChatRoomFactory(display_name="ลูกค้า 12", chat_id="line-named")
    talking = ChatRoomFactory(display_name="Somchai", chat_id="line-talking")
    say(talking, "order 12 please")
    assert set(selectors.room_list(user=agent, q="12")) == {named}
    assert set(selectors.room_list(user=agent, q="ลู")) == {named}
    assert found("12") == []
    # Three digits in a row search messages too.
    say(talking, "order 123 please")
    assert set(selectors.room_list(user=agent, q="123")) == {talking}


@pytest.mark.django_db
def test_the_room_list_finds_rooms_by_thai_text_in_their_messages(agent):
    room = ChatRoomFactory(display_name="Malee")
    say(room, GREETING)
    ChatRoomFactory(display_name="Other")
    assert list(selectors.room_list(user=agent, q="สินค้า")) == [room]
    assert list(selectors.room_list(user=agent, q="ค้าตัวนี้")) == [room]


# --- The inbox's search page --------------------------------------------------------------


@pytest.mark.django_db
def test_the_search_page_needs_the_view_permission(client):
    assert client.get(reverse("rchat:inbox-search"), {"q": "refund"}).status_code == 302
    client.force_login(user_with("add_credential"))
    assert client.get(reverse("rchat:inbox-search"), {"q": "refund"}).status_code == 403
    client.force_login(user_with("view_chatroom"))
    assert client.get(reverse("rchat:inbox-search"), {"q": "refund"}).status_code == 200


@pytest.mark.django_db
def test_results_show_the_room_a_marked_snippet_and_link_to_the_message(agent_client):
    room = ChatRoomFactory(display_name="Malee Jaidee")
    hit = say(room, "<i>ขอ</i>คืนเงินค่ะ")
    say(room, "ขอบคุณค่ะ")
    page = search_page(agent_client, "คืนเงิน").content.decode()
    assert "Malee Jaidee" in page
    assert "&lt;i&gt;ขอ&lt;/i&gt;<mark>คืนเงิน</mark>ค่ะ" in page
    assert "<i>ขอ" not in page
    thread = reverse("rchat:inbox-room", kwargs={"pk": room.pk})
    link = f"{thread}?before={hit.pk + 1}#message-{hit.pk}"
    assert f'href="{link}"' in page
    assert "ขอบคุณค่ะ" not in page.split('class="rchat-results"')[1]


@pytest.mark.django_db
def test_a_result_link_opens_the_thread_at_the_message(agent_client):
    room = ChatRoomFactory()
    hit = say(room, "the one with refund")
    for n in range(60):
        say(room, f"later message {n}")
    page = agent_client.get(
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}), {"before": hit.pk + 1}
    ).content.decode()
    assert f'id="message-{hit.pk}"' in page
    assert "later message 0" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("q", ["ab", "12", "  ", "%%"])
def test_a_query_too_short_for_messages_is_a_form_error(agent_client, q):
    ChatRoomFactory(display_name="ab 12")
    response = search_page(agent_client, q)
    assert response.status_code == 200
    errors = response.context["search_form"].errors["q"]
    assert errors and 'id="rchat-search-errors"' in response.content.decode()
    assert response.context["results"] == []


@pytest.mark.django_db
def test_a_bad_page_marker_is_a_form_error_not_a_500(agent_client):
    response = search_page(agent_client, "refund", before="abc")
    assert response.status_code == 200
    assert response.context["search_form"].errors["before"]
    assert 'id="rchat-search-errors"' in response.content.decode()


@pytest.mark.django_db
def test_no_match_says_so(agent_client):
    ChatRoomFactory()
    page = search_page(agent_client, "ไม่มีแน่นอน").content.decode()
    assert "No message holds" in page and "ไม่มีแน่นอน" in page


@pytest.mark.django_db
def test_the_page_without_a_query_invites_one(agent_client):
    response = agent_client.get(reverse("rchat:inbox-search"))
    assert response.status_code == 200
    assert not response.context["search_form"].errors


@pytest.mark.django_db
def test_older_matches_are_a_link_away_and_pages_do_not_overlap(agent_client):
    room = ChatRoomFactory()
    hits = [say(room, f"refund {n}") for n in range(selectors.SEARCH_PAGE + 5)]
    first = search_page(agent_client, "refund")
    shown = [r["message"].pk for r in first.context["results"]]
    assert shown == [m.pk for m in reversed(hits)][: selectors.SEARCH_PAGE]
    older = first.context["older_querystring"]
    assert older and f"before={shown[-1]}" in older
    second = agent_client.get(f"{reverse('rchat:inbox-search')}?{older}")
    rest = [r["message"].pk for r in second.context["results"]]
    assert rest == [m.pk for m in reversed(hits[:5])]
    assert second.context["older_querystring"] == ""


@pytest.mark.django_db
def test_the_search_pages_room_list_is_not_filtered_by_the_query(agent_client):
    """Beside the results the list polls every 2 s: it shows the tab's rooms, and does
    not look for the text in every room's messages each time."""
    say(ChatRoomFactory(display_name="Malee"), "refund please")
    ChatRoomFactory(display_name="Somchai")
    response = search_page(agent_client, "refund")
    assert {room.display_name for room in response.context["rooms"]} == {"Malee", "Somchai"}
    assert response.context["filters"]["q"] == ""


@pytest.mark.django_db
def test_the_room_lists_box_offers_to_search_messages(agent_client):
    ChatRoomFactory()
    page = agent_client.get(reverse("rchat:inbox")).content.decode()
    assert f'formaction="{reverse("rchat:inbox-search")}"' in page


@pytest.mark.django_db
def test_the_search_pages_queries_stay_flat_as_matches_grow(agent_client):
    """Rooms, authors and credentials come with the messages: no query per result."""
    agent = get_user_model().objects.get(pk=agent_client.session["_auth_user_id"])

    def queries(count):
        for _ in range(count):
            room = ChatRoomFactory(credential=CredentialFactory())
            say(room, "refund please", direction=Message.Direction.OUT, author=agent)
        with CaptureQueriesContext(connection) as captured:
            response = search_page(agent_client, "refund")
        assert len(response.context["results"]) == min(
            selectors.SEARCH_PAGE, Message.objects.count()
        )
        return len(captured.captured_queries)

    assert queries(2) == queries(25)


# --- Admin ------------------------------------------------------------------------------


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_admin_finds_messages_by_thai_text_room_and_external_id(client, operator):
    room = ChatRoomFactory(chat_id="line-U42", display_name="ลูกค้า VIP")
    hit = say(room, GREETING)
    other = say(ChatRoomFactory(), "ขอบคุณมากค่ะ", external_id="m-777")

    def ids(q):
        response = client.get(reverse("admin:rchat_message_changelist"), {"q": q})
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert ids("ค้าตัว") == {hit.pk}
    assert ids("ลูกค้า") == {hit.pk}  # the room's name
    assert ids("u42") == {hit.pk}  # its chat id, any case
    assert ids("m-777") == {other.pk}
    assert ids("m-77") == set()  # R-Chat's id is matched whole
    assert ids('"ขอบคุณมาก" ค่ะ') == {other.pk}  # each word must match
    assert ids("100%") == set()


@pytest.mark.django_db
def test_admin_finds_chat_rooms_by_thai_message_text(client, operator):
    room = ChatRoomFactory(display_name="Malee")
    say(room, GREETING)
    say(room, "สินค้าตัวนี้ยังมีไหม")
    ChatRoomFactory(display_name="Other")
    response = client.get(reverse("admin:rchat_chatroom_changelist"), {"q": "สินค้า"})
    assert [row.pk for row in response.context["cl"].result_list] == [room.pk]
    assert response.context["cl"].result_count == 1  # once, though two messages match


# --- API --------------------------------------------------------------------------------


@pytest.fixture
def api():
    return token_client(user_with())


@pytest.mark.django_db
def test_the_api_finds_messages_with_their_room_and_match_offsets(api, answer_schema):  # noqa: F811
    room = ChatRoomFactory(chat_id="c-9", display_name="Malee")
    hit = say(room, "ที่นี่มีสินค้าไหม")
    say(room, "nothing")
    response = api.get(reverse("rchat:api:message-search"), {"q": "สินค้า"})
    assert response.status_code == 200
    answer_schema(response, "/rchat/api/messages/search/", "get")
    (row,) = response.json()["results"]
    assert row["id"] == hit.pk
    assert row["room"] == {
        "id": room.pk,
        "chat_id": "c-9",
        "display_name": "Malee",
        "status": "open",
    }
    assert row["matches"] == [[8, 14]]
    assert hit.text[8:14] == "สินค้า"


@pytest.mark.django_db
def test_the_api_pages_on_to_older_matches(api):
    room = ChatRoomFactory()
    hits = [say(room, f"refund {n}") for n in range(5)]
    first = api.get(reverse("rchat:api:message-search"), {"q": "REFUND", "page_size": 3}).json()
    assert [row["id"] for row in first["results"]] == [m.pk for m in hits[::-1][:3]]
    second = api.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [hits[1].pk, hits[0].pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{}, {"q": ""}, {"q": "ab"}, {"q": "x" * 201}, {"q": "abc", "view": "x"}]
)
def test_the_api_refuses_a_bad_query_with_its_reason(api, answer_schema, params):  # noqa: F811
    response = api.get(reverse("rchat:api:message-search"), params)
    assert response.status_code == 400
    answer_schema(response, "/rchat/api/messages/search/", "get")
    body = response.json()
    assert body["detail"] and set(body["errors"]) <= {"q", "view"} and body["errors"]


@pytest.mark.django_db
def test_the_api_search_needs_the_view_permission(client):
    assert (
        token_client(user_with("add_credential"))
        .get(reverse("rchat:api:message-search"), {"q": "refund"})
        .status_code
        == 403
    )
    assert client.get(reverse("rchat:api:message-search"), {"q": "refund"}).status_code == 401


@pytest.mark.django_db
def test_the_api_searchs_queries_stay_flat_as_matches_grow(api):
    def queries(count):
        for _ in range(count):
            say(ChatRoomFactory(credential=CredentialFactory()), "refund please")
        with CaptureQueriesContext(connection) as captured:
            assert api.get(reverse("rchat:api:message-search"), {"q": "refund"}).status_code == 200
        return len(captured.captured_queries)

    assert queries(2) == queries(30)


# --- The indexes ----------------------------------------------------------------------------


@pytest.mark.django_db
@on_postgres
def test_the_migration_created_the_trigram_indexes():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE indexname LIKE %s",
            ["rchat_%_trgm"],
        )
        rows = {name: (table, definition) for name, table, definition in cursor.fetchall()}
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone()
    assert set(rows) == set(TRIGRAM_INDEXES)
    for name, (table, column) in TRIGRAM_INDEXES.items():
        assert rows[name][0] == table
        assert f"USING gin ({column} gin_trgm_ops)" in rows[name][1]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite fallback")
def test_on_sqlite_the_migration_adds_no_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%trgm%'")
        assert cursor.fetchall() == []


@pytest.fixture
def haystack():
    """3,000 messages that look alike and one that differs, analysed, so the planner
    sees a table where an index pays."""
    room = ChatRoomFactory()
    start = timezone.now()
    Message.objects.bulk_create(
        Message(
            room=room,
            direction="in",
            type="text",
            data=f"{GREETING} {n}",
            text=f"{GREETING} {n}",
            status="received",
            created_at=start + timedelta(seconds=n),
        )
        for n in range(3000)
    )
    say(room, REFUND)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rchat_message")
    return room


def prefer_indexes_that_filter():
    """For this transaction, plan as on a big table: a plain or backward index scan
    over every row (what a small table gets) is off; what remains is an index that
    answers the condition itself, or a (penalised) sequential scan. Without the
    trigram index the plans below would not name it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")


@pytest.mark.django_db
@on_postgres
@pytest.mark.parametrize("q", ["คืนเงิน", "refund", "ชำรุด Please", "เงินค่ะสิน"])
def test_a_thai_search_reads_the_trigram_index(haystack, q):
    """What the search page runs is planned on rchat_msg_text_trgm; without the index
    (or with Django's icontains, UPPER(text) LIKE ...) it would read every row."""
    messages = selectors.message_search(user=get_user_model()(), q=q)[: selectors.SEARCH_PAGE]
    prefer_indexes_that_filter()
    plan = messages.explain()
    assert "rchat_msg_text_trgm" in plan, plan
    assert [m.text for m in messages] == [REFUND]
    # Why rchat.search.Contains exists: the index does not serve icontains.
    plain = Message.objects.filter(text__icontains=q).order_by("-id")[:20].explain()
    assert "rchat_msg_text_trgm" not in plain, plain


@pytest.mark.django_db
@on_postgres
def test_the_room_lists_search_reads_the_trigram_indexes(haystack, agent):
    rooms = selectors.room_list(user=agent, q="คืนเงิน")[:50]
    prefer_indexes_that_filter()
    plan = rooms.explain()
    assert "rchat_msg_text_trgm" in plan, plan
    assert list(rooms) == [haystack]


# --- In a browser ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_an_agent_searches_thai_sees_the_match_marked_and_opens_it(
    browser,
    live_server,
    tmp_path,
):
    from tests.test_browser import RECORD_CSP_VIOLATIONS, WAIT_MS, log_in, make_agent

    agent = make_agent()
    room = ChatRoomFactory(display_name="Malee Jaidee")
    hit = say(room, "สวัสดีค่ะขอคืนเงินค่ะสินค้าชำรุด")
    for n in range(55):  # the thread shows the newest 50: the match is older
        say(room, f"ข้อความถัดมา {n}")
    ChatRoomFactory(display_name="Somchai")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    log_in(page, live_server, agent)
    page.fill("#id_q", "คืนเงิน")
    page.click("button.rchat-search-messages")
    page.wait_for_url("**/rchat/inbox/search/**", timeout=WAIT_MS)
    result = page.locator(f"#result-{hit.pk}")
    result.wait_for(timeout=WAIT_MS)
    assert result.locator("mark").all_inner_texts() == ["คืนเงิน"]
    assert "Malee Jaidee" in result.inner_text()
    assert page.locator(".rchat-result").count() == 1
    page.screenshot(path=str(tmp_path / "search.png"))

    result.locator("a").click()
    page.wait_for_url(f"**/rchat/inbox/{room.pk}/?before={hit.pk + 1}#message-{hit.pk}")
    target = page.locator(f"#message-{hit.pk}")
    target.wait_for(timeout=WAIT_MS)
    assert "คืนเงิน" in target.inner_text()
    assert target.is_visible()
    # Within the Content-Security-Policy: nothing inline on either page.
    assert page.evaluate("window.__cspViolations") == []
    page.close()
