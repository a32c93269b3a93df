"""The chatbot back-office in admin: rules with a "try it" box, business hours with shifts
and holidays, external bots with a masked secret, and the chat rooms' replay action."""

import html
import re
from datetime import time

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

import rchat.bots.admin  # noqa: F401  (registers the pages until rchat/admin.py imports it)
from rchat.bots.admin import replay_action
from rchat.models import (
    AutoReply,
    BotForward,
    BusinessHours,
    ChatRoom,
    ExternalBot,
    Message,
    Shift,
)
from tests.factories import (
    AutoReplyFactory,
    BusinessHoursFactory,
    ChatRoomFactory,
    CredentialFactory,
    ExternalBotFactory,
    MessageFactory,
    ShiftFactory,
    user_with,
)

pytestmark = pytest.mark.django_db

RULES = "admin:rchat_autoreply_changelist"


@pytest.fixture(autouse=True)
def _rules_only(settings):
    settings.RCHAT = {**settings.RCHAT, "BOT": ""}


def page(response):
    assert response.status_code == 200, response.content[:300]
    return html.unescape(response.content.decode())


def try_it(client, credential=None, text="", first=False, **filters):
    query = {"try-text": text, **filters}
    if credential is not None:
        query["try-credential"] = credential.pk
    if first:
        query["try-first"] = "on"
    return client.get(reverse(RULES), query)


def answering_rows(content):
    """The rule ids of the rows the try-it box highlights."""
    return [int(pk) for pk in re.findall(r'<tr class="rchat-answers" data-rule="(\d+)">', content)]


def answering_row(content):
    """The rule id of the one row the try-it box highlights, or None."""
    rows = answering_rows(content)
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


# --- the try-it box ----------------------------------------------------------------------


@pytest.fixture
def shop():
    credential = CredentialFactory(name="shop")
    rules = {
        "greeting": AutoReplyFactory(
            credential=credential,
            kind=AutoReply.Kind.GREETING,
            name="Welcome",
            match="",
            position=0,
        ),
        "price": AutoReplyFactory(
            credential=credential, name="Prices", match="ราคา\nprice", position=1
        ),
        "shipping": AutoReplyFactory(credential=None, name="Shipping", match="ส่งฟรี", position=2),
    }
    return credential, rules


def test_the_try_it_box_shows_the_rule_that_would_answer_and_why(client, operator, shop):
    credential, rules = shop
    content = page(try_it(client, credential, "ราคา เท่าไหร่ คะ ส่งฟรีไหม"))
    assert 'id="rchat-try-result"' in content
    assert answering_row(content) == rules["price"].pk
    assert "Rule “Prices” answers: keyword “ราคา” found in “ราคา เท่าไหร่ คะ ส่งฟรีไหม”" in content
    # Every rule is listed, in order, the greeting explained as not applying.
    rows = re.findall(r'data-rule="(\d+)"', content)
    assert [int(pk) for pk in rows] == [rule.pk for rule in rules.values()]
    assert "only the first message of a new chat room gets it" in content
    assert "The message does not ask for a person." in content
    assert "has none, so it is always open" in content


def test_the_try_it_box_with_the_first_message_of_a_new_chat_room(client, operator, shop):
    credential, rules = shop
    content = page(try_it(client, credential, "hello", first=True))
    assert answering_row(content) == rules["greeting"].pk
    assert "greeting: first message of a new chat room" in content
    # As the engine does: the greeting, then the keyword rule that matches too.
    content = page(try_it(client, credential, "ราคา", first=True))
    assert answering_rows(content) == [rules["greeting"].pk, rules["price"].pk]
    assert "Then rule “Prices” answers too: keyword “ราคา” found" in content


def test_the_try_it_box_says_when_no_rule_answers(client, operator, shop):
    credential, _rules = shop
    content = page(try_it(client, credential, "hello"))
    assert answering_row(content) is None
    assert "No rule answers." in content


def test_the_try_it_box_says_when_the_text_asks_for_a_person(client, operator, shop):
    credential, _rules = shop
    content = page(try_it(client, credential, "ขอ คุยกับ พนักงาน ค่ะ"))
    assert "The end user asks for a person (“คุยกับพนักงาน”)" in content


