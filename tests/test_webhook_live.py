"""The webhook over real HTTP: a live server, the requests library, as R-Chat calls it."""

import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from rchat import selectors
from rchat.models import Message, WebhookEvent
from tests.factories import CredentialFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_webhook_posted_over_http_appears_once_in_its_room(live_server):
    selectors.webhook_credentials_clear()
    credential = CredentialFactory()
    body = json.dumps(
        {"chat_id": "U-live", "message": {"id": "m-9", "type": "text", "data": "สวัสดี 👋"}},
        ensure_ascii=False,
    ).encode()
    url = live_server.url + credential.webhook_path()
    headers = {
        "X-Chatday-Signature-Token": credential.signature_token,
        "Content-Type": "application/json",
    }

    first = requests.post(url, data=body, headers=headers, timeout=10)
    again = requests.post(url, data=body, headers=headers, timeout=10)

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"status": "SUCCESS"}
    message = Message.objects.get()
    assert (message.room.chat_id, message.text) == ("U-live", "สวัสดี 👋")
    assert [bytes(e.body) for e in WebhookEvent.objects.all()] == [body, body]


def test_a_stranger_over_http_gets_403_and_leaves_nothing(live_server):
    selectors.webhook_credentials_clear()
    CredentialFactory()
    response = requests.post(
        live_server.url + "/rchat/webhook/",
        data=b'{"chat_id": "x", "message": "hi"}',
        headers={"X-Chatday-Signature-Token": "sig_guess"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert not WebhookEvent.objects.exists()


# --- Bodies without a Content-Length (Transfer-Encoding: chunked) -------------------------


def _post_chunked(url, chunks, token):
    """POST ``chunks`` with Transfer-Encoding: chunked and no Content-Length, as proxies do.

    The chunks are written from a thread while the answer is read, as a careful client
    does: a server may answer (413) before the body ends and close the connection.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"X-Chatday-Signature-Token: {token}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )

    def write():
        try:
            sock.sendall(head.encode())
            for chunk in chunks:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading: its answer says why

    writer = threading.Thread(target=write)
    writer.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read() or b"null")
    finally:
        writer.join(timeout=30)
        sock.close()


@pytest.fixture
def gunicorn_site(tmp_path):
    """The site under gunicorn, on this test run's database (gunicorn reads chunked bodies)."""
    from bench.common import gunicorn
    from tests.processes import database_url

    with gunicorn(database_url(), "memory://", workers=1, threads=2, log_dir=tmp_path) as server:
        yield server


@pytest.mark.postgres
def test_a_chunked_webhook_under_gunicorn_is_read_whole_and_stored(gunicorn_site):
    credential = CredentialFactory()
    body = json.dumps(
        {"chat_id": "U-chunked", "message": {"type": "text", "data": "ส่งแบบ chunked"}},
        ensure_ascii=False,
    ).encode()

    status, answer = _post_chunked(
        gunicorn_site.url + "/rchat/webhook/",
        [body[:10], body[10:25], body[25:]],
        credential.signature_token,
    )

    assert (status, answer) == (200, {"status": "SUCCESS"})
    message = Message.objects.get()
    assert (message.room.chat_id, message.text) == ("U-chunked", "ส่งแบบ chunked")
    assert bytes(WebhookEvent.objects.get().body) == body


@pytest.mark.postgres
def test_a_chunked_body_over_the_limit_gets_413_under_gunicorn(gunicorn_site):
    credential = CredentialFactory()
    megabyte = b" " * (1 << 20)
    chunks = [b'{"chat_id": "U-big", "message": {"type": "text", "data": "x"}', *[megabyte] * 10]
    chunks.append(b"}")

    status, answer = _post_chunked(
        gunicorn_site.url + "/rchat/webhook/", chunks, credential.signature_token
    )

    assert status == 413 and answer["code"] == "body_too_large"
    assert not Message.objects.exists()
    assert WebhookEvent.objects.get().outcome == WebhookEvent.Outcome.FAILED


def test_a_chunked_webhook_where_the_server_cannot_read_it_is_411_not_lost(live_server):
    """Django's own server gives no way to find a chunked body's end: refuse, never SUCCESS."""
    selectors.webhook_credentials_clear()
    credential = CredentialFactory()
    body = b'{"chat_id": "U-411", "message": {"type": "text", "data": "hi"}}'

    status, answer = _post_chunked(
        live_server.url + "/rchat/webhook/", [body], credential.signature_token
    )

    assert status == 411 and answer["code"] == "length_required"
    assert "Content-Length" in answer["detail"]
    assert not Message.objects.exists()
    event = WebhookEvent.objects.get()
    assert event.outcome == WebhookEvent.Outcome.FAILED and "Content-Length" in event.error
