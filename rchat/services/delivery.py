"""Outbound delivery in batches: claim the rooms that are due, send, record the batch.

A drain (``delivery_drain``, run by the ``rchat.tasks.drain_outbound`` task) repeats:

1. **Claim** up to ``RCHAT["DELIVERY_BATCH_SIZE"]`` messages: the oldest pending
   message of each chat room whose ``send_after`` has come, marked ``sending``. A batch
   holds at most one message per room, and a room is claimed only while no message of
   it is in a worker's hands, so each room's messages reach R-Chat in the order they
   were written. The claim reads rooms by ``ChatRoom.send_after`` (a partial index) and
   each room's head by the index of pending messages: its cost does not grow with a
   room's history, nor with how many messages wait behind the heads.
2. **Send** each one over this thread's kept-alive ``requests.Session``, within the
   credential's shared rate limit (``rchat.ratelimit``). No transaction is open then.
3. **Record** the whole batch: one DeliveryAttempt row per try and each message's new
   state, fenced by ``status = 'sending' AND attempts = <claimed>`` so a late worker the
   stale sweep gave up on changes nothing; and each room's next ``send_after``.

On PostgreSQL the claim is one statement and the record one statement (after locking
the batch's rooms); other databases take the same steps through the ORM.

``ChatRoom.send_after`` is kept by everyone who changes a room's pending messages, under
the room's row lock: ``rooms_mark_ready`` when a message is queued (unless one is in a
worker's hands, whose record then looks for the next), the record after each try, the
stale sweep for what a stopped worker left. docs/delivery.md tells the whole policy.
"""

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial

from django.db import connections, router, transaction
from django.db.models import Exists, F, Min, OuterRef
from django.utils import timezone
from django.utils.translation import gettext

from .. import broker, crypto, ratelimit, signals
from ..client import RChatClient, sent_message_id
from ..conf import get_setting
from ..exceptions import (
    RChatAPIError,
    RChatAuthError,
    RChatConfigurationError,
    RChatError,
    RChatRateLimitedError,
)
from ..models import ChatRoom, Credential, DeliveryAttempt, Message
from . import credentials
from .handover import BOT_SENDERS

logger = logging.getLogger(__name__)

EXTERNAL_ID_MAX = Message._meta.get_field("external_id").max_length
PENDING = (Message.Status.QUEUED, Message.Status.SENDING)

#: Longest a sender waits for its credential's rate limit before giving the message
#: back to the queue (its room is then due again when the limit allows).
RATE_WAIT_MAX = 1.0
#: A drain stops after this long and wakes another, so one task never runs for ever.
DRAIN_BUDGET_SECONDS = 30.0
#: The sends of a batch are recorded as soon as this long has passed since the last
#: record (and at the end of the batch). A worker killed mid-batch can only have sent
#: without recording what it sent in this time: the sends R-Chat may see twice (each
#: with its idempotency key). Against a fast R-Chat that is a few dozen messages per
#: record; against one slower than this, every send is recorded as it is answered.
#: A record is a transaction of its own: recording every 20 ms instead took a third of
#: a worker's CPU (docs/performance.md).
RECORD_EVERY_SECONDS = 0.25

_random = random.SystemRandom()


@dataclass
class DrainResult:
    """What a drain did, counted by outcome (the task returns ``as_dict()``, for logs)."""

    batches: int = 0
    claimed: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    held: int = 0
    # Claimed but given back untried: the credential's rate limit or a 429 hold.
    waiting: int = 0
    seconds: float = 0.0

    def as_dict(self):
        return asdict(self)


@dataclass
class _Item:
    """One claimed message on its way through send and record."""

    id: int
    room_id: int
    chat_id: str
    credential_id: int
    type: str
    data: object
    attempts: int
    key: str
    sender: str = ""
    author_id: int | None = None
    rule_id: int | None = None
    # Filled by the send step.
    tried: bool = False
    outcome: str = ""
    status: str = ""
    started_at: object = None
    duration_ms: int = 0
    http_status: int | None = None
    error_type: str = ""
    error: str = ""
    external_id: str = ""
    next_at: object = None
    sent_at: object = None
    extra: dict = field(default_factory=dict)
    # Who wrote it, for RCHAT["SENDER_FIELD"] (filled before sending when that is set).
    about: dict | None = None


