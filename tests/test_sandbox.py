"""The R-Chat sandbox: a real HTTP server playing R-Chat for development and tests."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from rchat import crypto
from rchat.client import RChatClient
from rchat.exceptions import (
    RChatAuthError,
    RChatRateLimitedError,
    RChatRejectedError,
    RChatUnavailableError,
)
from rchat.models import Credential
from rchat.sandbox import DEMO_TOKEN, Sandbox, signature_for

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "cdt_sandbox_test_token_0001"
SEND = "/api/v1/external/send-message"
REGISTER = "/api/v1/external/register"


def client(sb, token=TOKEN, **kwargs):
    return RChatClient(base_url=sb.url, token=token, **kwargs)


def post(sb, path, body=None, token=TOKEN, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        return requests.post(sb.url + path, data=raw, headers=headers, timeout=10)
    return requests.post(sb.url + path, json=body, headers=headers, timeout=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Register ----------------------------------------------------------------------------


def test_register_issues_a_signature_token_that_is_the_same_on_every_run(sandbox):
    """Register answers SUCCESS with a signature token derived from the Chatday-Token."""
    first = client(sandbox).register()
    with Sandbox(port=0) as restarted:
        again = client(restarted).register()
    other = client(sandbox, token="cdt_another_token_0002").register()
    assert first == again == signature_for(TOKEN)
    assert other != first


def test_register_answers_like_r_chat(sandbox):
    """The answer is JSON with status SUCCESS and the Chatday-Signature-Token field."""
    response = post(sandbox, REGISTER)
    assert response.status_code == 200
    assert response.json() == {
        "status": "SUCCESS",
        "Chatday-Signature-Token": signature_for(TOKEN),
    }


def test_register_without_a_bearer_token_is_refused(sandbox):
    """No Authorization header: 401 with a reason naming the header."""
    response = post(sandbox, REGISTER, token=None)
    assert response.status_code == 401
    assert "Authorization" in response.json()["reason"]


def test_strict_mode_registers_only_the_tokens_it_was_given():
    """--strict: an unknown Chatday-Token gets 401, a given one its signature token."""
    with Sandbox(port=0, strict=True, tokens=["cdt_known_token_0003"]) as sb:
        with pytest.raises(RChatAuthError):
            client(sb, token="cdt_unknown_token_0004").register()
        assert client(sb, token="cdt_known_token_0003").register() == signature_for(
            "cdt_known_token_0003"
        )


def test_the_signing_key_changes_the_signature_tokens():
    """Another sandbox secret issues other signature tokens for the same token."""
    with Sandbox(port=0, secret="another-key") as sb:
        assert client(sb).register() != signature_for(TOKEN)


def test_register_path_follows_the_rchat_setting(settings):
    """RCHAT["REGISTER_PATH"] moves Register in the sandbox as in the client."""
    settings.RCHAT = {**settings.RCHAT, "REGISTER_PATH": "/v2/activate"}
    with Sandbox(port=0) as sb:
        assert client(sb).register() == signature_for(TOKEN)
        assert post(sb, REGISTER).status_code == 404


# --- Send Message ------------------------------------------------------------------------


def test_send_message_is_recorded_per_chat_with_thai_text_intact(sandbox):
    """A registered token's message is answered with a message id and kept per chat."""
    rchat = client(sandbox)
    rchat.register()
    answer = rchat.send_message("chat-th", "text", "สวัสดีครับ ยินดีต้อนรับ")
    rchat.send_message("chat-other", "sticker", {"package_id": "1", "sticker_id": "2"})

    assert answer["status"] == "SUCCESS" and answer["message_id"]
    received = sandbox.received("chat-th")
    assert [r["message"] for r in received] == [{"type": "text", "data": "สวัสดีครับ ยินดีต้อนรับ"}]
    assert received[0]["message_id"] == answer["message_id"]
    listed = requests.get(
        sandbox.url + "/_sandbox/messages", params={"chat_id": "chat-th"}, timeout=5
    ).json()["messages"]
    assert [m["message"]["data"] for m in listed] == ["สวัสดีครับ ยินดีต้อนรับ"]
    assert TOKEN not in json.dumps(listed)


def test_send_message_with_an_unregistered_token_is_refused(sandbox):
    """Send Message before Register: 401, and nothing is recorded."""
    with pytest.raises(RChatAuthError, match="not registered"):
        client(sandbox).send_message("chat-1", "text", "hello")
    assert sandbox.received() == []


