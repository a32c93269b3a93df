"""Replaying the bot over stored conversations: what it did then against what the rules
and the site's bot would do now, per inbound message; nothing sent, nothing written."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from rchat import bots
from rchat.bots.replay import replay
from rchat.models import AutoReply, ChatRoom, Handover, Message
from tests.factories import AutoReplyFactory, ChatRoomFactory, CredentialFactory, MessageFactory

pytestmark = pytest.mark.django_db


class WritingBot(bots.Bot):
    """A site's bot that writes to the database while it answers (a replay must undo it)."""

    def answer(self, message, thread):
        AutoReply.objects.create(name="written by the bot", match="x")
        return bots.Reply.text(f"bot: {len(thread)} messages")


@pytest.fixture(autouse=True)
def _rules_only(settings):
    settings.RCHAT = {**settings.RCHAT, "BOT": ""}


def inbound(room, text):
    return MessageFactory(room=room, direction=Message.Direction.IN, data=text, text=text)


def outbound(room, data, sender=Message.Sender.RULE, rule=None):
    return MessageFactory(
        room=room,
        direction=Message.Direction.OUT,
        data=data,
        text=data,
        sender=sender,
        rule=rule,
        status=Message.Status.SENT,
    )


def bot_room(credential=None, **fields):
    fields.setdefault("handler", ChatRoom.Handler.BOT)
    return ChatRoomFactory(credential=credential or CredentialFactory(bot_first=True), **fields)


def rows():
    return (Message.objects.count(), Handover.objects.count(), AutoReply.objects.count())


def test_a_rule_added_after_the_conversation_shows_as_different():
    room = bot_room()
    inbound(room, "สวัสดีค่ะ")
    asked = inbound(room, "ราคา เท่าไหร่ คะ")
    outbound(room, "290 บาทค่ะ", sender=Message.Sender.PERSON)
    rule = AutoReplyFactory(credential=room.credential, match="ราคา", reply_data="ราคา 290 บาท")

    report = replay(rooms=[room])

    assert (report.rooms, report.messages, report.same, report.different) == (1, 2, 1, 1)
    assert report.summary() == "Replayed 2 messages in 1 chat room: 1 the same, 1 different."
    (difference,) = report.differences
    assert difference.message_id == asked.pk
    assert difference.then.replies == () and not difference.then.hand_over
    assert difference.now.replies == (("text", "ราคา 290 บาท"),)
    assert any("“ราคา”" in line for line in difference.why)
    assert "ราคา 290 บาท" in difference.now.shown()
    assert rule.name  # the rule answers now, the person answered then


def test_what_the_rules_answered_then_and_would_answer_now_is_the_same():
    room = bot_room()
    rule = AutoReplyFactory(credential=room.credential, match="ราคา", reply_data="290 บาทค่ะ")
    inbound(room, "ราคาเท่าไหร่")
    outbound(room, "290 บาทค่ะ", rule=rule)
    inbound(room, "ขอบคุณค่ะ")

    report = replay(rooms=[room])

    assert (report.messages, report.same, report.different) == (2, 2, 0)
    assert [result.same for result in report.results] == [True, True]


def test_a_changed_reply_is_different_then_and_now_side_by_side():
    room = bot_room()
    rule = AutoReplyFactory(credential=room.credential, match="ราคา", reply_data="290 บาท")
    inbound(room, "ราคา?")
    outbound(room, "250 บาท", rule=rule)

    (result,) = replay(rooms=[room]).results

    assert not result.same
    assert "250 บาท" in result.then.shown()
    assert "290 บาท" in result.now.shown()


def test_a_hand_over_then_and_now_is_the_same_even_if_people_handle_the_room_today(settings):
    reply = {"type": "text", "data": "กำลังส่งต่อให้พนักงานค่ะ"}
    settings.RCHAT = {**settings.RCHAT, "HANDOVER_REPLY": reply}
    room = bot_room(handler=ChatRoom.Handler.PEOPLE)
    asked = inbound(room, "ขอ คุยกับ พนักงาน ค่ะ")
    outbound(room, reply["data"])
    Handover.objects.create(
        room=room,
        to=ChatRoom.Handler.PEOPLE,
        reason=Handover.Reason.ASKED,
        message=asked,
        at=timezone.now(),
    )
    inbound(room, "ราคาเท่าไหร่")  # people answered this one

    report = replay(rooms=[room])

    first, second = report.results
    assert first.same and first.then.hand_over and first.now.hand_over
    assert first.then.handler == ChatRoom.Handler.BOT
    assert second.same  # no rule: nothing then, nothing now
    assert second.then.handler == ChatRoom.Handler.PEOPLE


def test_a_person_taking_over_is_not_the_bots_hand_over():
    room = bot_room()
    message = inbound(room, "hello")
    Handover.objects.create(
        room=room,
        to=ChatRoom.Handler.PEOPLE,
        reason=Handover.Reason.TAKEN,
        message=message,
        at=timezone.now(),
    )
    (result,) = replay(rooms=[room]).results
    assert not result.then.hand_over and result.same


