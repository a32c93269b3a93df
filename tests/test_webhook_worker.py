"""The bot hook RCHAT["ON_MESSAGE"] run by a real Celery worker (Redis, PostgreSQL)."""

import json
import os
import time

import pytest
from django.test import Client

from rchat import selectors
from rchat.models import Message
from tests.factories import CredentialFactory

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

HOOK = "tests.test_webhook_worker.record_to_file"


def record_to_file(message_id):
    """The bot: appends the message's id and text to $RCHAT_TEST_HOOK_FILE."""
    message = Message.objects.get(pk=message_id)
    with open(os.environ["RCHAT_TEST_HOOK_FILE"], "a", encoding="utf-8") as out:
        out.write(f"{message_id} {message.text}\n")


def wait_for_lines(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= count:
            return path.read_text(encoding="utf-8").splitlines()
        time.sleep(0.1)
    pytest.fail(f"the hook ran {path.read_text() if path.exists() else 'never'!r}")


def test_the_worker_runs_the_bot_hook_once_per_new_message(
    workers,
    monkeypatch,
    settings,
    tmp_path,
):
    hook_file = tmp_path / "hook.txt"
    monkeypatch.setenv("RCHAT_ON_MESSAGE", HOOK)
    monkeypatch.setenv("RCHAT_TEST_HOOK_FILE", str(hook_file))
    settings.RCHAT = {**settings.RCHAT, "ON_MESSAGE": HOOK}
    selectors.webhook_credentials_clear()
    credential = CredentialFactory()
    # One worker thread: tasks run in the order they were queued.
    workers(concurrency=1)

    def post(data):
        body = json.dumps({"chat_id": "c", "message": {"type": "text", "data": data}})
        response = Client().post(
            "/rchat/webhook/",
            data=body,
            content_type="application/json",
            headers={"X-Chatday-Signature-Token": credential.signature_token},
        )
        assert response.status_code == 200

    post("สวัสดี")
    post("สวัสดี")  # a redelivery: no second run
    post("ราคาเท่าไหร่")

    first, second = Message.objects.order_by("id")
    assert wait_for_lines(hook_file, 2) == [f"{first.pk} สวัสดี", f"{second.pk} ราคาเท่าไหร่"]