def test_tokens_given_at_start_count_as_registered():
    """A token the sandbox was given can send at once (it was registered on an earlier run)."""
    with Sandbox(port=0, tokens=[TOKEN]) as sb:
        assert client(sb).send_message("chat-1", "text", "hello")["status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"chat_id": "c"}).encode(), '"message"'),
        (json.dumps({"message": {"data": "x"}, "chat_id": "c"}).encode(), "message.type"),
        (json.dumps({"message": {"type": "text"}, "chat_id": "c"}).encode(), "message.data"),
        (
            json.dumps({"message": {"type": "text", "data": {"a": 1}}, "chat_id": "c"}).encode(),
            "string",
        ),
        (json.dumps({"message": {"type": "text", "data": "x"}}).encode(), "chat_id"),
        (
            json.dumps({"message": {"type": "text", "data": "x"}, "chat_id": " "}).encode(),
            "chat_id",
        ),
    ],
)
def test_send_message_with_a_malformed_body_gets_400_and_a_reason(sandbox, body, reason):
    """Bodies R-Chat would refuse are answered 400 with a JSON reason, and not recorded."""
    client(sandbox).register()
    response = post(sandbox, SEND, raw=body)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert sandbox.received() == []


def test_the_client_sees_a_malformed_send_as_rejected(sandbox):
    """rchat's client turns the sandbox's 400 into RChatRejectedError (not retried)."""
    client(sandbox).register()
    with pytest.raises(RChatRejectedError, match="chat_id"):
        client(sandbox).send_message("", "text", "hello")


# --- Faults ------------------------------------------------------------------------------


def test_a_status_fault_for_two_calls_fails_exactly_the_next_two(sandbox):
    """{"status": 503, "count": 2}: two 503s, then normal answers again."""
    rchat = client(sandbox)
    rchat.register()
    sandbox.inject(status=503, count=2)
    for _ in range(2):
        with pytest.raises(RChatUnavailableError) as caught:
            rchat.send_message("chat-1", "text", "hello")
        assert caught.value.status == 503
    assert rchat.send_message("chat-1", "text", "hello")["status"] == "SUCCESS"
    assert [c["status"] for c in sandbox.calls() if c["endpoint"] == "send"] == [503, 503, 200]
    assert len(sandbox.received("chat-1")) == 1
    assert sandbox.faults() == []


def test_a_429_fault_carries_retry_after(sandbox):
    """{"status": 429, "retry_after": 2}: the client reads Retry-After: 2."""
    client(sandbox).register()
    sandbox.inject(status=429, retry_after=2, count=1)
    with pytest.raises(RChatRateLimitedError) as caught:
        client(sandbox).send_message("chat-1", "text", "hello")
    assert caught.value.retry_after == 2


def test_a_401_fault_looks_like_a_refused_token(sandbox):
    """{"status": 401}: the client reports the credential as refused."""
    sandbox.inject(status=401, count=1)
    with pytest.raises(RChatAuthError):
        client(sandbox).register()


def test_a_drop_fault_closes_the_connection_without_an_answer(sandbox):
    """{"drop": true}: the client sees a connection error, the next call works."""
    rchat = client(sandbox)
    rchat.register()
    sandbox.inject(drop=True, count=1)
    with pytest.raises(RChatUnavailableError) as caught:
        rchat.send_message("chat-1", "text", "hello")
    assert caught.value.status is None
    assert rchat.send_message("chat-1", "text", "hello")["status"] == "SUCCESS"
    assert len(sandbox.received("chat-1")) == 1


def test_a_latency_fault_makes_an_impatient_client_time_out(sandbox):
    """{"latency_ms": 2000}: a client reading for 0.3 s gives up before the answer."""
    client(sandbox).register()
    sandbox.inject(latency_ms=2000, count=1, on="send")
    with pytest.raises(RChatUnavailableError) as caught:
        client(sandbox, read_timeout=0.3).send_message("chat-1", "text", "hello")
    assert caught.value.status is None


def test_a_share_fault_fails_some_calls_and_not_others(sandbox):
    """{"share": 0.5, "status": 500}: of many calls, some fail and some succeed."""
    sandbox.state._rng.seed(4)
    client(sandbox).register()
    sandbox.inject(share=0.5, status=500, on="send")
    statuses = [
        post(sandbox, SEND, {"message": {"type": "text", "data": "x"}, "chat_id": "c"}).status_code
        for _ in range(40)
    ]
    assert set(statuses) == {200, 500}


