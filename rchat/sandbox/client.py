"""Talk to a sandbox running in another process through its ``/_sandbox`` JSON API."""

import json
import urllib.error
import urllib.request
from urllib.parse import quote

from .webhook import check_webhook_url, run_burst

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxUnreachable(ConnectionError):
    """No sandbox answers at the given URL."""


class SandboxClient:
    """The Python API of ``Sandbox`` for a sandbox started elsewhere (``rchat_sandbox``)."""

    def __init__(self, url, *, timeout=30.0):
        self.url = check_webhook_url(url).rstrip("/")
        self.timeout = timeout

    def _call(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 - check_webhook_url allows http(s) only
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read().decode("utf-8")).get("reason", "")
            except ValueError:
                reason = ""
            raise ValueError(f"The sandbox answered HTTP {exc.code}: {reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SandboxUnreachable(
                f"No sandbox answers at {self.url} ({getattr(exc, 'reason', exc)})."
            ) from exc

    def info(self):
        return self._call("GET", "/_sandbox/info")

    def received(self, chat_id=None):
        query = "" if chat_id is None else "?chat_id=" + quote(chat_id, safe="")
        return self._call("GET", "/_sandbox/messages" + query)["messages"]

    def calls(self):
        return self._call("GET", "/_sandbox/calls")["calls"]

    def inject(self, **spec):
        return self._call("POST", "/_sandbox/faults", spec)["fault"]

    def clear_faults(self):
        return self._call("DELETE", "/_sandbox/faults")["cleared"]

    def reset(self):
        self._call("POST", "/_sandbox/reset", {})

    def send_as_user(self, chat_id, text=None, *, channel=None, name=None, type="text", data=None):
        payload = {"text": text, "channel": channel, "name": name, "type": type, "data": data}
        path = f"/_sandbox/chats/{quote(str(chat_id), safe='')}/messages"
        return self._call("POST", path, {k: v for k, v in payload.items() if v is not None})

    def burst(self, messages, chats, *, progress=None):
        """Like ``Sandbox.burst``, one request per message so ``progress`` can follow it."""
        return run_burst(
            lambda chat_id, text: self.send_as_user(chat_id, text)["webhook"],
            messages,
            chats,
            progress=progress,
        )
