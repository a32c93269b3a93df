"""What the sandbox remembers: tokens, chats, the calls it received, and the faults to play.

Everything lives in memory and is guarded by one lock, because the HTTP server
answers each request in its own thread.
"""

import base64
import hashlib
import hmac
import itertools
import random
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

#: The HMAC key the sandbox derives signature tokens from. Not a secret: the sandbox
#: is a development tool, and a fixed key keeps signature tokens stable across
#: restarts, so a credential registered yesterday still matches today's webhooks.
DEFAULT_SECRET = "rchat-sandbox-signing-key"  # noqa: S105 - public by design

#: The Chatday-Token of the demo account (``make run``, ``rchat_demo_setup``).
DEMO_TOKEN = "chatday-demo-token"  # noqa: S105 - the demo's public token

CHANNELS = ("web", "line", "facebook")
FAULT_TARGETS = ("any", "register", "send")
FAULT_FIELDS = {"status", "retry_after", "latency_ms", "drop", "count", "share", "on"}
FAULT_STATUSES = (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504)
#: Where a Send Message body says who wrote the reply, unless told otherwise
#: (``--sender-field``): the name rchat's project settings give RCHAT["SENDER_FIELD"].
DEFAULT_SENDER_FIELD = "sender"
#: Characters of a sender's name a label shows.
SENDER_NAME_MAX = 80


def signature_for(token, secret=DEFAULT_SECRET):
    """The Chatday-Signature-Token the sandbox issues for ``token`` (same on every run)."""
    mac = hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()
    return "sbx_" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def mask(secret):
    """At most the last four characters of a token (the same rule as rchat.crypto.mask)."""
    if not secret:
        return ""
    return "••••" if len(secret) < 12 else "••••" + secret[-4:]


def now_iso():
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sender_label(sender):
    """How the chat page labels a reply by who wrote it, or None.

    ``sender`` is what the Send Message body carried under the sender field (rchat
    sends ``{"kind": "person" | "bot" | "rule", "name": ...}``). The answer is
    ``{"kind", "text", "name"}``: the text in English ("🤖 Bot", "⚙ Rule: <name>",
    "👤 <name>"), the name shortened; the pages write it in their language from
    ``kind`` and ``name`` (``i18n.label_text``). Anything else (no
    field, another shape, an unknown kind) gets no label: ``kind`` becomes a CSS class
    on the page, so only these three are ever used.
    """
    if not isinstance(sender, dict):
        return None
    kind = sender.get("kind")
    name = sender.get("name")
    name = " ".join(name.split())[:SENDER_NAME_MAX] if isinstance(name, str) else ""
    if kind == "bot":
        text = "🤖 Bot"
    elif kind == "rule":
        text = f"⚙ Rule: {name}" if name else "⚙ Rule"
    elif kind == "person":
        text = f"👤 {name}" if name else "👤 Person"
    else:
        return None
    return {"kind": kind, "text": text, "name": name}


class SandboxInputError(ValueError):
    """Input the sandbox refuses; the text is the reason shown to the caller."""