def test_a_fault_on_send_leaves_register_alone(sandbox):
    """ "on": "send" faults do not touch Register."""
    sandbox.inject(status=503, on="send")
    assert client(sandbox).register() == signature_for(TOKEN)


def test_faults_api_adds_lists_and_clears_faults(sandbox):
    """POST, GET and DELETE /_sandbox/faults manage the faults."""
    url = sandbox.url + "/_sandbox/faults"
    created = requests.post(url, json={"status": 503, "count": 2}, timeout=5)
    assert created.status_code == 201
    assert [f["status"] for f in requests.get(url, timeout=5).json()["faults"]] == [503]
    assert requests.delete(url, timeout=5).json() == {"cleared": 1}
    assert requests.get(url, timeout=5).json()["faults"] == []


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"status": 200}, "status must be one of"),
        ({"status": 503, "count": 0}, "count"),
        ({"status": 503, "share": 1.5}, "share"),
        ({"count": 2}, "needs a status"),
        ({"status": 503, "drop": True}, "either"),
        ({"status": "soon"}, "whole number"),
        ({"status": 503, "colour": "red"}, "colour"),
    ],
)
def test_a_nonsense_fault_gets_400_and_a_reason(sandbox, spec, reason):
    """The faults API refuses what it cannot play, and adds nothing."""
    response = requests.post(sandbox.url + "/_sandbox/faults", json=spec, timeout=5)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert sandbox.faults() == []


# --- The end user's side: webhooks -------------------------------------------------------


def test_an_end_user_message_is_posted_to_the_webhook_as_r_chat_would(sandbox, httpserver):
    """The webhook carries the signature token header and the documented body, in UTF-8."""
    httpserver.expect_request("/hook", method="POST").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")

    entry = sandbox.send_as_user("chat-9", "ขอสอบถามราคาครับ", channel="line", name="สมชาย")

    assert entry["webhook"]["ok"] and entry["webhook"]["status"] == 200
    (request, _response) = httpserver.log[0]
    assert request.headers["X-Chatday-Signature-Token"] == signature_for(DEMO_TOKEN)
    assert "utf-8" in request.headers["Content-Type"]
    body = json.loads(request.get_data().decode("utf-8"))
    assert body["message"]["type"] == "text"
    assert body["message"]["data"] == "ขอสอบถามราคาครับ"
    assert body["message"]["id"] == entry["id"]
    assert body["chat_id"] == "chat-9"
    assert body["channel"] == "line"
    assert body["user"] == {"name": "สมชาย"}
    assert body["timestamp"].endswith("Z")


def test_webhooks_are_signed_for_the_first_given_token(httpserver):
    """With --token, the webhooks carry that token's signature token."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    with Sandbox(port=0, tokens=[TOKEN], webhook_url=httpserver.url_for("/hook")) as sb:
        sb.send_as_user("chat-1", "hello")
    assert httpserver.log[0][0].headers["X-Chatday-Signature-Token"] == signature_for(TOKEN)


def test_webhooks_are_signed_for_the_token_a_site_registered_last(httpserver):
    """A site that registers its own token with a running sandbox can verify its webhooks."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    other = "cdt_a_sites_own_token_0002"
    with Sandbox(port=0, tokens=[TOKEN], webhook_url=httpserver.url_for("/hook")) as sb:
        sb.send_as_user("chat-1", "before")
        client(sb, token=other).register()
        sb.send_as_user("chat-1", "after")
        shown = sb.info()["account_token"]

    signed = [request.headers["X-Chatday-Signature-Token"] for request, _ in httpserver.log]
    assert signed == [signature_for(TOKEN), signature_for(other)]
    assert shown == crypto.mask(other)


def test_the_chat_page_api_posts_the_webhook_and_shows_the_site_answer(sandbox, httpserver):
    """POST /_sandbox/chats/<id>/messages sends; a refusal by the site is shown, not lost."""
    httpserver.expect_request("/hook").respond_with_json({"detail": "bad token"}, status=403)
    sandbox.webhook_url = httpserver.url_for("/hook")
    response = requests.post(
        sandbox.url + "/_sandbox/chats/chat%201/messages",
        json={"text": "สวัสดี", "channel": "facebook"},
        timeout=5,
    )
    assert response.status_code == 201
    assert response.json()["webhook"]["status"] == 403
    chat = requests.get(sandbox.url + "/_sandbox/chats/chat%201", timeout=5).json()
    assert chat["channel"] == "facebook"
    assert [(e["from"], e["data"], e["webhook"]["ok"]) for e in chat["entries"]] == [
        ("user", "สวัสดี", False)
    ]


