"""Canned responses: the services, the inbox's suggestions and "/shortcut" sending,
admin, the API, and picking one from the keyboard in a real browser."""

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import translation

from rchat import selectors, services
from rchat.exceptions import InvalidMessage
from rchat.models import CannedResponse, Message
from tests.factories import ChatRoomFactory, UserFactory, user_with
from tests.test_api import answer_schema  # noqa: F401  (a fixture: responses against the schema)

pytestmark = pytest.mark.django_db


def canned(shortcut="price", data="ราคา 100 บาทค่ะ คุณ{name}", type="text", **fields):
    fields.setdefault("title", shortcut.title())
    return services.canned_save(shortcut=shortcut, type=type, data=data, **fields)


# --- Services ----------------------------------------------------------------------------


def test_a_canned_response_is_saved_cleaned():
    saved = canned(shortcut=" /Price ", title=" Price list ", data="  100 baht  ")
    saved.refresh_from_db()
    assert (saved.shortcut, saved.title, saved.type, saved.data) == (
        "price",
        "Price list",
        "text",
        "100 baht",
    )
    assert saved.is_shared and saved.created_at and saved.updated_at


def test_thai_shortcuts_with_vowel_and_tone_marks_are_allowed():
    assert canned(shortcut="ส่วนลด").shortcut == "ส่วนลด"
    assert canned(shortcut="ราคา_2").shortcut == "ราคา_2"


@pytest.mark.parametrize(
    ("shortcut", "reason"),
    [("", "needs a shortcut"), ("/", "needs a shortcut"), ("a b", "without spaces"),
     ("a/b", "without spaces"), ("x" * 31, "at most 30")],
)  # fmt: skip
def test_a_bad_shortcut_is_refused_with_its_reason(shortcut, reason):
    with pytest.raises(ValueError, match=reason):
        canned(shortcut=shortcut)
    assert not CannedResponse.objects.exists()


def test_a_title_is_required():
    with pytest.raises(ValueError, match="needs a title"):
        canned(title="  ")


def test_shortcuts_are_unique_among_shared_and_among_each_users_own():
    somsri, malee = UserFactory(), UserFactory()
    canned("price")
    with pytest.raises(ValueError, match="exists already"):
        canned("PRICE")
    # A personal one may share a shared one's shortcut, and another user's.
    canned("price", owner=somsri)
    canned("price", owner=malee)
    with pytest.raises(ValueError, match="exists already"):
        canned("price", owner=somsri)
    assert CannedResponse.objects.count() == 3


def test_changing_one_keeps_it_and_cannot_take_a_used_shortcut():
    price = canned("price")
    canned("hours")
    assert canned("price", title="New title", canned=price).pk == price.pk
    with pytest.raises(ValueError, match="exists already"):
        canned("hours", canned=price)


@pytest.mark.parametrize(
    ("type", "data", "field"),
    [
        ("text", "   ", "data"),
        ("image", {"url": "ftp://x"}, "url"),
        ("file", {"name": "a.pdf"}, "url"),
        ("sticker", {"package_id": "1"}, "sticker_id"),
        ("location", {"latitude": 99, "longitude": 100}, "latitude"),
        ("video", "x", "type"),
    ],
)
def test_each_message_type_is_validated_as_an_outbound_message(type, data, field):
    with pytest.raises(InvalidMessage) as caught:
        canned(type=type, data=data)
    assert field in caught.value.errors
    assert not CannedResponse.objects.exists()


@pytest.mark.parametrize(
    ("type", "data"),
    [
        ("image", {"url": "https://example.com/a.png"}),
        ("file", {"url": "https://example.com/a.pdf", "name": "menu.pdf"}),
        ("sticker", {"package_id": "1", "sticker_id": 2}),
        ("location", {"latitude": 13.75, "longitude": 100.5, "title": "Shop"}),
    ],
)
def test_every_outbound_type_may_be_a_canned_response(type, data):
    assert canned(type=type, data=data).data == data


