"""The sandbox playing R-Chat's side of the webhook, and bursts of end-user messages."""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from .state import SandboxInputError, now_iso

# Characters of the site's answer kept with a message, enough to read an error.
ANSWER_EXCERPT = 300
MAX_BURST = 10_000

# No proxy: the site is usually on this machine, and an http_proxy variable set for
# the internet must not capture calls to 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_webhook_url(url):
    """``url`` if it is an http(s) URL; raises SandboxInputError otherwise."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SandboxInputError(f"The webhook URL must be an http(s) URL, not {url!r}.")
    return url


def webhook_body(*, chat_id, channel, name, type, data):
    """The JSON R-Chat posts for one end-user message (see docs/sandbox.md)."""
    return {
        "message": {"type": type, "data": data, "id": str(uuid.uuid4())},
        "chat_id": chat_id,
        "channel": channel,
        "user": {"name": name},
        "timestamp": now_iso(),
    }


def post_webhook(url, body, signature, *, timeout=10.0):
    """POST ``body`` to the site's webhook; return what happened as a small dict."""
    request = urllib.request.Request(  # noqa: S310 - check_webhook_url allows http(s) only
        check_webhook_url(url),
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "X-Chatday-Signature-Token": signature,
            "User-Agent": "rchat-sandbox",
        },
    )
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout) as response:
            status, answer = response.status, response.read(ANSWER_EXCERPT)
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read(ANSWER_EXCERPT)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"status": None, "ok": False, "error": f"Could not reach {url}: {reason}"}
    return {
        "status": status,
        "ok": 200 <= status < 300,
        "answer": answer.decode("utf-8", errors="replace"),
        "ms": round((time.monotonic() - started) * 1000),
    }


def burst_plan(messages, chats, prefix="burst"):
    """Which chat gets which text: message i goes to chat i mod ``chats``, in order."""
    for name, value, top in (("messages", messages, MAX_BURST), ("chats", chats, 1000)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise SandboxInputError(f"{name} must be a whole number from 1 to {top}.")
    if chats > messages:
        raise SandboxInputError("A burst needs at least as many messages as chats.")
    plan = {f"{prefix}-{n}": [] for n in range(1, chats + 1)}
    for i in range(messages):
        plan[f"{prefix}-{i % chats + 1}"].append(f"ข้อความที่ {i + 1} / message {i + 1}")
    return plan


def run_burst(send, messages, chats, *, progress=None, concurrency=8, prefix="burst"):
    """Send ``messages`` end-user messages spread over ``chats`` chats through ``send``.

    ``send(chat_id, text)`` returns the outcome dict of ``post_webhook``. Each chat's
    messages go one after another (R-Chat keeps a chat in order); chats run side by
    side. ``progress(done, total)`` is called after every message.
    """
    plan = burst_plan(messages, chats, prefix)
    counts = {"done": 0, "delivered": 0, "failed": 0}
    lock = threading.Lock()
    started = time.monotonic()

    def one_chat(chat_id, texts):
        for text in texts:
            outcome = send(chat_id, text)
            with lock:
                counts["done"] += 1
                counts["delivered" if outcome.get("ok") else "failed"] += 1
                done = counts["done"]
            if progress:
                progress(done, messages)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, chats))) as pool:
        for future in [pool.submit(one_chat, c, t) for c, t in plan.items()]:
            future.result()
    return {
        "messages": messages,
        "chats": chats,
        "delivered": counts["delivered"],
        "failed": counts["failed"],
        "seconds": round(time.monotonic() - started, 2),
        "chat_ids": list(plan),
    }