def test_an_unreachable_site_is_reported_on_the_message(sandbox):
    """A webhook URL where nothing listens: the message says the site could not be reached."""
    sandbox.webhook_url = f"http://127.0.0.1:{free_port()}/hook"
    entry = sandbox.send_as_user("chat-1", "hello")
    assert entry["webhook"]["ok"] is False
    assert "Could not reach" in entry["webhook"]["error"]


def test_an_empty_message_from_the_page_gets_400(sandbox):
    """Sending nothing is refused with a reason."""
    response = requests.post(
        sandbox.url + "/_sandbox/chats/chat-1/messages", json={"text": "  "}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "Write some text."


def test_replies_appear_in_the_chat_after_the_user_messages(sandbox):
    """The chat's JSON (what the page polls) lists user messages and replies in order."""
    sandbox.send_as_user("chat-1", "คำถาม")
    client(sandbox).register()
    client(sandbox).send_message("chat-1", "text", "คำตอบ")
    chat = requests.get(sandbox.url + "/_sandbox/chats/chat-1", timeout=5).json()
    assert [(e["from"], e["data"]) for e in chat["entries"]] == [
        ("user", "คำถาม"),
        ("site", "คำตอบ"),
    ]
    later = requests.get(
        sandbox.url + "/_sandbox/chats/chat-1",
        params={"after": chat["entries"][0]["seq"]},
        timeout=5,
    ).json()
    assert [e["data"] for e in later["entries"]] == ["คำตอบ"]


# --- Bursts ------------------------------------------------------------------------------


def test_a_burst_spreads_messages_over_chats_in_order(sandbox, httpserver):
    """POST /_sandbox/burst: N webhooks over M chats, each chat's in the order written."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")

    summary = requests.post(
        sandbox.url + "/_sandbox/burst", json={"messages": 10, "chats": 3}, timeout=30
    ).json()

    assert (summary["delivered"], summary["failed"]) == (10, 0)
    bodies = [json.loads(r.get_data()) for r, _ in httpserver.log]
    assert len(bodies) == 10
    per_chat = {}
    for body in bodies:
        per_chat.setdefault(body["chat_id"], []).append(body["message"]["data"])
    assert sorted(per_chat) == ["burst-1", "burst-2", "burst-3"]
    assert per_chat["burst-1"] == [f"ข้อความที่ {i} / message {i}" for i in (1, 4, 7, 10)]


def test_a_nonsense_burst_gets_400(sandbox):
    """More chats than messages, or zero messages, is refused with a reason."""
    for spec in ({"messages": 2, "chats": 3}, {"messages": 0, "chats": 1}, {}):
        response = requests.post(sandbox.url + "/_sandbox/burst", json=spec, timeout=5)
        assert response.status_code == 400, spec
        assert response.json()["reason"]


# --- Pages -------------------------------------------------------------------------------


def test_pages_are_served_in_utf8_with_the_chat_id_escaped(sandbox):
    """The index, a chat page (Thai name, hostile chat id) and the script load."""
    index = requests.get(sandbox.url + "/", timeout=5)
    assert index.status_code == 200 and "R-Chat sandbox" in index.text
    page = requests.get(
        sandbox.url + "/chat/%3Cscript%3Ex",
        params={"channel": "line", "name": "สมหญิง"},
        timeout=5,
    )
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<script>x" not in page.text and "&lt;script&gt;x" in page.text
    assert "สมหญิง" in page.text
    script = requests.get(sandbox.url + "/_sandbox/static/sandbox.js", timeout=5)
    assert script.status_code == 200 and "setInterval" in script.text
    assert [c["chat_id"] for c in sandbox.chats()] == ["<script>x"]


def test_a_chat_page_with_an_unknown_channel_gets_400(sandbox):
    """?channel= must be web, line or facebook."""
    response = requests.get(sandbox.url + "/chat/c1", params={"channel": "sms"}, timeout=5)
    assert response.status_code == 400
    assert "channel" in response.json()["reason"]


# --- The command -------------------------------------------------------------------------


def _start_command(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "rchat_sandbox", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    first = process.stdout.readline()
    if "listening on" not in first:
        process.kill()
        raise AssertionError(f"rchat_sandbox did not start: {first}{process.stderr.read()}")
    # The rest of the banner is read here: communicate() later reads the pipe itself and
    # would miss lines this text stream has already buffered.
    banner = [first]
    while "Press Ctrl-C" not in banner[-1] and len(banner) < 30:
        banner.append(process.stdout.readline())
    process.banner = "".join(banner)
    return process, first.rsplit(" ", 1)[-1].strip()


@pytest.mark.slow
def test_the_command_serves_r_chat_and_stops_cleanly_on_sigterm():
    """rchat_sandbox --strict --token T: only T registers; SIGTERM ends it with a summary."""
    process, url = _start_command(
        "--strict",
        "--token",
        TOKEN,
        "--fault-status",
        "503",
        "--fault-count",
        "1",
        "--fault-on",
        "send",
    )
    try:
        with pytest.raises(RChatAuthError):
            RChatClient(base_url=url, token="cdt_not_given_0005").register()
        rchat = RChatClient(base_url=url, token=TOKEN)
        assert rchat.register() == signature_for(TOKEN)
        with pytest.raises(RChatUnavailableError) as caught:
            rchat.send_message("c1", "text", "hello")
        assert caught.value.status == 503
        rchat.send_message("c1", "text", "hello")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "1 message(s) received" in out
    assert TOKEN not in out + err


@pytest.mark.slow
def test_the_burst_option_drives_a_running_sandbox_and_summarises(httpserver):
    """rchat_sandbox --burst N --chats M: progress lines, then a one-line summary."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    process, url = _start_command("--webhook-url", httpserver.url_for("/hook"))
    try:
        port = url.rsplit(":", 1)[-1]
        result = subprocess.run(  # noqa: S603 - our own manage.py
            [
                sys.executable,
                "manage.py",
                "rchat_sandbox",
                "--port",
                port,
                "--burst",
                "6",
                "--chats",
                "2",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "6/6" in result.stdout
    assert "Burst done: 6 message(s) over 2 chat(s), 6 delivered, 0 failed" in result.stdout
    assert len(httpserver.log) == 6


def test_the_burst_option_without_a_running_sandbox_is_a_clear_error():
    """--burst with nothing on the port: CommandError saying how to start the sandbox."""
    with pytest.raises(CommandError, match="Start it first"):
        call_command("rchat_sandbox", port=free_port(), burst=3, chats=1)


def test_the_command_refuses_a_bad_webhook_url():
    """--webhook-url must be http(s)."""
    with pytest.raises(CommandError, match="http"):
        call_command("rchat_sandbox", port=0, webhook_url="ftp://example.com/hook")


def test_the_command_refuses_a_busy_port():
    """A port in use: a one-line reason, not a traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(CommandError, match="Cannot listen"):
            call_command("rchat_sandbox", port=busy.getsockname()[1])


# --- rchat_demo_setup --------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_setup_creates_an_admin_and_a_registered_credential_then_reuses_them(settings, capsys):
    """A first run creates the user and registers; a second run reuses both."""
    settings.DEBUG = True
    sandbox_url = f"http://127.0.0.1:{free_port()}"

    call_command("rchat_demo_setup", sandbox_url=sandbox_url)
    first = capsys.readouterr().out

    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password("rchat-demo")
    credential = Credential.objects.get(name="demo")
    assert credential.status == Credential.Status.ACTIVE
    assert credential.base_url == sandbox_url
    # A sandbox started later issues the same signature token: webhooks will match.
    assert credential.signature_digest == crypto.digest(signature_for(DEMO_TOKEN))
    assert "login admin / rchat-demo" in first
    assert "Demo ready: user admin, credential 'demo' registered now." in first
    assert "/rchat/inbox/" in first
    assert f"{sandbox_url}/chat/demo-line?channel=line" in first
    assert DEMO_TOKEN not in first

    call_command("rchat_demo_setup", sandbox_url=sandbox_url)
    second = capsys.readouterr().out
    assert "already registered" in second and "reusing 'admin'" in second
    assert get_user_model().objects.count() == 1
    assert Credential.objects.get(name="demo").registered_at == credential.registered_at


@pytest.mark.django_db
def test_demo_setup_registers_with_a_sandbox_already_running(settings, capsys):
    """With the sandbox up on its port, registration goes to it."""
    settings.DEBUG = True
    with Sandbox(port=0) as sb:
        call_command("rchat_demo_setup", sandbox_url=sb.url)
        assert [c["endpoint"] for c in sb.calls()] == ["register"]
    assert "already running" in capsys.readouterr().out


@pytest.mark.django_db
def test_demo_setup_keeps_a_changed_admin_password(settings, capsys):
    """An admin whose password was changed is reused and not reset."""
    settings.DEBUG = True
    get_user_model().objects.create_superuser("admin", "a@example.com", "my-own-password")
    call_command("rchat_demo_setup", sandbox_url=f"http://127.0.0.1:{free_port()}")
    assert "password unchanged" in capsys.readouterr().out
    assert get_user_model().objects.get(username="admin").check_password("my-own-password")


@pytest.mark.django_db
def test_demo_setup_refuses_to_run_without_debug(settings):
    """DEBUG off: no user with a known password is created."""
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("rchat_demo_setup")
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_demo_setup_with_a_dead_sandbox_port_explains_the_failure(settings):
    """A port taken by something that is not a sandbox: a one-line reason."""
    settings.DEBUG = True
    settings.RCHAT = {**settings.RCHAT, "READ_TIMEOUT": 0.5}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match="Registering the demo credential"):
            call_command("rchat_demo_setup", sandbox_url=f"http://127.0.0.1:{port}")


# --- The chat page in a browser ----------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Playwright (skipped when either is missing)."""
    from tests.conftest import _missing

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("needs Playwright: pip install -r requirements/dev.txt")
    if not os.path.exists("/usr/bin/chromium"):
        _missing("needs Chromium at /usr/bin/chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.mark.slow
def test_the_chat_page_sends_as_the_end_user_and_shows_replies_live(sandbox, httpserver, chromium):
    """Typing on the chat page posts the webhook; a reply shows up without a reload."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")
    page = chromium.new_page()
    try:
        page.goto(f"{sandbox.url}/chat/live-1?channel=line&name=สมชาย")
        page.fill("input[name=text]", "ขอเมนูหน่อยครับ")
        page.press("input[name=text]", "Enter")
        page.wait_for_selector("#thread li.user >> text=delivered to the site (HTTP 200)")
        body = json.loads(httpserver.log[0][0].get_data())
        assert (body["message"]["data"], body["channel"], body["user"]["name"]) == (
            "ขอเมนูหน่อยครับ",
            "line",
            "สมชาย",
        )

        client(sandbox).register()
        client(sandbox).send_message("live-1", "text", "นี่คือเมนูค่ะ")
        page.wait_for_selector("#thread li.site >> text=นี่คือเมนูค่ะ")
        texts = page.locator("#thread .bubble").all_inner_texts()
        assert texts == ["ขอเมนูหน่อยครับ", "นี่คือเมนูค่ะ"]
    finally:
        page.close()


@pytest.mark.slow
def test_the_index_page_adds_faults_and_sends_bursts(sandbox, httpserver, chromium):
    """The index page's forms add a fault, send a burst, and list the burst's chats."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")
    page = chromium.new_page()
    try:
        page.goto(sandbox.url + "/")
        page.select_option("#fault select[name=status]", "503")
        page.fill("#fault input[name=count]", "2")
        page.click("#fault button:text('Add fault')")
        page.wait_for_selector("#faults li")
        assert [(f["status"], f["count"]) for f in sandbox.faults()] == [(503, 2)]

        page.fill("#burst input[name=messages]", "6")
        page.fill("#burst input[name=chats]", "2")
        page.click("#burst button")
        page.wait_for_selector("#burst-result >> text=6 delivered, 0 failed")
        page.wait_for_selector("#chats >> text=burst-2")
        assert len(httpserver.log) == 6
    finally:
        page.close()


# --- Other web sites may not drive the sandbox --------------------------------------------


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Content-Type": "text/plain"}, "application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "application/json"),
        (
            {"Content-Type": "application/json", "Origin": "https://evil.example"},
            "https://evil.example",
        ),
        ({"Content-Type": "application/json", "Origin": "null"}, "null"),
    ],
)
def test_a_page_of_another_site_cannot_send_messages_through_the_sandbox(
    sandbox, httpserver, headers, why
):
    """A text/plain or cross-origin POST (what any web page may send) is refused, 403."""
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")
    body = json.dumps({"text": "pay here: https://evil.example"})

    response = requests.post(
        sandbox.url + "/_sandbox/chats/victim/messages", data=body, headers=headers, timeout=5
    )

    assert response.status_code == 403 and why in response.json()["reason"]
    assert httpserver.log == [] and sandbox.chats() == []
    assert (
        requests.delete(
            sandbox.url + "/_sandbox/faults", headers={"Origin": "https://evil.example"}, timeout=5
        ).status_code
        == 403
    )