def test_the_try_it_box_shows_business_hours_now(client, operator, shop):
    credential, _rules = shop
    hours = BusinessHoursFactory(credential=credential, time_zone="UTC")
    content = page(try_it(client, credential, "hello"))
    assert "Closed now" in content and "no shifts are set" in content
    for weekday in Shift.Weekday.values:
        ShiftFactory(hours=hours, weekday=weekday, start=time(0), end=time(0))  # all day
    content = page(try_it(client, credential, "hello"))
    assert "Open now" in content


def test_the_try_it_box_without_a_credential_tries_the_rules_for_every_credential(
    client, operator, shop
):
    _credential, rules = shop
    content = page(try_it(client, None, "ราคา ส่งฟรี"))
    assert answering_row(content) == rules["shipping"].pk
    assert "choose a credential" in content


def test_the_try_it_box_keeps_the_lists_filters_working(client, operator, shop):
    """Its parameters are not taken for filters (no ?e=1), and the filters still apply."""
    credential, _rules = shop
    response = try_it(client, credential, "ราคา", kind__exact="greeting")
    content = page(response)
    assert answering_row(content) is not None
    assert "Shipping</a></th>" not in content and "Welcome</a></th>" in content


def test_an_empty_message_is_a_form_error_not_a_result(client, operator, shop):
    credential, _rules = shop
    content = page(try_it(client, credential, "   "))
    assert 'id="rchat-try-result"' not in content
    assert "Type a message to try." in content


def test_the_rules_list_needs_the_view_permission(client):
    client.force_login(user_with("view_chatroom", username="nobody"))
    assert client.get(reverse(RULES)).status_code == 403
    client.force_login(user_with("view_autoreply", username="reader"))
    rule = AutoReplyFactory(match="ราคา")
    assert answering_row(page(try_it(client, None, "ราคา"))) == rule.pk


def test_the_rules_list_shows_every_credential_and_a_reply_preview(client, operator):
    AutoReplyFactory(credential=None, name="Everyone", reply_data="สวัสดีค่ะ ยินดีต้อนรับ")
    AutoReplyFactory(
        credential=CredentialFactory(name="line-oa"), reply_data="ส่งต่อค่ะ", hand_over=True
    )
    content = page(client.get(reverse(RULES)))
    assert "every credential" in content and "line-oa" in content
    assert "สวัสดีค่ะ ยินดีต้อนรับ" in content
    assert "ส่งต่อค่ะ, then to people" in content


# --- the rule form ---------------------------------------------------------------------------


def rule_form(**fields):
    return {
        "name": "Prices",
        "active": "on",
        "kind": "keyword",
        "credential": "",
        "match": "ราคา",
        "reply_type": "text",
        "reply_data": "290 บาทค่ะ",
        "position": "0",
        **fields,
    }


def add_rule(client, **fields):
    return client.post(reverse("admin:rchat_autoreply_add"), rule_form(**fields))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "pattern", "match": "(ราคา"}, "Not a valid regular expression: missing )"),
        ({"kind": "pattern", "match": r"(\w+\s?)+$"}, "repeats a repetition"),
        ({"kind": "pattern", "match": ""}, "needs a regular expression"),
        ({"match": "\n  \n"}, "Give at least one keyword (one per line)."),
        ({"match": "ราคา\n!!!"}, "no letter or digit, so they would never match: “!!!”"),
        ({"reply_type": "sticker", "reply_data": '{"package_id": 1}'}, "sticker_id"),
        ({"reply_type": "location", "reply_data": '{"latitude": 99, "longitude": 1}'}, "-90"),
        ({"reply_type": "sticker", "reply_data": "not json"}, "written as JSON"),
        ({"reply_type": "image", "reply_data": "ftp://example.com/a.png"}, "http://"),
        ({"reply_data": ""}, "A rule needs a reply."),
        ({"reply_data": " ", "hand_over": "on"}, "A rule needs a reply."),
        ({"reply_data": "x" * 5001}, "at most 5000 characters"),
    ],
)
def test_the_rule_form_explains_what_is_wrong(client, operator, fields, error):
    content = page(add_rule(client, **fields))
    assert error in content
    assert not AutoReply.objects.exists()


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"reply_data": "  290 บาทค่ะ \n"}, "290 บาทค่ะ"),
        ({"reply_data": '"a JSON string"'}, "a JSON string"),
        ({"reply_data": "123"}, "123"),
        (
            {"reply_type": "image", "reply_data": "https://example.com/a.png"},
            ("https://example.com/a.png"),
        ),
        (
            {"reply_type": "sticker", "reply_data": '{"package_id": 1, "sticker_id": "2"}'},
            {"package_id": 1, "sticker_id": "2"},
        ),
    ],
)
def test_the_rule_form_stores_the_reply_as_it_will_be_sent(client, operator, fields, stored):
    response = add_rule(client, **fields)
    assert response.status_code == 302, page(response)[:2000]
    assert AutoReply.objects.get().reply_data == stored


