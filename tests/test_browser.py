"""The inbox in a real browser: live updates without a reload, replying, sent status.

Drives Debian's /usr/bin/chromium through Playwright (no browser download) against
pytest-django's live server; R-Chat is a pytest-httpserver. Skipped when Playwright
or Chromium is missing, unless RCHAT_REQUIRE_SERVICES=1.

With RCHAT_SCREENSHOTS=1 the screenshots are also written to docs/screenshots/ (the
README's: the inbox, admin and the sandbox, in English and Thai).
"""

import os
from pathlib import Path

import pytest
import requests

from rchat import services
from rchat.models import ChatRoom, Message
from tests.factories import (
    ChatRoomFactory,
    CredentialFactory,
    MessageFactory,
    UserFactory,
    user_with,
)

SEND_PATH = "/api/v1/external/send-message"
PASSWORD = "pw-for-tests"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# Long enough for a slow machine; the page itself polls every 2 s.
WAIT_MS = 15_000

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def make_agent(username="somsri"):
    # Agents need not be staff: they sign in on the site, not in the admin.
    return user_with(username=username, first_name="Somsri", is_staff=False)


def log_in(page, live_server, user):
    """Log in through the site's real login form, starting from the inbox."""
    page.goto(f"{live_server.url}/rchat/inbox/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form:has(input[name=password]) [type=submit]")
    page.wait_for_url("**/rchat/inbox/**")


def save(page, name, tmp_path):
    page.screenshot(path=str(tmp_path / name), full_page=False)
    if os.environ.get("RCHAT_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


def test_agent_sees_a_new_message_live_replies_and_sees_it_sent(
    browser, live_server, httpserver, celery_eager, tmp_path
):
    """An inbound message appears without a reload; the reply is shown sent."""
    new_message = "I need help with my order"
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    room = ChatRoomFactory(credential=credential, chat_id="web-123", display_name="Malee")
    MessageFactory(room=room, data="Hello, is anyone there?")
    agent = make_agent()

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, agent)
    page.click("text=Malee")
    page.wait_for_selector("text=Hello, is anyone there?")
    # A marker that a reload would wipe out.
    page.evaluate("window.__rchatNoReload = true")

    # R-Chat calls the webhook while the agent watches the conversation.
    answer = requests.post(
        f"{live_server.url}/rchat/webhook/",
        json={"chat_id": "web-123", "message": {"type": "text", "data": new_message}},
        headers={"X-Chatday-Signature-Token": credential.signature_token},
        timeout=10,
    )
    assert answer.json() == {"status": "SUCCESS"}
    page.wait_for_selector(f".rchat-msg-in >> text={new_message}", timeout=WAIT_MS)
    assert page.evaluate("window.__rchatNoReload") is True

    page.fill("textarea[name=text]", "Sure, what is your order number?")
    page.keyboard.press("Enter")
    reply = page.locator(".rchat-msg-out", has_text="Sure, what is your order number?")
    reply.locator(".rchat-status-sent").wait_for(timeout=WAIT_MS)

    sent = Message.objects.get(room=room, direction="out")
    assert sent.status == "sent"
    request, _response = httpserver.log[-1]
    assert request.get_json() == {
        "message": {"type": "text", "data": "Sure, what is your order number?"},
        "chat_id": "web-123",
        "idempotency_key": sent.dedup_key,
        # The project names who wrote it (RCHAT["SENDER_FIELD"] = "sender").
        "sender": {
            "kind": "person",
            "name": sent.author.get_full_name() or sent.author.get_username(),
        },
    }
    assert script_errors == []
    page.close()