def test_the_sandboxs_own_pages_still_drive_it(sandbox, httpserver):
    httpserver.expect_request("/hook").respond_with_json({"status": "SUCCESS"})
    sandbox.webhook_url = httpserver.url_for("/hook")
    same_origin = {"Content-Type": "application/json", "Origin": sandbox.url}

    response = requests.post(
        sandbox.url + "/_sandbox/chats/mine/messages",
        data=json.dumps({"text": "hello"}),
        headers=same_origin,
        timeout=5,
    )

    assert response.status_code == 201 and len(httpserver.log) == 1


# --- Idempotency-Key ------------------------------------------------------------------------


def test_a_repeated_idempotency_key_is_answered_as_the_first_call_and_shown_once(sandbox):
    rchat = client(sandbox)
    rchat.register()
    first = rchat.send_message("chat-k", "text", "ราคาเท่าไหร่", idempotency_key="rchat-k1")
    again = rchat.send_message("chat-k", "text", "ราคาเท่าไหร่", idempotency_key="rchat-k1")
    other = rchat.send_message("chat-k", "text", "ราคาเท่าไหร่", idempotency_key="rchat-k2")

    assert first["message_id"] == again["message_id"] != other["message_id"]
    received = sandbox.received("chat-k")
    assert [r["idempotency_key"] for r in received] == ["rchat-k1", "rchat-k2"]
    assert sandbox.info()["repeated_keys"] == 1