def test_a_personal_one_is_deleted_only_by_its_owner():
    owner, other = user_with(), user_with()
    mine = canned(owner=owner)
    with pytest.raises(PermissionDenied):
        services.canned_delete(canned=mine, user=other)
    services.canned_delete(canned=mine, user=owner)
    assert not CannedResponse.objects.exists()


def test_a_shared_one_is_deleted_only_with_the_permission():
    shared = canned()
    with pytest.raises(PermissionDenied):
        services.canned_delete(canned=shared, user=user_with())
    services.canned_delete(canned=shared, user=user_with("manage_shared_cannedresponse"))
    assert not CannedResponse.objects.exists()


def render(item, room=None, agent=None):
    room = room or ChatRoomFactory(display_name="สมชาย ใจดี")
    agent = agent or UserFactory(first_name="มาลี", last_name="สุขใจ")
    return services.canned_render(canned=item, room=room, agent=agent)


def test_placeholders_become_the_thai_names_of_the_customer_and_agent():
    item = canned(data="สวัสดีค่ะ คุณ{name} ดิฉัน{agent} ยินดีให้บริการ")
    assert render(item) == ("text", "สวัสดีค่ะ คุณสมชาย ใจดี ดิฉันมาลี สุขใจ ยินดีให้บริการ")
    item.refresh_from_db()
    assert "{name}" in item.data  # the stored one keeps its placeholders


def test_without_names_the_customer_fallback_and_the_username_are_used():
    item = canned(data="Hi {name}, {agent} here")
    room, agent = ChatRoomFactory(display_name=""), UserFactory(username="somsri")
    assert render(item, room, agent) == ("text", "Hi customer, somsri here")
    with translation.override("th"):
        assert render(item, room, agent)[1] == "Hi คุณลูกค้า, somsri here"


def test_stray_braces_and_unknown_placeholders_are_left_as_written():
    item = canned(data='{ "a": 1 } {price} {{name}} {name {0} }{ {agent')
    rendered = render(item, ChatRoomFactory(display_name="Ann"))[1]
    assert rendered == '{ "a": 1 } {price} {Ann} {name {0} }{ {agent'


def test_a_location_title_and_address_and_a_file_name_are_filled_in():
    place = canned(
        "shop",
        type="location",
        data={"latitude": 13.7, "longitude": 100.5, "title": "ร้านของ{agent}", "address": "{x}"},
    )
    _, data = render(place, agent=UserFactory(first_name="Malee"))
    assert (data["title"], data["address"], data["latitude"]) == ("ร้านของMalee", "{x}", 13.7)
    menu = canned("menu", type="file", data={"url": "https://e.com/m.pdf", "name": "{name}.pdf"})
    assert render(menu, ChatRoomFactory(display_name="Ann"))[1]["name"] == "Ann.pdf"


def test_canned_for_lists_shared_and_own_by_shortcut():
    somsri, malee = UserFactory(), UserFactory()
    canned("zeta")
    canned("alpha", owner=somsri)
    canned("beta", owner=malee)
    assert [c.shortcut for c in selectors.canned_for(somsri)] == ["alpha", "zeta"]


# --- Inbox -------------------------------------------------------------------------------


@pytest.fixture
def agent(client):
    user = user_with(first_name="Malee")
    client.force_login(user)
    return user


def test_inbox_json_lists_shared_and_own_rendered_for_the_room(client, agent):
    room = ChatRoomFactory(display_name="Somchai")
    canned("price", data="100 baht, {name}")
    canned("prime", data="Mine, {agent}", owner=agent)
    canned("private", data="Not yours", owner=UserFactory())
    canned("hours", data="9-5")
    url = reverse("rchat:inbox-canned", kwargs={"pk": room.pk})
    results = client.get(url, {"q": "pri"}).json()["results"]
    assert [(r["shortcut"], r["type"], r["data"], r["shared"]) for r in results] == [
        ("price", "text", "100 baht, Somchai", True),
        ("prime", "text", "Mine, Malee", False),
    ]
    assert len(client.get(url).json()["results"]) == 3


def test_inbox_json_needs_the_reply_permission(client):
    client.force_login(user_with("view_chatroom"))
    room = ChatRoomFactory()
    assert client.get(reverse("rchat:inbox-canned", kwargs={"pk": room.pk})).status_code == 403