def test_a_failed_reply_shows_failed_and_retry_live(browser, live_server, tmp_path):
    """A reply that fails while the page is open turns 'Failed' with a Retry button."""
    room = ChatRoomFactory(display_name="Preecha")
    MessageFactory(room=room, data="Are you open today?")
    reply = MessageFactory(room=room, direction="out", data="Yes until 8pm", status="queued")
    agent = make_agent("anan")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, live_server, agent)
    page.click("text=Preecha")
    bubble = page.locator(f"#message-{reply.pk}")
    bubble.locator(".rchat-status-queued").wait_for()
    Message.objects.filter(pk=reply.pk).update(status="failed", last_error="R-Chat said 400")
    bubble.locator(".rchat-status-failed").wait_for(timeout=WAIT_MS)
    assert bubble.locator("button", has_text="Retry").is_visible()
    page.close()


def test_agent_takes_a_room_over_from_the_bot_and_returns_it(browser, live_server, tmp_path):
    """Take over: the header says People and offers Return to bot; Return: Bot again."""
    room = ChatRoomFactory(display_name="Wanida", handler=ChatRoom.Handler.BOT)
    MessageFactory(room=room, data="ขอคุยกับพนักงานหน่อยค่ะ")
    agent = make_agent("pim")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/?view=bot")
    page.click("text=Wanida")
    handling = page.locator("#rchat-handling")
    handling.get_by_text("Handled by: Bot").wait_for()

    page.click("button:has-text('Take over')")
    handling.get_by_text("Handled by: People").wait_for(timeout=WAIT_MS)
    assert page.locator("button", has_text="Return to bot").is_visible()
    assert page.locator("button", has_text="Take over").count() == 0
    assert page.get_by_text("You took over this conversation").is_visible()
    room.refresh_from_db()
    assert (room.handler, room.assignee) == ("people", agent)

    page.click("button:has-text('Return to bot')")
    handling.get_by_text("Handled by: Bot").wait_for(timeout=WAIT_MS)
    assert page.locator("button", has_text="Take over").is_visible()
    room.refresh_from_db()
    assert room.handler == "bot"
    assert script_errors == []
    page.close()