def test_a_sandbox_that_ignores_the_key_stores_every_call():
    with Sandbox(port=0, tokens=[TOKEN], idempotent=False) as sb:
        rchat = client(sb)
        for _ in range(2):
            rchat.send_message("chat-k", "text", "hello", idempotency_key="rchat-same")
        assert len(sb.received("chat-k")) == 2
        assert sb.info()["idempotent"] is False


# --- Who wrote a reply: the sender field -------------------------------------------------


def chat_page(sb, chat_id):
    page = requests.get(f"{sb.url}/chat/{chat_id}", timeout=5)
    assert page.status_code == 200
    return page


@pytest.mark.parametrize(
    ("sender", "label", "kind", "name"),
    [
        ({"kind": "bot"}, "🤖 Bot", "bot", ""),
        ({"kind": "rule", "name": "ราคา"}, "⚙ Rule: ราคา", "rule", "ราคา"),
        ({"kind": "rule"}, "⚙ Rule", "rule", ""),
        ({"kind": "person", "name": " สมศรี  ใจดี"}, "👤 สมศรี ใจดี", "person", "สมศรี ใจดี"),
    ],
)
def test_a_replys_sender_is_kept_and_labelled_on_the_chat_page(
    sandbox, settings, sender, label, kind, name
):
    """The body's sender field is kept with the reply (its JSON, the chat's JSON) and the
    chat page shows the label, in an element of the kind's class."""
    settings.RCHAT = {**settings.RCHAT, "SENDER_FIELD": "sender"}
    client(sandbox).register()
    client(sandbox).send_message("chat-s", "text", "คำตอบ", sender=sender)

    [received] = requests.get(sandbox.url + "/_sandbox/messages", timeout=5).json()["messages"]
    assert received["sender"] == sender
    assert received["label"] == {"kind": kind, "text": label, "name": name}
    [entry] = sandbox.conversation("chat-s")["entries"]
    assert entry["label"] == {"kind": kind, "text": label, "name": name}
    page = chat_page(sandbox, "chat-s").text
    assert (
        f'<li class="site sender-{kind}"><div class="sender">{label}</div>'
        '<div class="bubble">คำตอบ</div>'
    ) in page