def test_a_text_reply_is_edited_as_plain_text(client, operator):
    rule = AutoReplyFactory(reply_data="สวัสดี\nค่ะ")
    content = page(client.get(reverse("admin:rchat_autoreply_change", args=[rule.pk])))
    assert ">\nสวัสดี\nค่ะ</textarea>" in content
    sticker = AutoReplyFactory(reply_type="sticker", reply_data={"package_id": 1, "sticker_id": 2})
    content = page(client.get(reverse("admin:rchat_autoreply_change", args=[sticker.pk])))
    assert '"package_id": 1' in content


def test_a_valid_pattern_rule_is_saved(client, operator):
    credential = CredentialFactory()
    response = add_rule(client, kind="pattern", match=r"0\d{9}", credential=str(credential.pk))
    assert response.status_code == 302
    assert AutoReply.objects.get().credential == credential


def test_rules_are_reordered_and_switched_off_from_the_list(client, operator):
    rule = AutoReplyFactory(position=3)
    response = client.post(
        reverse(RULES),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(rule.pk),
            "form-0-position": "7",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.position, rule.active) == (7, False)


# --- business hours --------------------------------------------------------------------------


def hours_form(credential, shifts=(), holidays=(), **fields):
    data = {
        "credential": str(credential.pk),
        "time_zone": "Asia/Bangkok",
        "out_of_hours_handler": "people",
        "reply_type": "text",
        "reply_data": "ปิดแล้วค่ะ",
        "shifts-TOTAL_FORMS": str(len(shifts)),
        "shifts-INITIAL_FORMS": "0",
        "holidays-TOTAL_FORMS": str(len(holidays)),
        "holidays-INITIAL_FORMS": "0",
        **fields,
    }
    for n, (weekday, start, end) in enumerate(shifts):
        data.update(
            {
                f"shifts-{n}-weekday": str(weekday),
                f"shifts-{n}-start": start,
                f"shifts-{n}-end": end,
            }
        )
    for n, (day, name) in enumerate(holidays):
        data.update({f"holidays-{n}-date": day, f"holidays-{n}-name": name})
    return data


def add_hours(client, *args, **kwargs):
    return client.post(reverse("admin:rchat_businesshours_add"), hours_form(*args, **kwargs))


def test_business_hours_are_saved_with_split_shifts_a_night_shift_and_a_holiday(client, operator):
    credential = CredentialFactory()
    response = add_hours(
        client,
        credential,
        shifts=[(0, "09:00", "12:00"), (0, "13:00", "17:00"), (4, "22:00", "02:00")],
        holidays=[("2025-04-14", "สงกรานต์")],
    )
    assert response.status_code == 302, page(response)[:3000]
    hours = BusinessHours.objects.get(credential=credential)
    assert hours.shifts.count() == 3 and hours.holidays.get().name == "สงกรานต์"
    assert hours.reply_data == "ปิดแล้วค่ะ"
    content = page(client.get(reverse("admin:rchat_businesshours_changelist")))
    assert "Open" in content or "Closed" in content


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"time_zone": "Asia/Bangkokk"}, "“Asia/Bangkokk” is not a time zone"),
        ({"time_zone": "Asia"}, "is not a time zone"),
        ({"shifts": [(0, "09:00", "09:00")]}, "A shift ends at another time than it starts"),
        ({"reply_type": "location", "reply_data": '{"latitude": 13.7}'}, "longitude"),
    ],
)
def test_the_business_hours_form_explains_what_is_wrong(client, operator, kwargs, error):
    content = page(add_hours(client, CredentialFactory(), **kwargs))
    assert error in content
    assert not BusinessHours.objects.exists()


def test_business_hours_without_an_out_of_hours_reply(client, operator):
    credential = CredentialFactory()
    assert add_hours(client, credential, reply_data="").status_code == 302
    assert BusinessHours.objects.get().reply_data == {}


# --- external bots ---------------------------------------------------------------------------