def test_the_conversation_page_offers_a_select_of_canned_responses(client, agent):
    room = ChatRoomFactory()
    canned("price", title="Price list")
    page = client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).content.decode()
    assert "data-rchat-canned-pick" in page and "/price · Price list" in page
    assert f'data-canned-url="/rchat/inbox/{room.pk}/canned/"' in page


def test_posting_a_shortcut_alone_sends_the_rendered_canned_response(client, agent):
    room = ChatRoomFactory(display_name="Somchai")
    canned("price", data="100 baht, คุณ{name}")
    url = reverse("rchat:inbox-room", kwargs={"pk": room.pk})
    assert client.post(url, {"type": "text", "text": " /price "}).status_code == 302
    sent = Message.objects.get(direction="out")
    assert (sent.type, sent.data, sent.author) == ("text", "100 baht, คุณSomchai", agent)
    # Anything else is sent as written: an unknown shortcut, or a shortcut in a sentence.
    client.post(url, {"type": "text", "text": "/nothing"})
    client.post(url, {"type": "text", "text": "/price please"})
    assert list(Message.objects.filter(direction="out").values_list("data", flat=True)) == [
        "100 baht, คุณSomchai",
        "/nothing",
        "/price please",
    ]


def test_posting_a_shortcut_of_a_location_sends_the_location(client, agent):
    room = ChatRoomFactory()
    canned("shop", type="location", data={"latitude": 13.7, "longitude": 100.5})
    client.post(
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}), {"type": "text", "text": "/shop"}
    )
    sent = Message.objects.get(direction="out")
    assert (sent.type, sent.data) == ("location", {"latitude": 13.7, "longitude": 100.5})


# --- Admin -------------------------------------------------------------------------------


def staff(*codenames):
    perms = ("view_cannedresponse", "add_cannedresponse", "change_cannedresponse")
    return user_with(*perms, "delete_cannedresponse", *codenames)


def test_admin_a_user_sees_shared_and_own_a_superuser_everyone_s(client):
    somsri = staff()
    canned("shared-one")
    canned("mine", owner=somsri)
    canned("theirs", owner=UserFactory())
    changelist = reverse("admin:rchat_cannedresponse_changelist")
    client.force_login(somsri)
    page = client.get(changelist).content.decode()
    assert "/shared-one" in page and "/mine" in page and "/theirs" not in page
    client.force_login(UserFactory(username="boss", is_superuser=True))
    page = client.get(changelist).content.decode()
    assert "/theirs" in page
    shared = client.get(changelist, {"shared": "yes"}).content.decode()
    assert "/shared-one" in shared and "/mine" not in shared


def test_admin_shared_ones_are_read_only_without_the_permission(client):
    shared = canned("price")
    change = reverse("admin:rchat_cannedresponse_change", args=[shared.pk])
    body = {"shortcut": "price", "title": "Changed", "type": "text", "data": '"x"', "owner": ""}
    client.force_login(staff())
    assert 'name="title"' not in client.get(change).content.decode()
    assert client.post(change, body).status_code == 403
    client.force_login(staff("manage_shared_cannedresponse"))
    assert client.post(change, body).status_code == 302
    shared.refresh_from_db()
    assert (shared.title, shared.data) == ("Changed", "x")


def test_admin_without_the_permission_adds_only_personal_ones(client):
    somsri = staff()
    client.force_login(somsri)
    add = reverse("admin:rchat_cannedresponse_add")
    body = {"shortcut": "hi", "title": "Hi", "type": "text", "data": '"Hi {name}"'}
    assert client.post(add, {**body, "owner": ""}).status_code == 200
    assert not CannedResponse.objects.exists()
    assert client.post(add, {**body, "owner": somsri.pk}).status_code == 302
    assert CannedResponse.objects.get().owner == somsri


