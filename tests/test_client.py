"""RChatClient against a real HTTP server standing in for R-Chat."""

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import translation
from werkzeug import Response

from rchat.client import RChatClient, parse_retry_after, sent_message_id
from rchat.exceptions import (
    RChatAuthError,
    RChatConfigurationError,
    RChatRateLimitedError,
    RChatRejectedError,
    RChatResponseError,
    RChatUnavailableError,
)

TOKEN = "cdt_live_4f9c2a7be81d0c55e3a9"
SIGNATURE = "sig_9d2e7c41b0aa83f6d5e1"
REGISTER = "/api/v1/external/register"
SEND = "/api/v1/external/send-message"


@pytest.fixture
def client(httpserver):
    return RChatClient(base_url=httpserver.url_for("/"), token=TOKEN)


# --- Register ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"Chatday-Signature-Token": SIGNATURE},
        {"chatday_signature_token": SIGNATURE},
        {"signature_token": SIGNATURE},
        {"signatureToken": SIGNATURE},
        {"status": "SUCCESS", "data": {"Chatday-Signature-Token": SIGNATURE}},
        {"data": {"chatday_signature_token": SIGNATURE}},
        {"data": {"signature_token": SIGNATURE}},
        {"data": {"signatureToken": f"  {SIGNATURE}\n"}},
    ],
    ids=lambda body: json.dumps(body)[:40],
)
def test_register_reads_the_signature_token_from_every_accepted_body_shape(
    httpserver, client, body
):
    httpserver.expect_oneshot_request(
        REGISTER, method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    ).respond_with_json(body)

    assert client.register() == SIGNATURE
    httpserver.check_assertions()


@pytest.mark.parametrize("header", ["Chatday-Signature-Token", "X-Chatday-Signature-Token"])
def test_register_reads_the_signature_token_from_a_response_header(httpserver, client, header):
    httpserver.expect_oneshot_request(REGISTER, method="POST").respond_with_data(
        "", headers={header: SIGNATURE}
    )

    assert client.register() == SIGNATURE


def test_register_prefers_the_body_over_an_unrelated_header(httpserver, client):
    """A body field wins; a header is only the fallback."""
    httpserver.expect_oneshot_request(REGISTER).respond_with_json(
        {"signature_token": SIGNATURE}, headers={"Chatday-Signature-Token": "sig_from_header_xx"}
    )

    assert client.register() == SIGNATURE


def test_register_uses_the_base_url_path_prefix_and_configured_path(httpserver, settings):
    """Base URL and paths are configuration: nothing is hard-wired."""
    settings.RCHAT = {**settings.RCHAT, "REGISTER_PATH": "v2/activate"}
    httpserver.expect_oneshot_request("/chatday/v2/activate", method="POST").respond_with_json(
        {"signature_token": SIGNATURE}
    )
    client = RChatClient(base_url=httpserver.url_for("/chatday/"), token=TOKEN)

    assert client.register() == SIGNATURE
    httpserver.check_assertions()


@pytest.mark.parametrize(
    "response, shown",
    [
        (Response("<html>Gateway says hi</html>", status=200), "'<html>Gateway says hi</html>'"),
        (Response("", status=200), "(empty body)"),
        (Response("{not json", status=201), "'{not json'"),
        (Response('{"status": "SUCCESS"}', status=200), """'{"status": "SUCCESS"}'"""),
    ],
    ids=["html", "empty", "broken-json", "no-token-field"],
)
def test_register_without_a_signature_token_is_a_clear_error_showing_the_answer(
    httpserver, client, response, shown
):
    httpserver.expect_oneshot_request(REGISTER).respond_with_response(response)

    with pytest.raises(RChatResponseError) as caught:
        client.register()

    url = httpserver.url_for(REGISTER)
    assert str(caught.value) == (
        f"R-Chat answered Register with HTTP {response.status_code} from {url} "
        f"but no signature token: {shown}"
    )


def test_register_error_masks_secrets_under_names_it_does_not_know(httpserver, client):
    """An unreadable answer is shown, but a token-looking value in it is masked."""
    httpserver.expect_oneshot_request(REGISTER).respond_with_json(
        {"result": "ok", "webhookToken": "whk_5b7e9c1d2f3a4b6c", "echo": TOKEN}
    )

    with pytest.raises(RChatResponseError) as caught:
        client.register()

    text = str(caught.value)
    assert "whk_5b7e9c1d2f3a4b6c" not in text
    assert TOKEN not in text
    assert "••••4b6c" in text
    assert '"result": "ok"' in text


# --- Errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_auth_error_with_the_token_masked(httpserver, client, status):
    httpserver.expect_oneshot_request(REGISTER).respond_with_json(
        {"error": f"invalid token {TOKEN}"}, status=status
    )

    with pytest.raises(RChatAuthError) as caught:
        client.register()

    error = caught.value
    assert error.status == status
    assert not error.transient
    assert TOKEN not in str(error)
    assert TOKEN not in error.body
    assert str(error).startswith(
        f"R-Chat refused the Chatday-Token ••••{TOKEN[-4:]} (HTTP {status}"
    )