def bot_form(credential, **fields):
    return {
        "credential": str(credential.pk),
        "url": "https://bot.example/hook",
        "secret": "",
        "active": "on",
        **fields,
    }


def test_a_new_external_bot_needs_a_long_enough_secret(client, operator):
    credential = CredentialFactory()
    url = reverse("admin:rchat_externalbot_add")
    assert "needs its signing secret" in page(client.post(url, bot_form(credential)))
    assert "at least 16 characters" in page(client.post(url, bot_form(credential, secret="short")))
    response = client.post(url, bot_form(credential, secret="s3cret-for-the-bot-0001"))
    assert response.status_code == 302
    assert ExternalBot.objects.get().secret == "s3cret-for-the-bot-0001"


def test_the_secret_is_never_shown_and_kept_when_left_empty(client, operator):
    bot = ExternalBotFactory(secret="very-secret-signing-key-1234")
    url = reverse("admin:rchat_externalbot_change", args=[bot.pk])
    content = page(client.get(url))
    assert "very-secret-signing-key" not in content
    assert bot.masked_secret in content and bot.masked_secret.endswith("1234")
    assert "Leave empty to keep the stored secret." in content
    assert "very-secret" not in page(client.get(reverse("admin:rchat_externalbot_changelist")))

    response = client.post(url, bot_form(bot.credential, url="https://bot.example/v2"))
    assert response.status_code == 302
    bot.refresh_from_db()
    assert (bot.url, bot.secret) == ("https://bot.example/v2", "very-secret-signing-key-1234")

    client.post(url, bot_form(bot.credential, secret="a-brand-new-secret-5678"))
    bot.refresh_from_db()
    assert bot.secret == "a-brand-new-secret-5678"


def test_the_latest_forwards_are_listed_with_the_secret_masked(client, operator):
    bot = ExternalBotFactory(secret="very-secret-signing-key-1234")
    room = ChatRoomFactory(credential=bot.credential)
    message = MessageFactory(room=room)
    for attempt in range(25):
        BotForward.objects.create(
            message=message,
            url=bot.url,
            attempt=attempt + 1,
            started_at=timezone.now(),
            outcome=BotForward.Outcome.RETRY,
            http_status=503,
            error=f"try {attempt}: bad answer to very-secret-signing-key-1234",
        )
    content = page(client.get(reverse("admin:rchat_externalbot_change", args=[bot.pk])))
    assert content.count('class="rchat-forward retry"') == 20
    assert "try 24:" in content and "try 4:" not in content
    assert "very-secret-signing-key" not in content


# --- the replay action -----------------------------------------------------------------------


@pytest.fixture
def replay_in_room_list(monkeypatch):
    """The action as rchat/admin.py will offer it (ChatRoomAdmin.actions)."""
    room_admin = admin.site._registry[ChatRoom]
    actions = [name for name in room_admin.actions if name != "replay_action"]
    monkeypatch.setattr(room_admin, "actions", [*actions, replay_action])


def run_replay(client, rooms):
    return client.post(
        reverse("admin:rchat_chatroom_changelist"),
        {"action": "replay_action", "_selected_action": [str(room.pk) for room in rooms]},
    )


def test_the_replay_action_shows_what_would_be_answered_differently(
    client, operator, replay_in_room_list
):
    room = ChatRoomFactory(handler=ChatRoom.Handler.BOT, display_name="Somchai")
    MessageFactory(room=room, data="สวัสดี", text="สวัสดี")
    asked = MessageFactory(room=room, data="ราคาเท่าไหร่", text="ราคาเท่าไหร่")
    AutoReplyFactory(credential=room.credential, match="ราคา", reply_data="290 บาทค่ะ")
    before = Message.objects.count()

    content = page(run_replay(client, [room]))

    assert "Replayed 2 messages in 1 chat room: 1 the same, 1 different." in content
    assert f'data-message="{asked.pk}"' in content
    assert "290 บาทค่ะ" in content and "keyword “ราคา” found" in content
    assert Message.objects.count() == before


def test_the_replay_action_needs_only_the_view_permission(client, replay_in_room_list):
    client.force_login(user_with("view_chatroom", username="reader"))
    room = ChatRoomFactory(handler=ChatRoom.Handler.BOT)
    MessageFactory(room=room, data="hello", text="hello")
    content = page(run_replay(client, [room]))
    assert "Every message would get the same answer as then." in content