def test_a_reply_without_a_sender_shows_no_label(sandbox, settings):
    """A body without the field (or with one rchat would not send) gets no label."""
    settings.RCHAT = {**settings.RCHAT, "SENDER_FIELD": ""}
    client(sandbox).register()
    client(sandbox).send_message("chat-n", "text", "no one said who")
    body = {"message": {"type": "text", "data": "odd"}, "chat_id": "chat-n"}
    post(sandbox, SEND, {**body, "sender": {"kind": "robot", "name": "x"}})
    post(sandbox, SEND, {**body, "sender": "bot"})

    assert [(r["sender"], r["label"]) for r in sandbox.received("chat-n")] == [
        (None, None),
        ({"kind": "robot", "name": "x"}, None),
        ("bot", None),
    ]
    page = chat_page(sandbox, "chat-n").text
    assert page.count('<li class="site"><div class="bubble">') == 3
    assert "sender-" not in page and 'class="sender"' not in page


def test_a_hostile_sender_name_is_shown_as_text(sandbox):
    """A name with markup is escaped on the page, and a long one is cut."""
    client(sandbox).register()
    name = '<img src=x onerror="alert(1)"> ' + "ก" * 200
    body = {"message": {"type": "text", "data": "<b>hi</b>"}, "chat_id": "chat-x"}
    post(sandbox, SEND, {**body, "sender": {"kind": "person", "name": name}})

    page = chat_page(sandbox, "chat-x")
    assert "<img" not in page.text and "<b>hi" not in page.text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page.text
    assert "&lt;b&gt;hi&lt;/b&gt;" in page.text
    assert len(sandbox.received("chat-x")[0]["label"]["text"]) == len("👤 ") + 80
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_the_sender_field_can_be_another_or_none():
    """Sandbox(sender_field=...) reads that field of the body; "" reads none."""
    body = {"message": {"type": "text", "data": "x"}, "chat_id": "c"}
    with Sandbox(port=0, tokens=[TOKEN], sender_field="author") as sb:
        post(sb, SEND, {**body, "author": {"kind": "bot"}, "sender": {"kind": "rule"}})
        assert sb.received()[0]["label"] == {"kind": "bot", "text": "🤖 Bot", "name": ""}
        assert sb.info()["sender_field"] == "author"
    with Sandbox(port=0, tokens=[TOKEN], sender_field="") as sb:
        post(sb, SEND, {**body, "sender": {"kind": "bot"}})
        assert (sb.received()[0]["sender"], sb.received()[0]["label"]) == (None, None)