def test_admin_takes_a_text_as_typed_and_other_types_as_json(client):
    client.force_login(UserFactory(username="boss", is_superuser=True))
    add = reverse("admin:rchat_cannedresponse_add")
    body = {"title": "T", "owner": ""}
    client.post(add, {**body, "shortcut": "hi", "type": "text", "data": "สวัสดีค่ะ คุณ{name}"})
    client.post(
        add, {**body, "shortcut": "pic", "type": "image", "data": '{"url": "https://e.com/a.png"}'}
    )
    saved = {c.shortcut: c.data for c in CannedResponse.objects.all()}
    assert saved == {"hi": "สวัสดีค่ะ คุณ{name}", "pic": {"url": "https://e.com/a.png"}}
    hi = CannedResponse.objects.get(shortcut="hi")
    page = client.get(reverse("admin:rchat_cannedresponse_change", args=[hi.pk])).content.decode()
    assert 'id="id_data">\nสวัสดีค่ะ คุณ{name}</textarea>' in page


def test_admin_shows_why_a_message_or_shortcut_is_refused(client):
    canned("price")
    client.force_login(UserFactory(username="boss", is_superuser=True))
    add = reverse("admin:rchat_cannedresponse_add")
    body = {"title": "T", "type": "image", "data": '{"url": "nope"}', "owner": ""}
    assert "http://" in client.post(add, {**body, "shortcut": "pic"}).content.decode()
    taken = client.post(add, {**body, "shortcut": "price", "type": "text", "data": '"x"'})
    assert "exists already" in taken.content.decode()
    assert CannedResponse.objects.count() == 1


# --- API ---------------------------------------------------------------------------------


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    client = APIClient()
    client.user = user_with()
    client.force_authenticate(client.user)
    return client


def test_api_lists_shared_and_own_with_placeholders_left_raw(api):
    canned("price", data="100 baht, {name}")
    canned("mine", owner=api.user, type="sticker", data={"package_id": "1", "sticker_id": "2"})
    canned("theirs", owner=UserFactory())
    body = api.get(reverse("rchat:api:canned-list")).json()
    assert [(c["shortcut"], c["data"], c["shared"]) for c in body] == [
        ("mine", {"package_id": "1", "sticker_id": "2"}, False),
        ("price", "100 baht, {name}", True),
    ]


def test_api_canned_list_matches_the_schema(api, answer_schema):  # noqa: F811
    canned("price")
    canned("shop", type="location", data={"latitude": 1, "longitude": 2}, owner=api.user)
    answer_schema(api.get(reverse("rchat:api:canned-list")), "/rchat/api/canned/", "get")


# --- In a browser ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_typing_a_shortcut_and_picking_it_from_the_keyboard_inserts_and_sends_it(
    browser,
    live_server,
    httpserver,
    celery_eager,
):
    """ "/pri", ArrowDown, Enter: the message holds the rendered reply; Enter sends it."""
    from tests.factories import CredentialFactory, MessageFactory
    from tests.test_browser import SEND_PATH, WAIT_MS, log_in, make_agent

    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    room = ChatRoomFactory(credential=credential, display_name="สมชาย")
    MessageFactory(room=room, data="ราคาเท่าไหร่คะ")
    canned("price", data="ราคา 100 บาทค่ะ คุณ{name}")
    canned("prime", data="Prime, {agent}")
    agent = make_agent("canned")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/{room.pk}/")
    box = page.locator("textarea[name=text]")
    box.click()
    page.keyboard.type("/pri")
    options = page.locator("#rchat-canned-suggest [role=option]")
    options.nth(1).wait_for(timeout=WAIT_MS)
    assert options.all_inner_texts()[0].startswith("/price")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    assert box.input_value() == "ราคา 100 บาทค่ะ คุณสมชาย"
    assert page.locator("#rchat-canned-suggest").is_hidden()
    page.keyboard.press("Enter")
    reply = page.locator(".rchat-msg-out", has_text="ราคา 100 บาทค่ะ คุณสมชาย")
    reply.locator(".rchat-status-sent").wait_for(timeout=WAIT_MS)
    assert Message.objects.get(direction="out").data == "ราคา 100 บาทค่ะ คุณสมชาย"
    assert script_errors == []
    page.close()
