"""The webhook over real HTTP: a live server, the requests library, as R-Chat calls it."""

import json

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
