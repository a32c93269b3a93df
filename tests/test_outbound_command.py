"""``manage.py rchat_send``: queue a message from the shell, optionally wait for the outcome."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rchat.models import ChatRoom, Message
from rchat.tasks import drain_outbound
from tests.factories import ChatRoomFactory, CredentialFactory

SEND_PATH = "/api/v1/external/send-message"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_broker(monkeypatch):
    # Celery reads the CELERY_BROKER_URL environment variable before its settings.
    monkeypatch.setenv("CELERY_BROKER_URL", "memory://")
    monkeypatch.setattr(drain_outbound.app.conf, "broker_url", "memory://")


def run(*args):
    out = StringIO()
    call_command("rchat_send", *args, stdout=out)
    return out.getvalue()


def test_queues_a_text_in_a_new_room_and_prints_its_id():
    credential = CredentialFactory(name="shop")
    output = run("--chat-id", "chat-7", "--data", "Your order has shipped")
    message = Message.objects.get()
    assert f"Queued message {message.pk} to chat chat-7 (credential shop)." in output
    assert message.room == ChatRoom.objects.get(credential=credential, chat_id="chat-7")
    assert (message.direction, message.status, message.data) == (
        "out",
        "queued",
        "Your order has shipped",
    )


def test_uses_the_existing_room_and_json_data_for_other_types():
    room = ChatRoomFactory(chat_id="chat-8")
    run(
        "--chat-id", "chat-8", "--type", "location",
        "--data", '{"latitude": 13.75, "longitude": 100.5, "title": "Shop"}',
    )  # fmt: skip
    message = Message.objects.get()
    assert message.room == room
    assert message.data == {"latitude": 13.75, "longitude": 100.5, "title": "Shop"}


def test_a_bare_url_is_enough_for_an_image():
    ChatRoomFactory(chat_id="chat-9")
    run("--chat-id", "chat-9", "--type", "image", "--data", "https://cdn.example/a.png")
    assert Message.objects.get().data == "https://cdn.example/a.png"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--type", "location", "--data", "{not json"], "must be JSON"),
        (["--type", "location", "--data", '{"latitude": 91, "longitude": 0}'], "latitude"),
        (["--data", "   "], "empty"),
        (["--type", "image", "--data", "ftp://x/a.png"], "http"),
    ],
)
def test_bad_data_is_a_one_line_error_and_nothing_is_queued(args, reason):
    ChatRoomFactory(chat_id="chat-1")
    with pytest.raises(CommandError, match=reason) as caught:
        run("--chat-id", "chat-1", *args)
    assert "\n" not in str(caught.value)
    assert not Message.objects.exists()


def test_credential_must_be_named_when_there_are_several():
    CredentialFactory(name="shop-a")
    CredentialFactory(name="shop-b")
    with pytest.raises(CommandError, match="choose one with --credential"):
        run("--chat-id", "c", "--data", "hi")
    run("--chat-id", "c", "--credential", "shop-b", "--data", "hi")
    assert Message.objects.get().room.credential.name == "shop-b"


def test_an_unknown_credential_is_named_in_the_error():
    CredentialFactory(name="shop")
    with pytest.raises(CommandError, match="No credential named 'nope' \\(known: shop\\)"):
        run("--chat-id", "c", "--credential", "nope", "--data", "hi")


def test_a_closed_room_is_refused():
    room = ChatRoomFactory(chat_id="chat-1", status=ChatRoom.Status.CLOSED)
    with pytest.raises(CommandError, match="closed"):
        run("--chat-id", room.chat_id, "--data", "hi")


# The wake-up is sent when the command's transaction commits: these tests commit.
@pytest.mark.django_db(transaction=True)
def test_wait_reports_the_message_sent(httpserver, celery_eager):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json({"message_id": "rc-5"})
    ChatRoomFactory(
        chat_id="chat-1", credential=CredentialFactory(base_url=httpserver.url_for("/"))
    )
    output = run("--chat-id", "chat-1", "--data", "hi", "--wait", "--timeout", "10")
    assert "sent after 1 attempt(s). R-Chat's id: rc-5." in output


@pytest.mark.django_db(transaction=True)
def test_wait_fails_with_rchats_reason_when_the_message_fails(httpserver, celery_eager):
    httpserver.expect_request(SEND_PATH, method="POST").respond_with_json(
        {"error": "chat room is archived"}, status=400
    )
    ChatRoomFactory(
        chat_id="chat-1", credential=CredentialFactory(base_url=httpserver.url_for("/"))
    )
    with pytest.raises(CommandError, match=r"failed after 1 attempt.*chat room is archived"):
        run("--chat-id", "chat-1", "--data", "hi", "--wait", "--timeout", "10")
    assert Message.objects.get().status == "failed"


def test_wait_gives_up_after_the_timeout_and_keeps_the_message():
    ChatRoomFactory(chat_id="chat-1")
    with pytest.raises(CommandError, match="still queued after 1s"):
        run("--chat-id", "chat-1", "--data", "hi", "--wait", "--timeout", "1")
    assert Message.objects.get().status == "queued"