# --- Public entry points ------------------------------------------------------------------


def delivery_drain(*, batch_size=None, budget=DRAIN_BUDGET_SECONDS, batches=None):
    """Send every outbound message that is due, a batch at a time; a ``DrainResult``.

    Safe to run in many workers at once: each claims other rooms (``SKIP LOCKED``).
    A full batch wakes one more drain first, so a backlog is shared by every worker.
    Stops when a claim comes back empty, after ``batches`` batches if given, or after
    ``budget`` seconds (then it wakes another drain for the rest).
    """
    limit = batch_size or get_setting("DELIVERY_BATCH_SIZE")
    result = DrainResult()
    clock = time.monotonic()
    while True:
        broker.drain_flag_clear()
        batch = _claim(limit)
        if not batch:
            break
        result.batches += 1
        result.claimed += len(batch)
        full = len(batch) >= limit
        if full:
            broker.drain_wake()  # another worker takes the next batch meanwhile
        _send_batch(batch)
        for item in batch:
            setattr(result, item.outcome, getattr(result, item.outcome) + 1)
        # Claim again, even after a short batch: a room this claim skipped because a
        # record held its lock is due now, and no one else is woken for it.
        if batches is not None and result.batches >= batches:
            break
        if time.monotonic() - clock > budget:
            broker.drain_wake()
            break
    result.seconds = round(time.monotonic() - clock, 3)
    return result


def rooms_mark_ready(*, room_ids, now=None):
    """Make rooms whose messages were just queued due for the claim.

    Call it inside the transaction that queued them, after locking the rooms (an UPDATE
    of the room row does). A room already due keeps its place (``send_after`` kept), and
    a room whose head is in a worker's hands is left for that worker's record, which
    looks for the next message itself. Then wake a drain on commit (``broker.drain_wake``).
    """
    now = now or timezone.now()
    sending = Message.objects.filter(room_id=OuterRef("pk"), status=Message.Status.SENDING)
    return (
        ChatRoom.objects.filter(pk__in=list(room_ids), send_after__isnull=True)
        .exclude(Exists(sending))
        .update(send_after=now)
    )


def idempotency_key_new():
    """A new message's idempotency key, the same in every try of that message.

    Random (not the row's id), so that two sites sending through one R-Chat account,
    such as staging and production, never share a key.
    """
    import uuid

    return f"rchat-{uuid.uuid4().hex}"


def retry_delay(attempts, error):
    """Seconds before the next try: Retry-After for a 429, else exponential back-off."""
    longest = float(get_setting("RETRY_MAX_DELAY"))
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        return min(float(retry_after), longest)
    # "Equal jitter": half the exponential step for sure, the other half at random.
    # The random half spreads out the retries of messages that failed together; the
    # sure half makes the tries of one message really span the back-off (with full
    # jitter a few unlucky messages spent all their attempts in a short outage).
    cap = min(longest, float(get_setting("RETRY_BASE_DELAY")) * 2 ** max(attempts - 1, 0))
    return cap / 2 + _random.uniform(0, cap / 2)


def held_reason(credential):
    return gettext(
        "Waiting: R-Chat refused the Chatday-Token of credential %(name)s; "
        "register it again to send."
    ) % {"name": credential.name}


# --- Claim --------------------------------------------------------------------------------


def _claim(limit):
    now = timezone.now()
    db = router.db_for_write(Message)
    connection = connections[db]
    if connection.vendor == "postgresql":
        items, idle = _claim_postgresql(connection, limit, now)
    else:
        items, idle = _claim_orm(db, limit, now)
    if idle:
        _rooms_settle(db, idle)
    return items