@dataclass
class Fault:
    """One misbehaviour of the fake R-Chat API, applied to Register and/or Send Message.

    ``count`` limits it to that many calls (None: until cleared); ``share`` is the
    chance that a given call is hit. A fault has an answer (``status``, ``drop``),
    a delay (``latency_ms``), or both.
    """

    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    drop: bool = False
    count: int | None = None
    share: float = 1.0
    on: str = "any"
    applied: int = 0
    id: int = 0

    @classmethod
    def parse(cls, spec):
        """A Fault from the JSON the page, the API and the command send; raises on nonsense."""
        if not isinstance(spec, dict):
            raise SandboxInputError('A fault is a JSON object, e.g. {"status": 503, "count": 2}.')
        unknown = set(spec) - FAULT_FIELDS
        if unknown:
            raise SandboxInputError(f"Unknown fault field(s): {', '.join(sorted(unknown))}.")
        status = _optional_int(spec, "status")
        if status is not None and status not in FAULT_STATUSES:
            allowed = ", ".join(map(str, FAULT_STATUSES))
            raise SandboxInputError(f"status must be one of {allowed}.")
        retry_after = _optional_int(spec, "retry_after")
        if retry_after is not None and retry_after < 0:
            raise SandboxInputError("retry_after must be 0 or more seconds.")
        latency_ms = _optional_int(spec, "latency_ms") or 0
        if not 0 <= latency_ms <= 120_000:
            raise SandboxInputError("latency_ms must be between 0 and 120000.")
        drop = spec.get("drop", False)
        if not isinstance(drop, bool):
            raise SandboxInputError("drop must be true or false.")
        count = _optional_int(spec, "count")
        if count is not None and count < 1:
            raise SandboxInputError("count must be 1 or more (leave it out for 'until cleared').")
        share = spec.get("share", 1.0)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise SandboxInputError("share must be a number above 0 and at most 1.")
        on = spec.get("on", "any")
        if on not in FAULT_TARGETS:
            raise SandboxInputError(f"on must be one of {', '.join(FAULT_TARGETS)}.")
        if status is None and not drop and not latency_ms:
            raise SandboxInputError("A fault needs a status, drop: true, or latency_ms.")
        if status is not None and drop:
            raise SandboxInputError("A fault either answers a status or drops the connection.")
        return cls(
            status=status,
            retry_after=retry_after,
            latency_ms=latency_ms,
            drop=drop,
            count=count,
            share=float(share),
            on=on,
        )

    @property
    def decides(self):
        return self.status is not None or self.drop

    @property
    def exhausted(self):
        return self.count is not None and self.applied >= self.count

    def as_dict(self):
        return asdict(self)


def _optional_int(spec, name):
    value = spec.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SandboxInputError(f"{name} must be a whole number.")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise SandboxInputError(f"{name} must be a whole number.")


@dataclass
class Decision:
    """What the faults say about one API call."""

    latency_ms: int = 0
    status: int | None = None
    retry_after: int | None = None
    drop: bool = False
    fault_ids: list = field(default_factory=list)


@dataclass
class Chat:
    chat_id: str
    channel: str = "web"
    name: str = ""
    created_at: str = field(default_factory=now_iso)
    entries: list = field(default_factory=list)
    # Webhooks of one chat leave one after another, in the order the user wrote.
    post_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def summary(self):
        last = self.entries[-1] if self.entries else None
        return {
            "chat_id": self.chat_id,
            "channel": self.channel,
            "name": self.name,
            "created_at": self.created_at,
            "messages": len(self.entries),
            "last": last and {k: last.get(k) for k in ("from", "type", "data", "at", "label")},
        }