def test_the_chat_page_shows_the_thread_before_any_script_runs(sandbox):
    """The page arrives with the messages so far: the end user's with its webhook note,
    replies with their labels (sandbox.js then redraws it the same way)."""
    sandbox.webhook_url = f"http://127.0.0.1:{free_port()}/hook"
    sandbox.send_as_user("chat-t", "ถามหน่อยค่ะ")
    client(sandbox).register()
    client(sandbox).send_message("chat-t", "sticker", {"id": "1"}, sender={"kind": "bot"})

    page = chat_page(sandbox, "chat-t").text
    assert '<li class="user"><div class="bubble">ถามหน่อยค่ะ</div><div class="meta bad">' in page
    assert "Could not reach" in page
    assert '<div class="bubble">sticker: {&quot;id&quot;:&quot;1&quot;}</div>' in page
    assert page.index("ถามหน่อยค่ะ") < page.index('<div class="sender">🤖 Bot</div>')


@pytest.mark.slow
def test_the_command_reads_the_sender_field_it_is_given():
    """rchat_sandbox --sender-field NAME: shown in the banner, read from the bodies."""
    process, url = _start_command("--sender-field", "author", "--token", TOKEN)
    try:
        body = {"message": {"type": "text", "data": "x"}, "chat_id": "c"}
        requests.post(
            url + SEND,
            json={**body, "author": {"kind": "rule", "name": "FAQ"}},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        [received] = requests.get(url + "/_sandbox/messages", timeout=5).json()["messages"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert received["label"] == {"kind": "rule", "text": "⚙ Rule: FAQ", "name": "FAQ"}
    assert "Sender field:  author" in process.banner


@pytest.mark.slow
def test_the_chat_page_labels_replies_live(sandbox, settings, chromium):
    """A reply arriving while the page is open shows its label, in its kind's colours."""
    settings.RCHAT = {**settings.RCHAT, "SENDER_FIELD": "sender"}
    client(sandbox).register()
    page = chromium.new_page()
    try:
        page.goto(f"{sandbox.url}/chat/live-2?channel=line")
        rchat = client(sandbox)
        rchat.send_message("live-2", "text", "ไซส์ M ค่ะ", sender={"kind": "bot"})
        rchat.send_message("live-2", "text", "มาแล้วค่ะ", sender={"kind": "person", "name": "Ploy"})
        rchat.send_message("live-2", "text", "plain")
        page.wait_for_selector("#thread li.site >> text=plain")
        assert page.locator("#thread li.sender-bot .sender").inner_text() == "🤖 Bot"
        assert page.locator("#thread li.sender-person .sender").inner_text() == "👤 Ploy"
        assert page.locator("#thread li.site").nth(2).get_attribute("class") == "site"
        bot = page.locator("#thread li.sender-bot .bubble")
        person = page.locator("#thread li.sender-person .bubble")
        colour = "getComputedStyle(el).backgroundColor"
        assert bot.evaluate(f"el => {colour}") != person.evaluate(f"el => {colour}")
    finally:
        page.close()