def test_error_text_follows_the_active_language_and_still_masks_the_token(httpserver, client):
    """An operator reading the admin in Thai reads R-Chat's refusal in Thai."""
    httpserver.expect_oneshot_request(SEND).respond_with_json(
        {"error": f"invalid token {TOKEN}"}, status=403
    )

    with translation.override("th"), pytest.raises(RChatAuthError) as caught:
        client.send_message("c1", "text", "สวัสดี")

    text = str(caught.value)
    assert text.startswith(f"R-Chat ปฏิเสธ Chatday-Token ••••{TOKEN[-4:]} (HTTP 403 จาก ")
    assert TOKEN not in text


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_are_rejections_carrying_r_chats_answer(httpserver, client, status):
    httpserver.expect_oneshot_request(SEND).respond_with_json(
        {"error": "chat_id not found"}, status=status
    )

    with pytest.raises(RChatRejectedError) as caught:
        client.send_message("room-1", "text", "hello")

    error = caught.value
    assert error.status == status
    assert not error.transient
    assert "chat_id not found" in error.body
    assert str(error) == (
        f"R-Chat rejected the request (HTTP {status} from {httpserver.url_for(SEND)}): "
        """'{"error": "chat_id not found"}'"""
    )


def test_429_with_retry_after_in_seconds(httpserver, client):
    httpserver.expect_oneshot_request(SEND).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "30"}
    )

    with pytest.raises(RChatRateLimitedError) as caught:
        client.send_message("room-1", "text", "hello")

    assert caught.value.retry_after == 30
    assert caught.value.transient
    assert "retry after 30s" in str(caught.value)


def test_429_with_retry_after_as_an_http_date(httpserver, client):
    when = datetime.now(UTC) + timedelta(seconds=120)
    httpserver.expect_oneshot_request(SEND).respond_with_data(
        "", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )

    with pytest.raises(RChatRateLimitedError) as caught:
        client.send_message("room-1", "text", "hello")

    # The header has whole seconds, and a little time passes before it is read.
    assert 100 <= caught.value.retry_after <= 121


def test_429_without_retry_after_leaves_the_wait_to_the_caller(httpserver, client):
    httpserver.expect_oneshot_request(SEND).respond_with_data("", status=429)

    with pytest.raises(RChatRateLimitedError) as caught:
        client.send_message("room-1", "text", "hello")

    assert caught.value.retry_after is None


def test_parse_retry_after_forms():
    """Seconds, an HTTP date (past: 0), and nonsense (None)."""
    assert parse_retry_after("0") == 0
    assert parse_retry_after(" 7 ") == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_means_unavailable_and_worth_retrying(httpserver, client, status):
    httpserver.expect_oneshot_request(SEND).respond_with_data("upstream error", status=status)

    with pytest.raises(RChatUnavailableError) as caught:
        client.send_message("room-1", "text", "hello")

    assert caught.value.status == status
    assert caught.value.transient
    assert str(caught.value) == (
        f"R-Chat is unavailable (HTTP {status} from {httpserver.url_for(SEND)}): 'upstream error'"
    )


def test_a_slow_answer_times_out_as_unavailable(httpserver):
    """A handler slower than READ_TIMEOUT gives a time-out, not a hang."""

    def slow(request):
        time.sleep(1.0)
        return Response('{"signature_token": "late"}', content_type="application/json")

    httpserver.expect_request(REGISTER).respond_with_handler(slow)
    client = RChatClient(base_url=httpserver.url_for("/"), token=TOKEN, read_timeout=0.2)

    with pytest.raises(RChatUnavailableError) as caught:
        client.register()

    assert caught.value.status is None
    assert caught.value.transient
    assert str(caught.value) == (
        f"R-Chat did not answer {httpserver.url_for(REGISTER)} within 0.2s (time-out)"
    )


def test_the_read_timeout_setting_is_used(httpserver, settings):
    settings.RCHAT = {**settings.RCHAT, "READ_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.5}

    def slow(request):
        time.sleep(1.0)
        return Response("{}")

    httpserver.expect_request(SEND).respond_with_handler(slow)
    client = RChatClient(base_url=httpserver.url_for("/"), token=TOKEN)

    assert client.timeout == (0.5, 0.2)
    with pytest.raises(RChatUnavailableError, match=r"within 0\.2s"):
        client.send_message("room-1", "text", "hello")


def test_connection_refused_is_unavailable_and_says_so():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    client = RChatClient(base_url=f"http://127.0.0.1:{port}", token=TOKEN)

    with pytest.raises(RChatUnavailableError) as caught:
        client.register()

    assert caught.value.transient
    assert str(caught.value) == (
        f"Could not connect to R-Chat at http://127.0.0.1:{port}{REGISTER}: Connection refused"
    )


def test_a_redirect_is_not_followed_as_a_get(httpserver, client):
    """requests would turn a redirected POST into a GET: the client reports it instead."""
    httpserver.expect_oneshot_request(SEND).respond_with_data(
        "", status=302, headers={"Location": "https://elsewhere.example/send"}
    )

    with pytest.raises(RChatRejectedError, match=r"elsewhere\.example/send"):
        client.send_message("room-1", "text", "hello")

    assert len(httpserver.log) == 1


@pytest.mark.parametrize("base_url", ["", "api.r-chat.example", "ftp://r-chat.example"])
def test_a_missing_or_malformed_base_url_is_a_configuration_error(base_url):
    with pytest.raises(RChatConfigurationError, match="API_BASE_URL"):
        RChatClient(base_url=base_url, token=TOKEN)


# --- Send Message -----------------------------------------------------------------------


def test_send_posts_exactly_the_documented_body_and_headers(httpserver, client):
    httpserver.expect_oneshot_request(SEND, method="POST").respond_with_json({"ok": True})

    answer = client.send_message("room-42", "image", {"url": "https://cdn.example/a.png"})

    assert answer == {"ok": True}
    request, _ = httpserver.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request.get_data()) == {
        "message": {"type": "image", "data": {"url": "https://cdn.example/a.png"}},
        "chat_id": "room-42",
    }
    assert list(json.loads(request.get_data())) == ["message", "chat_id"]