def test_nothing_is_written_nor_sent_even_by_a_bot_that_writes(settings):
    settings.RCHAT = {**settings.RCHAT, "BOT": "tests.test_bot_replay.WritingBot"}
    room = bot_room()
    inbound(room, "มีสินค้าไหม")
    inbound(room, "ขอ คุยกับ พนักงาน ค่ะ")
    before = rows()
    handler = ChatRoom.objects.get(pk=room.pk).handler

    report = replay(rooms=[room])

    assert rows() == before
    assert ChatRoom.objects.get(pk=room.pk).handler == handler
    assert not Message.objects.filter(status=Message.Status.QUEUED).exists()
    first, second = report.results
    assert first.now.replies == (("text", "bot: 1 messages"),)
    assert second.now.hand_over


def test_the_thread_is_the_rooms_messages_up_to_the_one_replayed(settings):
    settings.RCHAT = {
        **settings.RCHAT,
        "BOT": "tests.test_bot_replay.WritingBot",
        "BOT_THREAD_LENGTH": 3,
    }
    room = bot_room()
    for n in range(5):
        inbound(room, f"message {n}")
    lengths = [result.now.replies[0][1] for result in replay(rooms=[room]).results]
    assert lengths == [f"bot: {n} messages" for n in (1, 2, 3, 3, 3)]


def test_rooms_are_chosen_by_credential_ids_and_since():
    credential = CredentialFactory(bot_first=True)
    mine, also_mine, other = bot_room(credential), bot_room(credential), bot_room()
    old = inbound(mine, "old")
    inbound(mine, "new")
    inbound(also_mine, "hello")
    inbound(other, "hello")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))

    assert replay(credential_id=credential.pk).messages == 3
    assert replay(rooms=[other.pk]).messages == 1
    assert replay(rooms=ChatRoom.objects.filter(pk=mine.pk)).messages == 2
    since = replay(rooms=[mine], since=timezone.now() - timedelta(days=1))
    assert since.messages == 1 and since.results[0].text == "new"
    assert replay().rooms == 3


def test_the_limit_stops_the_replay_and_says_so():
    for _room in range(2):
        room = bot_room()
        inbound(room, "one")
        inbound(room, "two")
    report = replay(limit=3)
    assert report.messages == 3 and report.truncated
    assert "stopped at the limit" in report.summary()


def test_progress_is_reported_after_each_room_and_only_differences_kept_on_request():
    AutoReplyFactory(match="ราคา")
    for _room in range(3):
        room = bot_room()
        inbound(room, "hello")
        inbound(room, "ราคา")
    seen = []
    report = replay(progress=lambda report: seen.append(report.rooms), keep_same=False)
    assert seen == [1, 2, 3]
    assert (report.same, report.different, len(report.results)) == (3, 3, 3)


# --- the command ---------------------------------------------------------------------------


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("rchat_bot_replay", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_lists_the_differences_and_ends_with_a_summary():
    credential = CredentialFactory(name="shop", bot_first=True)
    room = bot_room(credential, display_name="Somchai")
    inbound(room, "สวัสดี")
    asked = inbound(room, "ราคาเท่าไหร่")
    AutoReplyFactory(credential=credential, match="ราคา", reply_data="290 บาท")

    out, err = run("--credential", "shop", "--progress-every", "1")

    lines = out.strip().splitlines()
    assert lines[-1] == "Replayed 2 messages in 1 chat room: 1 the same, 1 different."
    assert f"message #{asked.pk}" in out and "Somchai" in out
    assert "then: nothing" in out and "290 บาท" in out and "“ราคา”" in out
    assert "สวัสดี" not in out  # the same: not shown by default
    assert "1 chat rooms, 2 messages replayed" in err
    everything, _err = run("--show", "all", "--room-ids", str(room.pk))
    assert "same: nothing" in everything and "สวัสดี" in everything


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--credential", "nope"], "No credential named nope"),
        (["--room-ids", "1,x"], "--room-ids takes chat room ids"),
        (["--room-ids", "999999"], "No chat room with id 999999"),
        (["--since", "31/01/2025"], "--since takes a date as YYYY-MM-DD"),
        (["--limit", "0"], "--limit must be a positive number"),
    ],
)
def test_the_command_refuses_bad_input_with_a_one_line_reason(args, reason):
    with pytest.raises(CommandError, match=reason) as caught:
        run(*args)
    assert "\n" not in str(caught.value)


def test_the_command_with_since_and_limit():
    room = bot_room()
    inbound(room, "one")
    inbound(room, "two")
    out, _err = run("--since", timezone.localdate().isoformat(), "--limit", "1")
    assert out.strip().splitlines()[-1] == (
        "Replayed 1 message in 1 chat room: 1 the same, 0 different; stopped at the limit."
    )
