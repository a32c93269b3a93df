"""The bot of the round-trip benchmark, and the floor it is measured against.

``reply`` is the bot: RCHAT["ON_MESSAGE"] runs it in a Celery worker for each message
an end user writes, and it answers through ``services.message_send`` as any bot would,
so its reply goes through the outbound queue and a drain.

``reply_inline`` is the floor: a webhook-like view that stores nothing, checks
nothing, and posts the same reply to the sandbox with requests before it answers. The
end user's message reaching R-Chat's API as a reply cannot be faster than that on the
same server.
"""

import json
import os
import threading
import uuid

import requests
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bench.urls import urlpatterns as bench_urlpatterns

from .common import TOKEN
from .sessionloop import SEND_PATH, TIMEOUT

_local = threading.local()


def reply_text(text):
    return f"re: {text}"


def reply(message_id):
    """RCHAT["ON_MESSAGE"]: answer the end user's message with a text."""
    from rchat import services
    from rchat.models import Message

    message = Message.objects.select_related("room").get(pk=message_id)
    services.message_send(room=message.room, type="text", data=reply_text(message.text))


@csrf_exempt
@login_not_required
@require_POST
def reply_inline(request):
    payload = json.loads(request.body)
    body = {
        "message": {"type": "text", "data": reply_text(payload["message"]["data"])},
        "chat_id": payload["chat_id"],
        "idempotency_key": f"rchat-{uuid.uuid4().hex}",
    }
    session = getattr(_local, "session", None)
    if session is None:
        # Set up as rchat sets up its own (rchat.client.get_session).
        session = _local.session = requests.Session()
        session.trust_env = False
    answer = session.post(
        os.environ["RCHAT_BENCH_SANDBOX_URL"] + SEND_PATH,
        data=json.dumps(body, ensure_ascii=False).encode(),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": body["idempotency_key"],
        },
        timeout=TIMEOUT,
    )
    answer.raise_for_status()
    return JsonResponse({"status": "SUCCESS"})


urlpatterns = [
    path("bench/reply-inline/", reply_inline, name="bench-reply-inline"),
    *bench_urlpatterns,
]