def test_thai_text_arrives_intact_as_utf8(httpserver, client):
    text = "สวัสดีครับ ยินดีต้อนรับ 🙏"
    httpserver.expect_oneshot_request(SEND).respond_with_json({})

    client.send_message("ห้อง-1", "text", text)

    request, _ = httpserver.log[0]
    raw = request.get_data()
    assert text.encode() in raw
    assert json.loads(raw.decode("utf-8")) == {
        "message": {"type": "text", "data": text},
        "chat_id": "ห้อง-1",
    }


def test_send_answers_an_empty_dict_when_r_chat_answers_nothing(httpserver, client):
    httpserver.expect_oneshot_request(SEND).respond_with_data("", status=204)

    assert client.send_message("room-1", "text", "hi") == {}


class KeepAliveHandler(BaseHTTPRequestHandler):
    """Answers every POST with {} and keeps the connection open (HTTP/1.1)."""

    # Werkzeug, under pytest-httpserver, closes every connection; R-Chat need not.
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.client_ports.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format, *args):
        pass


@pytest.fixture
def keep_alive_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    server.daemon_threads = True
    server.client_ports = []
    # A short poll interval: shutdown() waits for the loop to look (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_several_calls_share_one_tcp_connection(keep_alive_server):
    """One session per thread: R-Chat sees a single client port for a run of calls."""
    base_url = f"http://127.0.0.1:{keep_alive_server.server_address[1]}/"
    client = RChatClient(base_url=base_url, token=TOKEN)

    for n in range(5):
        client.send_message("room-1", "text", f"message {n}")
    # A second client object in the same thread uses the same session.
    RChatClient(base_url=base_url, token="cdt_other_token_1234").send_message("r", "text", "x")

    assert len(keep_alive_server.client_ports) == 6
    assert len(set(keep_alive_server.client_ports)) == 1


def test_each_thread_has_its_own_connection(keep_alive_server):
    """Sessions are not shared across threads (requests.Session is not thread-safe)."""
    base_url = f"http://127.0.0.1:{keep_alive_server.server_address[1]}/"

    def send_twice():
        client = RChatClient(base_url=base_url, token=TOKEN)
        client.send_message("room-1", "text", "one")
        client.send_message("room-1", "text", "two")

    threads = [threading.Thread(target=send_twice) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ports = keep_alive_server.client_ports
    assert len(ports) == 6
    assert len(set(ports)) == 3


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"message_id": "m-1"}, "m-1"),
        ({"data": {"id": 77}}, "77"),
        ({"status": "SUCCESS"}, ""),
        ({}, ""),
        (None, ""),
    ],
)
def test_rchat_message_id_is_read_from_its_answer(answer, expected):
    assert sent_message_id(answer) == expected


def _in_new_thread(call):
    """Run ``call`` in a thread of its own (a session of its own); its result or error."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome


def test_the_environment_s_proxy_is_used_and_no_proxy_is_honoured(httpserver, monkeypatch):
    """Proxy variables are read once per thread, not on every call, and still obeyed."""
    httpserver.expect_request("/api/v1/external/send-message", method="POST").respond_with_json(
        {"message_id": "via-proxy"}
    )
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/").rstrip("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = RChatClient(base_url="http://rchat.invalid", token="cdt_proxy_token")

    proxied = _in_new_thread(lambda: client.send_message("chat-1", "text", "hi"))
    assert proxied == {"value": {"message_id": "via-proxy"}}
    assert len(_asked_for(httpserver, "rchat.invalid")) == 1

    monkeypatch.setenv("NO_PROXY", "rchat.invalid")
    direct = _in_new_thread(lambda: client.send_message("chat-1", "text", "hi"))
    assert isinstance(direct.get("error"), RChatUnavailableError), direct
    assert len(_asked_for(httpserver, "rchat.invalid")) == 1, "NO_PROXY: the proxy is not asked"


def _asked_for(proxy, host):
    # Only this test's requests: with HTTP_PROXY set, another test's thread still
    # finishing (a live server's, a worker's) would reach the proxy too.
    return [request for request, _ in proxy.log if request.host == host]