class SandboxState:
    """The sandbox's memory; every method is safe to call from any thread."""

    def __init__(
        self, *, tokens=(), strict=False, secret=DEFAULT_SECRET, rng=None, idempotent=True
    ):
        self.lock = threading.RLock()
        # Honour Idempotency-Key: a repeated key is answered as its first call was and
        # not recorded again. Off, the sandbox stores every call, as a platform that
        # ignores the key would (the fault scenarios count duplicates against both).
        self.idempotent = idempotent
        self._by_key = {}
        self.repeats = 0
        self.secret = secret
        self.strict = strict
        # Tokens the sandbox was given count as registered already: R-Chat issued
        # them, and their signature tokens are the same as on any earlier run.
        self.given_tokens = list(dict.fromkeys(t for t in tokens if t))
        self.registered = list(self.given_tokens)
        # The token of the last Register call; it signs the webhooks from then on.
        self.last_registered = None
        self.chats = {}
        self.sends = []
        self.calls = []
        self.faults = []
        self._seq = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self._rng = rng or random.Random()  # noqa: S311 - fault sampling, not security

    # --- tokens -------------------------------------------------------------------

    def signature_for(self, token):
        return signature_for(token, self.secret)

    def register(self, token):
        """The signature token for ``token``; raises PermissionError when strict refuses it."""
        with self.lock:
            if self.strict and token not in self.given_tokens:
                raise PermissionError("This Chatday-Token is not one the sandbox was given.")
            if token in self.registered:
                self.registered.remove(token)
            self.registered.append(token)
            self.last_registered = token
            return self.signature_for(token)

    def is_registered(self, token):
        with self.lock:
            return token in self.registered

    @property
    def account_token(self):
        """The token whose signature token the webhooks carry.

        The sandbox plays one R-Chat account at a time, the one a site registered last:
        the token of the last Register call since it started, else the first token it
        was given, else the demo token. So a site that registers its credential with a
        running sandbox gets webhooks it can verify, whatever the sandbox started with.
        """
        with self.lock:
            if self.last_registered:
                return self.last_registered
            if self.given_tokens:
                return self.given_tokens[0]
            return DEMO_TOKEN

    # --- faults -------------------------------------------------------------------

    def add_fault(self, fault):
        with self.lock:
            fault.id = next(self._fault_ids)
            self.faults.append(fault)
            return fault

    def clear_faults(self):
        with self.lock:
            cleared = len(self.faults)
            self.faults.clear()
            return cleared

    def decide(self, endpoint):
        """Play the faults for one call to ``endpoint`` ("register" or "send")."""
        decision = Decision()
        with self.lock:
            for fault in self.faults:
                if fault.on not in ("any", endpoint) or fault.exhausted:
                    continue
                if fault.decides and (decision.status is not None or decision.drop):
                    continue
                if fault.share < 1 and self._rng.random() >= fault.share:
                    continue
                fault.applied += 1
                decision.fault_ids.append(fault.id)
                decision.latency_ms += fault.latency_ms
                if fault.drop:
                    decision.drop = True
                elif fault.status is not None:
                    decision.status = fault.status
                    decision.retry_after = fault.retry_after
            self.faults = [f for f in self.faults if not f.exhausted]
        return decision

    def log_call(self, endpoint, status, decision, token=""):
        with self.lock:
            self.calls.append(
                {
                    "at": now_iso(),
                    "endpoint": endpoint,
                    "status": status,
                    "faults": decision.fault_ids if decision else [],
                    "token": mask(token),
                }
            )

    # --- chats and messages -------------------------------------------------------

    def chat(self, chat_id, *, channel=None, name=None):
        """The chat ``chat_id``, created on first use; channel and name updated when given."""
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                chat = self.chats[chat_id] = Chat(chat_id=chat_id)
            if channel:
                chat.channel = channel
            if name:
                chat.name = name
            return chat

    def add_entry(self, chat, **entry):
        with self.lock:
            entry = {"seq": next(self._seq), "at": now_iso(), **entry}
            chat.entries.append(entry)
            return entry

    def record_send(self, *, chat_id, message, token, idempotency_key="", sender=None):
        """Keep an accepted Send Message call; return R-Chat's message id for it.

        A key seen before from the same token (with ``idempotent`` on) returns the first
        call's id and records nothing: the end user sees the message once. ``sender``:
        what the body said about who wrote it (None: nothing), kept as it came, with
        the label the chat page shows (``sender_label``).
        """
        with self.lock:
            seen = (token, idempotency_key)
            if idempotency_key and self.idempotent and seen in self._by_key:
                self.repeats += 1
                return self._by_key[seen]
            message_id = str(uuid.uuid4())
            if idempotency_key:
                self._by_key[seen] = message_id
            label = sender_label(sender)
            chat = self.chat(chat_id)
            entry = self.add_entry(
                chat,
                **{"from": "site", "id": message_id},
                type=message["type"],
                data=message["data"],
                sender=sender,
                label=label,
            )
            self.sends.append(
                {
                    "seq": entry["seq"],
                    "at": entry["at"],
                    "message_id": message_id,
                    "chat_id": chat_id,
                    "message": message,
                    "sender": sender,
                    "label": label,
                    "token": mask(token),
                    "idempotency_key": idempotency_key,
                }
            )
        return message_id

    def received(self, chat_id=None):
        """The Send Message calls accepted, oldest first (for one chat, or all)."""
        with self.lock:
            return [dict(s) for s in self.sends if chat_id is None or s["chat_id"] == chat_id]

    def conversation(self, chat_id, after=0):
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                return None
            return {
                **chat.summary(),
                "entries": [dict(e) for e in chat.entries if e["seq"] > after],
            }

    def chat_list(self):
        with self.lock:
            return [chat.summary() for chat in self.chats.values()]

    def reset(self):
        """Forget chats, received messages, calls and faults (tokens stay registered)."""
        with self.lock:
            self.chats.clear()
            self.sends.clear()
            self.calls.clear()
            self.faults.clear()
            self._by_key.clear()
            self.repeats = 0
