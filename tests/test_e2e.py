"""End to end, with real processes and real HTTP: sandbox -> site -> worker -> sandbox.

The R-Chat sandbox runs as ``manage.py rchat_sandbox`` in a subprocess, the site is
Django's live server, and a Celery worker subprocess on Redis shares this test run's
PostgreSQL database. Nothing is mocked: an end user writes in the sandbox, the webhook
stores the message, an agent's reply is queued, and the worker delivers it back.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.db import connection

from rchat import services
from rchat.models import ChatRoom, Credential, DeliveryAttempt, Message
from rchat.sandbox import SandboxClient, signature_for
from tests.conftest import redis_url

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "cdt_end_to_end_token_0001"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


def database_url():
    """This test run's database (test_<name>), for the worker subprocess."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{quote(db['USER'] or 'postgres')}{password}@{host}:{port}/{db['NAME']}"


def eventually(read, done, *, timeout=60.0, what="the condition"):
    """Poll ``read()`` until ``done(value)``; return the value (fail with the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Waited {timeout:g}s for {what}; last seen: {value!r}")
        time.sleep(0.1)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def broker():
    """This run's Redis database, emptied first so no leftover task runs."""
    url = redis_url()
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def worker(transactional_db, broker, tmp_path):
    """A Celery worker subprocess on this run's Redis database and PostgreSQL database."""
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker}
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [
                *(sys.executable, "-m", "celery", "-A", "project", "worker"),
                *("-P", "threads", "-c", "2", "-l", "info"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                *("-n", f"rchat-e2e-{uuid.uuid4().hex[:8]}@%h"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    eventually(
        log.read_bytes,
        lambda text: b"ready." in text or process.poll() is not None,
        what="the worker to start",
    )
    if process.poll() is not None:
        pytest.fail(f"The worker did not start:\n{log.read_text()[-3000:]}")
    yield process
    stop(process)


@pytest.fixture
def rchat_sandbox(live_server, tmp_path):
    """``manage.py rchat_sandbox`` in a subprocess, posting webhooks to the live server."""
    log = tmp_path / "sandbox.log"
    webhook_url = f"{live_server.url}/rchat/webhook/"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            [
                *(sys.executable, "manage.py", "rchat_sandbox", "--port", "0"),
                *("--strict", "--token", TOKEN, "--webhook-url", webhook_url),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    first = eventually(
        lambda: log.read_text("utf-8").split("\n", 1)[0],
        lambda line: "listening on" in line or process.poll() is not None,
        what="the sandbox to start",
    )
    if process.poll() is not None:
        pytest.fail(f"The sandbox did not start:\n{log.read_text('utf-8')}")
    client = SandboxClient(first.rsplit(" ", 1)[-1].strip())
    yield client
    stop(process)


@pytest.fixture
def credential(rchat_sandbox):
    """A credential registered with the sandbox, through rchat's own service."""
    saved = services.credential_save(name="e2e", token=TOKEN, base_url=rchat_sandbox.url)
    services.credential_register(credential=saved)
    saved.refresh_from_db()
    assert saved.status == Credential.Status.ACTIVE
    assert saved.signature_token == signature_for(TOKEN)
    return saved


def inbound_texts(chat_id):
    return list(
        Message.objects.filter(room__chat_id=chat_id, direction=Message.Direction.IN)
        .order_by("id")
        .values_list("text", flat=True)
    )


def user_writes(sandbox, chat_id, texts, **who):
    for text in texts:
        entry = sandbox.send_as_user(chat_id, text, **who)
        assert entry["webhook"]["ok"], entry["webhook"]


def test_an_end_user_message_reaches_the_site_and_the_replies_reach_the_end_user(
    rchat_sandbox, credential, worker
):
    """Thai text goes sandbox -> webhook -> database -> queue -> worker -> sandbox, in order."""
    written = ["สวัสดีครับ", "ขอสอบถามราคาสินค้าหน่อยครับ", "ส่งต่างจังหวัดได้ไหม"]
    user_writes(rchat_sandbox, "e2e-chat", written, channel="line", name="สมชาย")

    assert inbound_texts("e2e-chat") == written
    room = ChatRoom.objects.get(chat_id="e2e-chat")
    assert (room.credential_id, room.channel, room.display_name) == (
        credential.pk,
        "line",
        "สมชาย",
    )

    replies = ["สวัสดีค่ะ คุณสมชาย", "ราคา 1,290 บาทค่ะ", "ส่งได้ทั่วประเทศค่ะ 🚚"]
    for reply in replies:
        services.message_send(room=room, type="text", data=reply)

    received = eventually(
        lambda: rchat_sandbox.received("e2e-chat"),
        lambda got: len(got) >= len(replies),
        what="the replies to reach the sandbox",
    )
    assert [r["message"] for r in received] == [{"type": "text", "data": t} for t in replies]
    sent = eventually(
        lambda: list(
            Message.objects.filter(room=room, direction=Message.Direction.OUT)
            .order_by("id")
            .values_list("status", flat=True)
        ),
        lambda statuses: set(statuses) == {Message.Status.SENT},
        what="the replies to be marked sent",
    )
    assert len(sent) == len(replies)


def test_replies_survive_two_failed_sends_and_keep_their_order(rchat_sandbox, credential, worker):
    """R-Chat answering 503 twice: the worker retries; the end user gets every reply, in order."""
    user_writes(rchat_sandbox, "e2e-faults", ["มีใครอยู่ไหมครับ"])
    assert inbound_texts("e2e-faults") == ["มีใครอยู่ไหมครับ"]
    room = ChatRoom.objects.get(chat_id="e2e-faults")

    rchat_sandbox.inject(status=503, count=2, on="send")
    replies = ["ขอโทษที่ให้รอค่ะ", "ตอนนี้พร้อมช่วยแล้วค่ะ"]
    first = services.message_send(room=room, type="text", data=replies[0])
    services.message_send(room=room, type="text", data=replies[1])

    received = eventually(
        lambda: rchat_sandbox.received("e2e-faults"),
        lambda got: len(got) >= len(replies),
        what="the replies to reach the sandbox after the faults",
    )
    assert [r["message"]["data"] for r in received] == replies
    sends = [c["status"] for c in rchat_sandbox.calls() if c["endpoint"] == "send"]
    assert sends[:2] == [503, 503] and sends[2:] == [200, 200]
    outcomes = eventually(
        lambda: list(
            DeliveryAttempt.objects.filter(message=first)
            .order_by("id")
            .values_list("outcome", "http_status")
        ),
        lambda rows: rows and rows[-1][0] == DeliveryAttempt.Outcome.SENT,
        what="the first reply's attempts to be recorded",
    )
    assert outcomes == [
        (DeliveryAttempt.Outcome.RETRY, 503),
        (DeliveryAttempt.Outcome.RETRY, 503),
        (DeliveryAttempt.Outcome.SENT, 200),
    ]