def test_screenshots_of_the_inbox_and_a_conversation(browser, live_server, tmp_path):
    """A realistic inbox and conversation, saved as pictures for the docs."""
    agent = make_agent("kanya")
    shop = CredentialFactory(name="Bangkok Shop")
    rooms = [
        ("line-8841", "สมชาย ใจดี", "line", 2),
        ("web-1203", "Malee Wong", "web", 0),
        ("fb-5521", "Narin P.", "facebook", 1),
        ("web-1207", "Anong", "web", 0),
        ("line-9002", "Kittipong", "line", 0),
    ]
    made = []
    for chat_id, name, channel, unread in rooms:
        room = ChatRoomFactory(
            credential=shop,
            chat_id=chat_id,
            display_name=name,
            channel=channel,
            unread_count=unread,
            assignee=agent if chat_id.startswith("web") else None,
            last_message_preview=f"Hi, this is {name}",
        )
        MessageFactory(room=room, data=f"Hi, this is {name}", text=f"Hi, this is {name}")
        made.append(room)
    room = made[1]
    MessageFactory(room=room, data="Do you ship to Chiang Mai?")
    MessageFactory(
        room=room,
        type="location",
        data={"latitude": 18.7883, "longitude": 98.9853, "address": "Nimman Rd, Chiang Mai"},
        text="",
    )
    out = services.message_send(
        room=room, type="text", data="Yes! Delivery takes 2-3 days.", author=agent
    )
    Message.objects.filter(pk=out.pk).update(status="sent")
    services.message_send(
        room=room, type="sticker", data={"package_id": "446", "sticker_id": "1988"}, author=agent
    )
    failed = services.message_send(room=room, type="text", data="Here is our price list.")
    Message.objects.filter(pk=failed.pk).update(status="failed", last_error="R-Chat: 503")
    MessageFactory(room=room, data="Thank you 🙏")
    services.message_send(room=room, type="text", data="You're welcome!", author=agent)
    for index, preview in enumerate(["Thank you 🙏", "Hello?", "ขอบคุณครับ"]):
        made[index].last_message_preview = preview
        made[index].save()

    # A colleague has the conversation open: the line under the thread says so. A
    # private note for them sits apart from the thread.
    colleague = user_with(username="narin", first_name="Narin", is_staff=False)
    services.presence_report(room=room, user=colleague, state="viewing")
    services.note_add(
        room=room, author=agent, body="Regular customer. @narin please check the stock."
    )

    page = browser.new_page(viewport={"width": 1280, "height": 760})
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/?view=all")
    page.wait_for_selector("text=Malee Wong")
    save(page, "inbox.png", tmp_path)
    page.click("text=Malee Wong")
    page.wait_for_selector("text=You're welcome!")
    page.wait_for_selector("text=Narin is also viewing")
    page.wait_for_selector(".rchat-notes >> text=please check the stock")
    save(page, "conversation.png", tmp_path)
    page.goto(f"{live_server.url}/rchat/inbox/search/?q=Chiang+Mai")
    page.wait_for_selector("mark")
    save(page, "search.png", tmp_path)
    page.close()

    # The same conversation in admin, as an operator sees it.
    operator = user_with(username="boss", first_name="Boss", is_staff=True, is_superuser=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, live_server, operator)
    page.goto(f"{live_server.url}/admin/rchat/chatroom/{room.pk}/change/")
    page.wait_for_selector("text=You're welcome!")
    page.wait_for_selector("text=Narin is also viewing")
    save(page, "admin-conversation.png", tmp_path)
    for name in ("inbox.png", "conversation.png", "search.png", "admin-conversation.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    page.close()


#: One conversation per language, played through the sandbox for the screenshots of the
#: inbox, admin and the sandbox's chat page: the end user's messages ("user") and the
#: agent's replies, then other rooms of the shop for the inbox's list.
SHOT_CHATS = {
    "en": {
        "locale": "en-GB",
        "agent": ("kanya", "Kanya"),
        "shop": "Bangkok Shop",
        "chat": ("web-1203", "web", "Malee Wong"),
        "turns": [
            ("user", "Hi! Do you ship to Chiang Mai?"),
            ("agent", "Hello Malee! Yes, delivery to Chiang Mai takes 2-3 days."),
            ("user", "Great. Is the white linen shirt still in stock in size M?"),
            ("agent", "It is: 590 baht, and shipping is free this week 🚚"),
            ("user", "Perfect, I'll order two. Thank you 🙏"),
        ],
        "others": [
            ("line-8841", "line", "Somchai J.", "Can I pay on delivery?"),
            ("fb-5521", "facebook", "Narin P.", "Hello?"),
            ("web-1207", "web", "Anong", "Do you have it in black?"),
        ],
        "files": {"sandbox": "sandbox.png"},
    },
    "th": {
        "locale": "th-TH",
        "agent": ("kanya-th", "กันยา"),
        "shop": "ร้านเสื้อผ้าบางกอก",
        "chat": ("line-8841", "line", "สมหญิง ใจงาม"),
        "turns": [
            ("user", "สวัสดีค่ะ เสื้อเชิ้ตลินินสีขาวไซส์ M ยังมีไหมคะ"),
            ("agent", "สวัสดีค่ะคุณสมหญิง มีค่ะ ราคา 590 บาท สัปดาห์นี้ส่งฟรีค่ะ 🚚"),
            ("user", "ส่งเชียงใหม่กี่วันคะ"),
            ("agent", "2-3 วันทำการค่ะ สั่งวันนี้ได้รับภายในวันศุกร์นะคะ"),
            ("user", "โอเคค่ะ ขอสั่ง 2 ตัวนะคะ ขอบคุณค่ะ 🙏"),
        ],
        "others": [
            ("web-1203", "web", "สมชาย ใจดี", "เก็บเงินปลายทางได้ไหมครับ"),
            ("fb-5521", "facebook", "นรินทร์ พ.", "ยังเปิดอยู่ไหมคะ"),
            ("web-1207", "web", "อนงค์", "มีสีดำไหมคะ"),
        ],
        "files": {
            "inbox": "conversation-th.png",
            "admin": "admin-conversation-th.png",
            "sandbox": "sandbox-th.png",
        },
    },
}


@pytest.mark.parametrize("language", ["en", "th"])
def test_screenshots_of_one_conversation_in_the_inbox_admin_and_the_sandbox(
    browser, live_server, sandbox, celery_eager, tmp_path, language
):
    """A conversation written on the sandbox's chat page and answered by an agent, in
    English and in Thai (the browser asks for the language): the inbox with it open,
    admin's chat room page and the sandbox's chat page, each in that language, saved as
    pictures for the README (the English inbox and admin: the test above)."""
    from rchat import selectors
    from rchat.sandbox import chat_url

    shot = SHOT_CHATS[language]
    chat_id, channel, customer = shot["chat"]
    username, first_name = shot["agent"]
    agent = user_with(username=username, first_name=first_name, is_staff=False)
    sandbox.webhook_url = f"{live_server.url}/rchat/webhook/"
    credential = CredentialFactory(name=shot["shop"], base_url=sandbox.url)
    services.credential_register(credential=credential)
    selectors.webhook_credentials_clear()
    for other_id, other_channel, name, text in shot["others"]:
        room = ChatRoomFactory(
            credential=credential,
            chat_id=other_id,
            display_name=name,
            channel=other_channel,
            unread_count=1,
            last_message_preview=text,
        )
        MessageFactory(room=room, data=text, text=text)
    for who, text in shot["turns"]:
        if who == "user":
            entry = sandbox.send_as_user(chat_id, text, channel=channel, name=customer)
            assert entry["webhook"]["ok"], entry["webhook"]
        else:
            room = ChatRoom.objects.get(credential=credential, chat_id=chat_id)
            services.message_send(room=room, type="text", data=text, author=agent)
    replies = [text for who, text in shot["turns"] if who == "agent"]
    services.delivery_drain()
    received = sandbox.wait_for(chat_id, len(replies), timeout=WAIT_MS / 1000)
    assert [r["message"]["data"] for r in received] == replies

    files = shot["files"]

    def new_page(width, height):
        # A context each: the agent, the operator and the end user sign in apart.
        context = browser.new_context(
            locale=shot["locale"],
            timezone_id="Asia/Bangkok",
            viewport={"width": width, "height": height},
        )
        return context.new_page()

    page = new_page(1280, 760)
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/?view=all")
    page.click(f"text={customer}")
    page.wait_for_selector(f"text={replies[-1]}")
    assert page.locator("html").get_attribute("lang") == language
    if "inbox" in files:
        save(page, files["inbox"], tmp_path)
    page.close()

    operator = user_with(
        username=f"boss-{language}", first_name="Boss", is_staff=True, is_superuser=True
    )
    page = new_page(1280, 900)
    log_in(page, live_server, operator)
    room = ChatRoom.objects.get(credential=credential, chat_id=chat_id)
    page.goto(f"{live_server.url}/admin/rchat/chatroom/{room.pk}/change/")
    page.wait_for_selector(f"text={replies[-1]}")
    assert page.locator("html").get_attribute("lang") == language
    if "admin" in files:
        save(page, files["admin"], tmp_path)
    page.close()

    page = new_page(1000, 760)
    page.goto(chat_url(sandbox.url, chat_id, channel=channel, name=customer))
    assert page.locator("html").get_attribute("lang") == language
    page.locator("#thread li.sender-person .sender").nth(len(replies) - 1).wait_for(timeout=WAIT_MS)
    assert page.locator("#thread .bubble").all_inner_texts() == [t for _, t in shot["turns"]]
    save(page, files["sandbox"], tmp_path)
    for name in files.values():
        assert (tmp_path / name).stat().st_size > 10_000, name
    page.close()


# Reported by the page itself: every Content-Security-Policy refusal fires this event.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${where}`);
});
"""


def test_no_page_breaks_the_content_security_policy(browser, live_server, tmp_path):
    """Under the project's strict policy (no inline script or style) every page works.

    The inbox, a conversation with every message type, the sign-in page, admin's
    credential, chat room and conversation pages, the overview and the API docs: none
    makes the browser refuse a script, a style or an image.
    """
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    credential = CredentialFactory()
    room = ChatRoomFactory(credential=credential, display_name="Malee")
    MessageFactory(room=room, data="Hello")
    MessageFactory(room=room, type="image", data={"url": "https://example.com/a.jpg"}, text="")
    MessageFactory(room=room, type="location", data={"latitude": 13.7, "longitude": 100.5})
    MessageFactory(room=room, type="sticker", data=[1, 2, 3], text="")
    services.message_send(room=room, type="text", data="Hi Malee", author=admin_user)

    page = browser.new_page()
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    log_in(page, live_server, admin_user)
    violations = {}
    paths = [
        "/rchat/inbox/?view=all",
        f"/rchat/inbox/{room.pk}/",
        "/rchat/inbox/search/?q=Hello",
        "/admin/",
        "/admin/rchat/credential/",
        f"/admin/rchat/credential/{credential.pk}/change/",
        "/admin/rchat/chatroom/",
        f"/admin/rchat/chatroom/{room.pk}/change/",
        "/admin/rchat/chatroom/overview/",
        "/rchat/api/docs/",
    ]
    for path in paths:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        violations[path] = page.evaluate("window.__cspViolations")
    # The docs page is drawn by Swagger UI's script, a file the policy allows.
    page.wait_for_selector(".swagger-ui .info", timeout=WAIT_MS)
    violations["/rchat/api/docs/"] = page.evaluate("window.__cspViolations")
    assert {path: found for path, found in violations.items() if found} == {}
    page.close()


def test_the_inbox_works_from_the_keyboard_alone(
    browser, live_server, httpserver, celery_eager, tmp_path
):
    """j picks the next conversation, Enter opens it, r goes to the reply box,
    Ctrl+Enter sends, Esc leaves the box and ? shows the list of keys."""
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"status": "SUCCESS", "message_id": "m-1"}
    )
    credential = CredentialFactory(base_url=httpserver.url_for("").rstrip("/"))
    for name in ("Araya", "Boonmee", "Chanida"):
        room = ChatRoomFactory(credential=credential, display_name=name)
        MessageFactory(room=room, data=f"Hello from {name}")
    agent = make_agent("keys")

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    log_in(page, live_server, agent)
    page.goto(f"{live_server.url}/rchat/inbox/?view=all")
    names = page.locator(".rchat-room-item .rchat-room-name").all_inner_texts()
    assert len(names) == 3

    page.keyboard.press("j")
    page.keyboard.press("j")
    picked = page.locator(".rchat-room-item.is-selected")
    assert picked.locator(".rchat-room-name").inner_text() == names[1]
    # The picked conversation's link has the focus, so Enter opens it.
    assert page.evaluate("document.activeElement.closest('.rchat-room-item.is-selected') !== null")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"text=Hello from {names[1]}")
    room = ChatRoom.objects.get(display_name=names[1])
    assert page.url.split("?")[0].endswith(f"/rchat/inbox/{room.pk}/")

    page.keyboard.press("Escape")  # the page starts in the reply box: leave it first
    assert page.evaluate("document.activeElement.name") != "text"
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "text"
    page.keyboard.type("Thank you, it ships today.")
    page.keyboard.press("Control+Enter")
    reply = page.locator(".rchat-msg-out", has_text="Thank you, it ships today.")
    reply.locator(".rchat-status-sent").wait_for(timeout=WAIT_MS)
    sent = Message.objects.get(direction="out")
    assert (sent.room_id, sent.data, sent.status) == (room.pk, "Thank you, it ships today.", "sent")

    page.keyboard.press("Escape")
    help_panel = page.locator("#rchat-keys")
    assert help_panel.is_hidden()
    page.keyboard.press("?")
    assert help_panel.is_visible()
    assert "Keyboard shortcuts" in help_panel.inner_text()
    assert "Ctrl" in help_panel.inner_text()
    page.keyboard.press("Escape")
    assert help_panel.is_hidden()
    assert script_errors == []
    page.close()
