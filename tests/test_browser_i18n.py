"""The inbox and admin in English and in Thai, in a real browser: the language switch,
and what used not to fit or was doubled (Chromium through Playwright, as
tests/test_browser.py)."""

import pytest

from rchat.models import Message
from tests.factories import ChatRoomFactory, CredentialFactory, MessageFactory, UserFactory
from tests.test_browser import PASSWORD, WAIT_MS, log_in, make_agent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LANGUAGES = ["en", "th"]


def _page(browser, live_server, language, width=1280):
    """A new page with ``language`` chosen, as the language switch remembers it."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    return context.new_page()


def _admin_log_in(page, live_server, user):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content", timeout=WAIT_MS)


@pytest.fixture
def operator_user():
    return UserFactory(username="boss", first_name="Boss", is_superuser=True)


# --- The language switch ------------------------------------------------------------------


def test_the_language_chosen_on_the_sign_in_page_stays_chosen_in_the_inbox(browser, live_server):
    """Thai chosen before signing in is the inbox's language on every page after, until
    English is chosen again; the choice outlives the session (Django's language cookie)."""
    agent = make_agent()
    room = ChatRoomFactory(display_name="Malee")
    MessageFactory(room=room, data="สวัสดีค่ะ")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/rchat/login/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Sign in to the inbox"

    page.select_option("#rchat-language", "th")  # inbox.js submits the choice
    page.wait_for_selector("html[lang=th]", timeout=WAIT_MS)
    assert page.locator("h1").inner_text() == "เข้าสู่ระบบกล่องข้อความ"
    assert page.locator("button[type=submit].rchat-send").inner_text() == "เข้าสู่ระบบ"
    assert page.url.endswith("/rchat/login/")

    log_in(page, live_server, agent)
    assert page.locator("html").get_attribute("lang") == "th"
    page.click("text=Malee")
    page.wait_for_selector("text=สวัสดีค่ะ", timeout=WAIT_MS)
    assert page.locator("html").get_attribute("lang") == "th"
    conversation = page.url

    page.select_option("#rchat-language", "en")
    page.wait_for_selector("html[lang=en]", timeout=WAIT_MS)
    assert page.url == conversation  # back on the page the choice was made on
    page.goto(f"{live_server.url}/rchat/inbox/mentions/")
    assert page.locator("html").get_attribute("lang") == "en"


def test_the_language_switch_works_without_javascript(chromium, live_server):
    """With scripts off the select does nothing by itself; its button sends the choice."""
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{live_server.url}/rchat/login/")
    page.select_option("#rchat-language", "th")
    page.click(".rchat-language button")
    page.wait_for_selector("html[lang=th]", timeout=WAIT_MS)
    assert page.locator(".rchat-language button").inner_text() == "เปลี่ยนภาษา"
    context.close()


# --- The inbox ----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1280, 1024])
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_room_list_search_box_shows_its_whole_placeholder(
    browser, live_server, language, width
):
    """The search box's hint is not cut off, in either language, at either width."""
    agent = make_agent()
    page = _page(browser, live_server, language, width)
    log_in(page, live_server, agent)
    box = page.locator(".rchat-search input[type=search]")
    placeholder = box.get_attribute("placeholder")
    # A value is laid out in the same font as the placeholder, and scrollWidth counts it.
    box.fill(placeholder)
    sizes = box.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert placeholder and sizes[0] <= sizes[1], (placeholder, sizes)


# --- Admin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_chat_room_list_fits_the_window(browser, live_server, operator_user, language):
    """Every column of the chat room list, the credential last, fits beside the filters:
    nothing hides behind a scrollbar."""
    credential = CredentialFactory(name="shop-bangkok-main")
    for n in range(3):
        ChatRoomFactory(credential=credential, display_name=f"ลูกค้า {n}", chat_id=f"line-{n}")
    page = _page(browser, live_server, language)
    _admin_log_in(page, live_server, operator_user)
    page.goto(f"{live_server.url}/admin/rchat/chatroom/")
    page.wait_for_selector("#result_list", timeout=WAIT_MS)

    # Admin scrolls a list too wide for its place: the table must not need to.
    table, room = page.evaluate(
        "[document.querySelector('#result_list').scrollWidth,"
        " document.querySelector('#changelist .results').clientWidth]"
    )
    assert table <= room
    assert page.locator("#result_list th.column-credential_name").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_chat_room_list_counts_the_chosen_rooms_in_the_page_language(
    browser, live_server, operator_user, language
):
    """Admin's script writes "0 of 2 selected" in Thai too (rchat's catalogue)."""
    ChatRoomFactory.create_batch(2)
    page = _page(browser, live_server, language)
    _admin_log_in(page, live_server, operator_user)
    page.goto(f"{live_server.url}/admin/rchat/chatroom/")
    page.locator("#result_list .action-select").first.check()
    counter = page.locator(".action-counter").inner_text()
    assert counter == {"en": "1 of 2 selected", "th": "เลือก 1 จาก 2"}[language]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_credential_page_labels_its_token_once(browser, live_server, operator_user, language):
    """One "Chatday-Token" field, which says which token is stored."""
    credential = CredentialFactory(token="cdt_secret-value-1234")
    page = _page(browser, live_server, language)
    _admin_log_in(page, live_server, operator_user)
    page.goto(f"{live_server.url}/admin/rchat/credential/{credential.pk}/change/")

    labels = page.locator("fieldset label, fieldset .readonly").all_inner_texts()
    assert [label for label in labels if label.startswith("Chatday-Token")] == ["Chatday-Token:"]
    assert "••••1234" in page.locator(".field-token .help").inner_text()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_assignee_is_a_plain_list_of_people(browser, live_server, operator_user, language):
    """No add / change / delete / view icons beside the chat room's assignee; the
    labels' two-box chooser speaks the page's language."""
    room = ChatRoomFactory()
    page = _page(browser, live_server, language)
    _admin_log_in(page, live_server, operator_user)
    page.goto(f"{live_server.url}/admin/rchat/chatroom/{room.pk}/change/")

    assert page.locator("select#id_assignee").count() == 1
    assert page.locator(".field-assignee .related-widget-wrapper-link").count() == 0
    choose_all = page.locator("#id_labels_add_all, .selector-chooseall").first
    expected = {"en": "Choose all labels", "th": "เลือกป้ายกำกับทั้งหมด"}[language]
    assert choose_all.get_attribute("title") == expected or choose_all.inner_text() == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_message_types_are_shown_by_name(browser, live_server, operator_user, language):
    """The message list's type column and filter say "Image", not "image"."""
    MessageFactory(type="image", data={"url": "https://img.example/a.png"})
    page = _page(browser, live_server, language)
    _admin_log_in(page, live_server, operator_user)
    page.goto(f"{live_server.url}/admin/rchat/message/")

    name = {"en": "Image", "th": "รูปภาพ"}[language]
    assert page.locator("#result_list td.field-message_type").inner_text() == name
    assert page.locator(f"#changelist-filter a:text-is('{name}')").count() == 1
    assert Message.objects.get().type == "image"