def _names(connection):
    """The tables' and columns' quoted names, worked out once per database vendor."""
    names = _NAMES.get(connection.vendor)
    if names is None:
        names = _NAMES[connection.vendor] = _names_build(connection)
    return names


_NAMES = {}


def _names_build(connection):
    quote = connection.ops.quote_name

    def columns(model):
        return {f.attname: quote(f.column) for f in model._meta.concrete_fields}

    return (
        quote(ChatRoom._meta.db_table),
        columns(ChatRoom),
        quote(Message._meta.db_table),
        columns(Message),
        quote(Credential._meta.db_table),
        columns(Credential),
        quote(DeliveryAttempt._meta.db_table),
        columns(DeliveryAttempt),
    )


def _claim_postgresql(connection, limit, now):
    """The claim as one statement; returns (claimed items, ids of rooms with no head)."""
    room_t, r, msg_t, m, cred_t, c, _attempt_t, _a = _names(connection)
    # rooms: due, credential not refused, not locked by a sender or another drain.
    # heads: each room's oldest pending message (the index of pending messages by room),
    #   claimable only if queued and due: a head "sending" is another worker's.
    # claimed: queued -> sending, one more attempt; cleared: those rooms leave the queue
    #   until the record says when they are due again.
    sql = f"""
        WITH rooms AS (
            SELECT room.{r["id"]} AS id, room.{r["chat_id"]} AS chat_id,
                   room.{r["credential_id"]} AS credential_id,
                   room.{r["bot_silenced_through"]} AS silenced_through
            FROM {room_t} room JOIN {cred_t} cred ON cred.{c["id"]} = room.{r["credential_id"]}
            WHERE room.{r["send_after"]} <= %(now)s AND cred.{c["status"]} <> %(invalid)s
            ORDER BY room.{r["send_after"]}
            LIMIT %(limit)s
            FOR UPDATE OF room SKIP LOCKED
        ), heads AS (
            SELECT rooms.id AS room_id, head.id, head.status, head.due,
                   (head.sender = ANY(%(bot_senders)s)
                    AND head.id <= COALESCE(rooms.silenced_through, 0)) AS silenced
            FROM rooms LEFT JOIN LATERAL (
                SELECT msg.{m["id"]} AS id, msg.{m["status"]} AS status,
                       (msg.{m["next_attempt_at"]} IS NULL
                        OR msg.{m["next_attempt_at"]} <= %(now)s) AS due,
                       msg.{m["sender"]} AS sender
                FROM {msg_t} msg
                WHERE msg.{m["room_id"]} = rooms.id AND msg.{m["status"]} = ANY(%(pending)s)
                ORDER BY msg.{m["id"]} LIMIT 1
            ) head ON TRUE
        ), claimed AS (
            UPDATE {msg_t} msg
            SET {m["status"]} = %(sending)s, {m["attempts"]} = msg.{m["attempts"]} + 1,
                {m["updated_at"]} = %(now)s
            FROM heads
            WHERE msg.{m["id"]} = heads.id AND heads.status = %(queued)s AND heads.due
                AND NOT heads.silenced AND msg.{m["status"]} = %(queued)s
            RETURNING msg.{m["id"]} AS id, msg.{m["room_id"]} AS room_id,
                msg.{m["type"]} AS type, msg.{m["data"]}::text AS data,
                msg.{m["attempts"]} AS attempts, msg.{m["dedup_key"]} AS key,
                msg.{m["sender"]} AS sender, msg.{m["author_id"]} AS author_id,
                msg.{m["rule_id"]} AS rule_id
        ), silenced AS (
            UPDATE {msg_t} msg
            SET {m["status"]} = %(cancelled)s, {m["last_error"]} = %(silenced_error)s,
                {m["updated_at"]} = %(now)s
            FROM heads
            WHERE msg.{m["id"]} = heads.id AND heads.silenced AND msg.{m["status"]} = %(queued)s
        ), cleared AS (
            UPDATE {room_t} room SET {r["send_after"]} = NULL
            FROM claimed WHERE room.{r["id"]} = claimed.room_id
        )
        SELECT claimed.id, claimed.room_id, rooms.chat_id, rooms.credential_id,
               claimed.type, claimed.data, claimed.attempts, claimed.key,
               claimed.sender, claimed.author_id, claimed.rule_id
        FROM claimed JOIN rooms ON rooms.id = claimed.room_id
        UNION ALL
        SELECT NULL, heads.room_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM heads WHERE heads.id IS NULL
    """  # noqa: S608 (names from _meta, quoted; every value a parameter)
    params = {
        "now": now,
        "limit": limit,
        "invalid": Credential.Status.INVALID,
        "pending": list(PENDING),
        "sending": Message.Status.SENDING,
        "queued": Message.Status.QUEUED,
        "cancelled": Message.Status.CANCELLED,
        "bot_senders": list(BOT_SENDERS),
        "silenced_error": _silenced_error(),
    }
    items, idle = [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            if row[0] is None:
                idle.append(row[1])
                continue
            items.append(_Item(*row[:5], json.loads(row[5]), *row[6:]))
    items.sort(key=lambda item: item.id)
    return items, idle


def _claim_orm(db, limit, now):
    """The claim through the ORM (SQLite, other databases), one row at a time."""
    with transaction.atomic(using=db):
        rooms = (
            ChatRoom.objects.using(db)
            .filter(send_after__lte=now)
            .exclude(credential__status=Credential.Status.INVALID)
            .order_by("send_after", "pk")
        )
        if connections[db].features.has_select_for_update_skip_locked:
            rooms = rooms.select_for_update(skip_locked=True, of=("self",))
        found = {
            pk: (chat_id, credential_id, silenced_through)
            for pk, chat_id, credential_id, silenced_through in rooms.values_list(
                "pk", "chat_id", "credential_id", "bot_silenced_through"
            )[:limit]
        }
        heads = dict(
            Message.objects.using(db)
            .filter(room_id__in=list(found), status__in=PENDING)
            .values("room_id")
            .annotate(head=Min("pk"))
            .values_list("room_id", "head")
        )
        idle = [pk for pk in found if pk not in heads]
        items = []
        for message in (
            Message.objects.using(db)
            .filter(pk__in=list(heads.values()), status=Message.Status.QUEUED)
            .order_by("pk")
        ):
            if message.next_attempt_at and message.next_attempt_at > now:
                continue
            chat_id, credential_id, silenced_through = found[message.room_id]
            if message.sender in BOT_SENDERS and message.pk <= (silenced_through or 0):
                Message.objects.using(db).filter(
                    pk=message.pk, status=Message.Status.QUEUED
                ).update(
                    status=Message.Status.CANCELLED, last_error=_silenced_error(), updated_at=now
                )
                continue
            # The status in the filter fences out a drain that claimed it meanwhile.
            won = (
                Message.objects.using(db)
                .filter(pk=message.pk, status=Message.Status.QUEUED)
                .update(status=Message.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
            )
            if not won:
                continue
            items.append(
                _Item(
                    message.pk,
                    message.room_id,
                    chat_id,
                    credential_id,
                    message.type,
                    message.data,
                    message.attempts + 1,
                    message.dedup_key,
                    message.sender,
                    message.author_id,
                    message.rule_id,
                )
            )
        ChatRoom.objects.using(db).filter(pk__in=[item.room_id for item in items]).update(
            send_after=None
        )
    return items, idle


def _silenced_error():
    return gettext("Not sent: people took the chat room over.")


def _rooms_settle(db, room_ids):
    """Take rooms that were due but have no pending message out of the queue.

    A cancelled or deleted message can leave such a room. The rows are locked first and
    the look-up is a later statement, so a message queued meanwhile is seen, not missed.
    """
    pending = Message.objects.filter(room_id=OuterRef("pk"), status__in=PENDING)
    with transaction.atomic(using=db):
        locked = list(
            ChatRoom.objects.using(db)
            .select_for_update()
            .filter(pk__in=room_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        ChatRoom.objects.using(db).filter(pk__in=locked).exclude(Exists(pending)).update(
            send_after=None
        )


# --- Send ---------------------------------------------------------------------------------


def _send_batch(batch):
    """Send (or give back) every item, recording them as they go (RECORD_EVERY_SECONDS)."""
    credentials_by_id = Credential.objects.in_bulk({item.credential_id for item in batch})
    if get_setting("SENDER_FIELD"):
        _senders_describe(batch)
    unrecorded = []
    recorded_at = time.monotonic()
    for item in _send_each(batch, credentials_by_id):
        unrecorded.append(item)
        if time.monotonic() - recorded_at >= RECORD_EVERY_SECONDS:
            _record(unrecorded)
            unrecorded, recorded_at = [], time.monotonic()
    if unrecorded:
        _record(unrecorded)


def _senders_describe(batch):
    """Fill in who wrote each item (two look-ups for the whole batch)."""
    from django.contrib.auth import get_user_model

    from ..models import AutoReply

    people = get_user_model().objects.in_bulk({i.author_id for i in batch if i.author_id})
    rules = AutoReply.objects.in_bulk({i.rule_id for i in batch if i.rule_id})
    for item in batch:
        if not item.sender:
            continue
        about = {"kind": item.sender}
        if item.sender == Message.Sender.PERSON and item.author_id in people:
            person = people[item.author_id]
            about["name"] = person.get_full_name() or person.get_username()
        elif item.sender == Message.Sender.RULE and item.rule_id in rules:
            about["name"] = rules[item.rule_id].name
        item.about = about


def _send_each(batch, credentials_by_id):
    """Yield each item once it is sent, or given back untried."""
    # A credential R-Chat refused (401/403) or held (429) in this batch: its other
    # messages go back untried.
    stopped = {}
    checked = set()
    for item in batch:
        credential = credentials_by_id.get(item.credential_id)
        if credential is None:  # deleted meanwhile: its rooms went with it
            yield _give_back(item, timezone.now())
            continue
        if item.credential_id in stopped:
            yield _give_back(item, stopped[item.credential_id])
            continue
        limit = ratelimit.limit_for(credential)
        if limit is None:
            # No rate limit, but a 429 elsewhere may hold the credential: asked once
            # per batch.
            if item.credential_id not in checked:
                checked.add(item.credential_id)
                held = ratelimit.held_for(credential.pk)
                if held > 0:
                    stopped[item.credential_id] = timezone.now() + timedelta(seconds=held)
                    yield _give_back(item, stopped[item.credential_id])
                    continue
        else:
            wait = ratelimit.reserve(credential.pk, *limit, max_wait=RATE_WAIT_MAX)
            if wait is None:
                later = max(ratelimit.held_for(credential.pk), RATE_WAIT_MAX)
                yield _give_back(item, timezone.now() + timedelta(seconds=later))
                continue
            if wait > 0:
                time.sleep(wait)
        _send_one(item, credential)
        if item.outcome == DeliveryAttempt.Outcome.HELD:
            stopped[item.credential_id] = timezone.now()
        elif item.http_status == 429:
            stopped[item.credential_id] = item.next_at
        yield item


def _give_back(item, due):
    item.tried = False
    item.outcome = "waiting"
    item.status = Message.Status.QUEUED
    item.next_at = due
    return item


def _send_one(item, credential):
    item.tried = True
    item.started_at = timezone.now()
    clock = time.monotonic()
    answer, error = None, None
    try:
        client = RChatClient.for_credential(credential)
        answer = client.send_message(
            item.chat_id, item.type, item.data, idempotency_key=item.key, sender=item.about
        )
    except Exception as exc:  # every failure is recorded, none escapes
        error = exc
    item.duration_ms = int((time.monotonic() - clock) * 1000)
    now = timezone.now()
    if error is None:
        item.outcome = DeliveryAttempt.Outcome.SENT
        item.status = Message.Status.SENT
        item.http_status = 200  # the client hands back only the body of a 2xx answer
        item.sent_at = now
        item.external_id = sent_message_id(answer)[:EXTERNAL_ID_MAX]
        return
    item.http_status = getattr(error, "status", None)
    item.error_type = type(error).__name__
    item.error = crypto.redact(
        " ".join(str(error).split()), credential.token, credential.signature_token
    )[:4000]
    if isinstance(error, RChatAuthError):
        # The token, not the message, is at fault: it stays queued until the
        # credential is registered again (the claim skips refused credentials).
        item.outcome = DeliveryAttempt.Outcome.HELD
        item.status = Message.Status.QUEUED
        item.next_at = now
        credentials.credential_mark_invalid(credential=credential, error=item.error)
    elif _is_transient(error) and item.attempts < get_setting("DELIVERY_MAX_ATTEMPTS"):
        item.outcome = DeliveryAttempt.Outcome.RETRY
        item.status = Message.Status.QUEUED
        delay = retry_delay(item.attempts, error)
        item.next_at = now + timedelta(seconds=delay)
        if isinstance(error, RChatRateLimitedError):
            # R-Chat asked this credential, not this message, to slow down.
            ratelimit.hold(credential.pk, delay)
    else:
        item.outcome = DeliveryAttempt.Outcome.FAILED
        item.status = Message.Status.FAILED


def _is_transient(error):
    if isinstance(error, RChatAPIError):
        return error.transient
    # A configuration or decryption problem does not mend itself; fail with the reason.
    # Anything else unexpected is retried (and fails after the last attempt).
    return not isinstance(error, RChatError | RChatConfigurationError)


# --- Record -------------------------------------------------------------------------------


def _record(batch):
    now = timezone.now()
    db = router.db_for_write(Message)
    connection = connections[db]
    with transaction.atomic(using=db):
        # Lock the rooms first, in a statement of its own: the record's look-up of "is
        # another message pending in this room?" then runs after any sender that held
        # the lock has committed, and sees its message.
        list(
            ChatRoom.objects.using(db)
            .select_for_update()
            .filter(pk__in=[item.room_id for item in batch])
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if connection.vendor == "postgresql":
            recorded = _record_postgresql(connection, batch, now)
        else:
            recorded = _record_orm(db, batch, now)
        _after_record(batch, recorded)
    return recorded


# The _Item fields the record statement takes, in the order of its unnest() columns.
_RECORDED = (
    "id",
    "attempts",
    "tried",
    "outcome",
    "status",
    "started_at",
    "duration_ms",
    "http_status",
    "error_type",
    "error",
    "external_id",
    "next_at",
    "sent_at",
)


def _record_postgresql(connection, batch, now):
    """Attempts, messages and rooms of the whole batch in one statement."""
    room_t, r, msg_t, m, _cred_t, _c, attempt_t, a = _names(connection)
    sql = f"""
        WITH result AS (
            SELECT * FROM unnest(
                %s::bigint[], %s::integer[], %s::boolean[], %s::text[], %s::text[],
                %s::timestamptz[], %s::integer[], %s::integer[], %s::text[], %s::text[],
                %s::text[], %s::timestamptz[], %s::timestamptz[]
            ) AS result(id, attempts, tried, outcome, status, started_at, duration_ms,
                        http_status, error_type, error, external_id, next_at, sent_at)
        ), done AS (
            UPDATE {msg_t} msg SET
                {m["status"]} = result.status,
                {m["attempts"]} = CASE WHEN result.tried THEN msg.{m["attempts"]}
                                  ELSE msg.{m["attempts"]} - 1 END,
                {m["last_error"]} = CASE WHEN result.tried THEN result.error
                                    ELSE msg.{m["last_error"]} END,
                {m["next_attempt_at"]} = result.next_at,
                {m["sent_at"]} = COALESCE(result.sent_at, msg.{m["sent_at"]}),
                {m["external_id"]} = CASE WHEN result.external_id <> '' THEN result.external_id
                                     ELSE msg.{m["external_id"]} END,
                {m["updated_at"]} = %s
            FROM result
            WHERE msg.{m["id"]} = result.id AND msg.{m["status"]} = %s
                AND msg.{m["attempts"]} = result.attempts
            RETURNING msg.{m["id"]} AS id, msg.{m["room_id"]} AS room_id
        ), logged AS (
            INSERT INTO {attempt_t} ({a["message_id"]}, {a["started_at"]}, {a["duration_ms"]},
                {a["http_status"]}, {a["outcome"]}, {a["error_type"]}, {a["error"]})
            SELECT id, started_at, duration_ms, http_status, outcome, error_type, error
            FROM result WHERE tried
        ), rooms AS (
            UPDATE {room_t} room SET {r["send_after"]} = CASE
                WHEN result.status = %s THEN result.next_at
                WHEN EXISTS (
                    SELECT 1 FROM {msg_t} other
                    WHERE other.{m["room_id"]} = room.{r["id"]}
                        AND other.{m["status"]} = ANY(%s) AND other.{m["id"]} <> result.id
                ) THEN %s
                ELSE NULL END
            FROM done JOIN result ON result.id = done.id
            WHERE room.{r["id"]} = done.room_id
        )
        SELECT id FROM done
    """  # noqa: S608 (names from _meta, quoted; every value a parameter)
    columns = [[getattr(item, name) for item in batch] for name in _RECORDED]
    params = [*columns, now, Message.Status.SENDING, Message.Status.QUEUED, list(PENDING), now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _record_orm(db, batch, now):
    """The record through the ORM, one message at a time."""
    recorded = set()
    for item in batch:
        if item.tried:
            DeliveryAttempt.objects.using(db).create(
                message_id=item.id,
                started_at=item.started_at,
                duration_ms=item.duration_ms,
                http_status=item.http_status,
                outcome=item.outcome,
                error_type=item.error_type,
                error=item.error,
            )
        update = {"status": item.status, "next_attempt_at": item.next_at, "updated_at": now}
        if item.tried:
            update["last_error"] = item.error
        else:
            update["attempts"] = F("attempts") - 1
        if item.sent_at:
            update["sent_at"] = item.sent_at
        if item.external_id:
            update["external_id"] = item.external_id
        done = (
            Message.objects.using(db)
            .filter(pk=item.id, status=Message.Status.SENDING, attempts=item.attempts)
            .update(**update)
        )
        if not done:
            continue
        recorded.add(item.id)
        if item.status == Message.Status.QUEUED:
            send_after = item.next_at
        else:
            others = (
                Message.objects.using(db)
                .filter(room_id=item.room_id, status__in=PENDING)
                .exclude(pk=item.id)
            )
            send_after = now if others.exists() else None
        ChatRoom.objects.using(db).filter(pk=item.room_id).update(send_after=send_after)
    return recorded


def _after_record(batch, recorded):
    """After the commit: the signals, and a drain for the rooms due again later."""
    later = [
        item.next_at
        for item in batch
        if item.id in recorded and item.status == Message.Status.QUEUED and item.next_at
    ]
    if later:
        countdown = max(0.0, (min(later) - timezone.now()).total_seconds())
        transaction.on_commit(partial(broker.drain_wake, countdown=countdown), robust=True)
    finished = [
        (item.id, item.error if item.outcome == DeliveryAttempt.Outcome.FAILED else None)
        for item in batch
        if item.id in recorded and item.status in (Message.Status.SENT, Message.Status.FAILED)
    ]
    if finished:
        transaction.on_commit(partial(_signals_send, finished), robust=True)


def _signals_send(finished):
    wanted = [
        (message_id, error)
        for message_id, error in finished
        if (signals.message_sent if error is None else signals.message_failed).has_listeners(
            Message
        )
    ]
    if not wanted:
        return  # no receiver: spare every batch a query
    messages = Message.objects.select_related("room").in_bulk([pk for pk, _error in wanted])
    for message_id, error in wanted:
        message = messages[message_id]
        if error is None:
            signals.message_sent.send(sender=Message, message=message)
        else:
            signals.message_failed.send(sender=Message, message=message, error=error)
