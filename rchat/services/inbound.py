"""Inbound webhooks: every call kept as an event, every message stored exactly once."""

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import cache, partial

from django.conf import settings
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    connections,
    models,
    router,
    transaction,
)
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from .. import broker, payloads, signals
from ..conf import get_setting
from ..exceptions import (
    RChatConfigurationError,
)
from ..models import ChatRoom, Credential, Message, WebhookEvent

logger = logging.getLogger(__name__)


# --- Inbound ----------------------------------------------------------------------------
# R-Chat's webhook lands here (docs/webhooks.md). The view has checked the signature
# token and the size; everything after that is data: the call is kept as a
# WebhookEvent whatever happens, and the message it carries is stored exactly once.

#: Outcomes of webhook events that can be processed again ("received": a call whose
#: processing was cut short).
REPROCESSABLE = (WebhookEvent.Outcome.FAILED, WebhookEvent.Outcome.RECEIVED)

# Longest dedup key (Message.dedup_key); longer external ids are hashed.
DEDUP_KEY_MAX = Message._meta.get_field("dedup_key").max_length
# Credential.last_webhook_at is written at most this often per process: it tells an
# operator that R-Chat reaches the site, which does not need one write per message.
LAST_WEBHOOK_WRITE_SECONDS = 60.0
_last_webhook_written = {}


@dataclass(frozen=True)
class InboundResult:
    """What became of one webhook call.

    ``event.outcome`` is "processed", "duplicate", "ping" or "failed"; ``message`` the
    stored message (the earlier one for a duplicate); ``retryable`` is True when the
    failure was ours, not the body's, so the same call sent again may succeed.
    """

    event: WebhookEvent
    message: Message | None = None
    created: bool = False
    retryable: bool = False

    @property
    def outcome(self):
        return self.event.outcome


class _Redelivery(Exception):
    # Control flow inside _inbound_store: an earlier message with the same body.
    def __init__(self, message):
        super().__init__()
        self.message = message


def webhook_receive(*, credential_id, body, headers, remote_addr=None, new_room_handler=None):
    """Keep an authenticated webhook call and store the message it carries.

    ``headers`` must already have the signature token redacted. Writes, in one
    transaction, the WebhookEvent, the chat room (created on its first message) and
    the Message; a redelivery stores no second message (outcome "duplicate"). A body
    that is not a message is kept with outcome "failed" and the reason in ``error``.

    After the commit, ``signals.message_received`` is sent and RCHAT["ON_MESSAGE"]
    queued (new messages only), and the bot is asked to answer when it handles the
    room. Raises only when not even the failed event could be written (the database
    is down): then nothing is kept and R-Chat must send again.

    ``new_room_handler``: who handles the room if this message creates it (the
    webhook passes its cached credential's; None reads the credential).
    """
    event = WebhookEvent(
        credential_id=credential_id,
        remote_addr=remote_addr,
        headers=payloads.inbound_clean(headers or {}),
        body=bytes(body),
    )
    event.new_room_handler = new_room_handler
    result = _webhook_process(event, received_at=timezone.now(), live=True)
    _credential_touch(credential_id, force=result.outcome == WebhookEvent.Outcome.PING)
    return result


def webhook_refuse(*, credential_id, headers, remote_addr=None, error):
    """Keep an authenticated call that was refused before its body was read (too large).

    The event has no body and outcome "failed"; it cannot be re-processed.
    """
    event = WebhookEvent(
        credential_id=credential_id,
        remote_addr=remote_addr,
        headers=payloads.inbound_clean(headers or {}),
        body=b"",
    )
    return _event_finish(event, WebhookEvent.Outcome.FAILED, error=error)


def webhook_event_reprocess(*, event):
    """Process a failed webhook event again (after a fix), as if it arrived now.

    The message keeps the time the call was received: it takes its place in the
    thread then, and the dedup window is measured from then, so a call R-Chat also
    sent again in the meantime is recognised as the same message.

    Raises ``ValueError`` for an event that was not a failure, or kept no body.
    """
    if event.outcome not in REPROCESSABLE:
        raise ValueError(
            gettext("Webhook event %(id)s is %(outcome)s; only failed events are re-processed.")
            % {"id": event.pk, "outcome": event.get_outcome_display()}
        )
    if not bytes(event.body) and event.error:
        raise ValueError(
            gettext("Webhook event %(id)s kept no body (%(error)s); nothing to re-process.")
            % {"id": event.pk, "error": event.error}
        )
    if event.credential_id is None:
        return _event_finish(
            event,
            WebhookEvent.Outcome.FAILED,
            error=gettext("The credential this call came for has been deleted."),
        )
    return _webhook_process(event, received_at=event.received_at, live=False)


@dataclass(frozen=True)
class Reprocessed:
    """What ``webhook_events_reprocess`` did with one event."""

    event_id: int
    #: "processed", "duplicate", "ping", "failed", or "skipped" (left as it was).
    outcome: str
    #: The stored message ("message #12"), why it failed, or why it was skipped.
    detail: str = ""


def webhook_events_reprocess(*, ids=(), failed=False):
    """Process webhook events again: those of ``ids``, and with ``failed`` (or no ids)
    every failed one. Returns ``(total, results)``: how many will be re-processed, and
    an iterator that re-processes them oldest first, giving a ``Reprocessed`` for each.

    Raises ``ValueError`` before touching anything when an id is unknown or names an
    event that did not fail. Events are read one at a time (bodies can be large), and
    one re-processed elsewhere meanwhile is skipped.
    """
    ids = list(ids)
    if ids:
        found = WebhookEvent.objects.in_bulk(ids)
        missing = [str(pk) for pk in ids if pk not in found]
        if missing:
            raise ValueError(
                gettext("No webhook event with id %(ids)s.") % {"ids": ", ".join(missing)}
            )
        done = [str(pk) for pk in ids if found[pk].outcome not in REPROCESSABLE]
        if done:
            raise ValueError(
                gettext("Webhook event %(ids)s did not fail; only failed events are re-processed.")
                % {"ids": ", ".join(done)}
            )
    events = WebhookEvent.objects.filter(pk__in=ids)
    if failed or not ids:
        events = events | WebhookEvent.objects.filter(outcome__in=REPROCESSABLE)
    pks = list(events.order_by("pk").values_list("pk", flat=True))
    return len(pks), (_event_reprocess_one(pk) for pk in pks)


def _event_reprocess_one(pk):
    event = WebhookEvent.objects.filter(pk=pk, outcome__in=REPROCESSABLE).first()
    if event is None:
        return Reprocessed(pk, "skipped", gettext("no longer failed"))
    try:
        result = webhook_event_reprocess(event=event)
    except ValueError as exc:
        return Reprocessed(pk, "skipped", str(exc))
    if result.message is not None:
        return Reprocessed(
            pk, result.outcome, gettext("message #%(id)s") % {"id": result.message.pk}
        )
    detail = result.event.error if result.outcome == WebhookEvent.Outcome.FAILED else ""
    return Reprocessed(pk, result.outcome, detail)


def message_hook_run(*, message_id):
    """Run RCHAT["ON_MESSAGE"] for inbound message ``message_id`` (see tasks.py).

    The hook is a callable taking the message id; its return value is ignored and
    its errors are the worker's to log. Nothing happens when the setting is empty.
    """
    path = get_setting("ON_MESSAGE")
    if not path:
        return None
    try:
        hook = import_string(path)
    except ImportError as exc:
        raise RChatConfigurationError(
            f'RCHAT["ON_MESSAGE"] = {path!r} cannot be imported: {exc}'
        ) from exc
    return hook(message_id)


def _webhook_process(event, *, received_at, live):
    try:
        inbound = payloads.inbound_parse(payloads.inbound_load(event.body))
    except payloads.InvalidPayload as exc:
        return _event_finish(event, WebhookEvent.Outcome.FAILED, error=str(exc))
    if inbound is None:
        return _event_finish(event, WebhookEvent.Outcome.PING)
    try:
        return _inbound_store(event, inbound, received_at=received_at, live=live)
    except DataError as exc:
        # The database refuses a value parsing let through: the body's fault, so sending
        # it again cannot help. Kept as failed (re-processable after a fix), and logged
        # with its traceback, since payloads should have caught it.
        logger.exception(
            "Webhook event for chat %s holds a value the database refuses", inbound.chat_id
        )
        _event_forget_rollback(event, live=live)
        return _event_finish(
            event,
            WebhookEvent.Outcome.FAILED,
            error=gettext("The database cannot store this message: %(reason)s")
            % {"reason": " ".join(str(exc).split())[:300]},
        )
    except Exception as exc:
        # Our failure, not the body's (a database error, a bug): keep the call as
        # failed so it can be re-processed, and let the caller ask R-Chat to retry.
        logger.exception("Webhook event for chat %s could not be stored", inbound.chat_id)
        _event_forget_rollback(event, live=live)
        result = _event_finish(
            event, WebhookEvent.Outcome.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        return InboundResult(event=result.event, retryable=True)


def _inbound_store(event, inbound, *, received_at, live):
    key, same_body_keys = _dedup_keys(inbound, event.body, received_at)
    if live:
        result = _inbound_ingest(event, inbound, key, same_body_keys, received_at)
        if result is not None:
            return result
    return _inbound_store_general(event, inbound, key, same_body_keys, received_at, live)


def _inbound_store_general(event, inbound, key, same_body_keys, received_at, live):
    """Store ``inbound`` in one transaction of several statements; any database, any case.

    This is the reference for what storing a message means; ``_inbound_ingest`` does
    the same in one statement where it can, and hands every other case over to this.
    """
    try:
        with transaction.atomic():
            # Updating the room first locks its row: every inbound message of one room
            # is stored one after the other, which makes the same-body check below
            # race-free. The unique (room, dedup_key) guards ids without needing it.
            room = _room_touch(event, inbound, received_at)
            if same_body_keys:
                earlier = _earlier_same_body(room.pk, same_body_keys, received_at)
                if earlier is not None:
                    raise _Redelivery(earlier)
            message = Message.objects.create(
                room=room,
                direction=Message.Direction.IN,
                type=inbound.type,
                data=inbound.data,
                text=inbound.text,
                status=Message.Status.RECEIVED,
                external_id=inbound.external_id,
                dedup_key=key,
                extra=inbound.extra,
                sent_by_user_at=inbound.sent_at,
            )
            if not live:
                Message.objects.filter(pk=message.pk).update(created_at=received_at)
                message.created_at = received_at
            _event_save(event, WebhookEvent.Outcome.PROCESSED, message=message)
            transaction.on_commit(partial(_message_received, message, room, True), robust=True)
        return InboundResult(event=event, message=message, created=True)
    except _Redelivery as redelivery:
        earlier = redelivery.message
    except IntegrityError:
        # A message with this dedup key was stored first: this call is a redelivery.
        earlier = key and (
            Message.objects.filter(
                room__credential_id=event.credential_id,
                room__chat_id=inbound.chat_id,
                dedup_key=key,
            ).first()
        )
        if not earlier:
            raise
    _event_forget_rollback(event, live=live)
    earlier = Message.objects.select_related("room").get(pk=earlier.pk)
    _event_save(event, WebhookEvent.Outcome.DUPLICATE, message=earlier)
    transaction.on_commit(partial(_message_received, earlier, earlier.room, False), robust=True)
    return InboundResult(event=event, message=earlier, created=False)


# --- Ingest in one statement (PostgreSQL) ---------------------------------------------
# Every webhook waits for its round trips to the database, and the general path above
# takes five of them for a message (BEGIN, the room, the message, the event, COMMIT),
# nine for a room's first one. On PostgreSQL, data-modifying CTEs (WITH … INSERT/UPDATE
# … RETURNING) let one statement write all three rows, and a statement run in
# autocommit is a transaction of its own: one round trip, and the rows are durable when
# it returns. A statement is atomic: it writes all three rows or none.
#
# The statement stores a message only where it can tell, from what it reads, that the
# general path would store a new one; anywhere else it writes nothing and that path
# takes over: a redelivery, a room changed by another call while a body without a
# message id is checked, a room's concurrent first messages. So the rules stay in one
# place (``_inbound_store_general``), which also keeps every case the statement does
# not try: re-processed events, SQLite and the other databases.


def _inbound_ingest(event, inbound, key, same_body_keys, received_at):
    """Store a new message, its room and its event in one statement; None if not done.

    None means that nothing was written and the general path must decide: the database
    is not PostgreSQL (or the three models live in different ones), or the statement
    met a case it leaves to that path (see ``_ingest_sql``).
    """
    db = router.db_for_write(Message)
    if router.db_for_write(ChatRoom) != db or router.db_for_write(WebhookEvent) != db:
        return None
    connection = connections[db]
    if connection.vendor != "postgresql":
        return None
    about_user = _about_user(inbound)
    preview = payloads.inbound_preview(inbound.text)
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    # The parameters in the statement's order: the update of an existing room, the
    # same-body check, then the new room, the message and the event.
    chat = [event.credential_id, inbound.chat_id]
    params = _room_assignment_params(adapt(received_at), preview, about_user) + chat
    if same_body_keys:
        window = timedelta(seconds=get_setting("DEDUP_WINDOW_SECONDS"))
        params += [*chat, *same_body_keys, adapt(received_at - window), adapt(received_at + window)]
    new_room = {
        "credential_id": event.credential_id,
        "chat_id": inbound.chat_id,
        "channel": inbound.channel,
        "display_name": inbound.display_name,
        "avatar_url": inbound.avatar_url,
        "status": ChatRoom.Status.OPEN,
        "last_message_at": received_at,
        "last_message_preview": preview,
        "unread_count": 1,
        "handler": _new_room_handler(event),
        "handler_since": received_at,
    }
    _insert_row(ChatRoom, new_room, now, connection, params)
    new_message = {
        "direction": Message.Direction.IN,
        "type": inbound.type,
        "data": inbound.data,
        "text": inbound.text,
        "status": Message.Status.RECEIVED,
        "external_id": inbound.external_id,
        "dedup_key": key,
        "extra": inbound.extra,
        "sent_by_user_at": inbound.sent_at,
    }
    new_message = _insert_row(Message, new_message, now, connection, params, filled_in="room_id")
    new_event = {field.attname: getattr(event, field.attname) for field in _fields(WebhookEvent)}
    new_event.update(outcome=WebhookEvent.Outcome.PROCESSED, error="", processed_at=now)
    new_event = _insert_row(
        WebhookEvent, new_event, now, connection, params, filled_in="message_id"
    )
    sql = _ingest_sql(db, tuple(about_user), bool(same_body_keys))
    try:
        if connection.in_atomic_block:
            # Inside the caller's transaction (ATOMIC_REQUESTS, a test): a savepoint, so
            # that a failed statement leaves that transaction usable for the general path.
            with transaction.atomic(using=db), connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
    except IntegrityError:
        # The message id was stored before (a redelivery, maybe a concurrent one): the
        # statement wrote nothing, and the general path records the duplicate.
        return None
    if row is None:
        return None

    # The rows as the ORM gives them back (from_db). The room is the row as updated;
    # psycopg already hands back aware datetimes, as the ORM's own queries get them.
    *room_values, message_id, event_id = row
    room = ChatRoom.from_db(db, _attnames(ChatRoom), room_values)
    message = _saved(Message, db, new_message, message_id, room_id=room.pk)
    message.room = room
    event = _saved(WebhookEvent, db, new_event, event_id, message_id=message.pk)
    event.message = message
    # In autocommit this runs at once: the statement has committed. Inside a
    # transaction it waits for that transaction's commit, as in the general path.
    transaction.on_commit(partial(_message_received, message, room, True), using=db, robust=True)
    return InboundResult(event=event, message=message, created=True)


@cache
def _insert_fields(model):
    """What an INSERT of ``model`` writes, field by field: all concrete fields but the
    primary key, in order, each as ``(field, auto, is_datetime)``: whether it is an
    auto_now or auto_now_add field, whether it holds a datetime."""
    return tuple(
        (
            field,
            bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)),
            isinstance(field, models.DateTimeField),
        )
        for field in model._meta.concrete_fields
        if not field.primary_key
    )


@cache
def _attnames(model):
    """The attribute names of ``model``'s concrete fields, in order (for ``from_db``)."""
    return [field.attname for field in model._meta.concrete_fields]


def _fields(model):
    """The fields of ``_insert_fields``."""
    return [field for field, *_ in _insert_fields(model)]


def _insert_row(model, given, now, connection, params, *, filled_in=None):
    """A new ``model`` row as ``save()`` would insert it; its parameters (those of
    ``_insert_sql``) are appended to ``params``. Returns the row's values by attname.

    A value is ``now`` in auto_now and auto_now_add fields (what their ``pre_save``
    puts there), the one ``given``, or the field's default. Its parameter is converted
    as the ORM converts it: datetimes adapted by the backend
    (``adapt_datetimefield_value``, where DateTimeField's own conversion ends), every
    other value by its field's ``get_db_prep_save`` (JSON wrapped for the driver with
    the field's encoder, bytes as bytea). ``filled_in`` gets no parameter: the
    statement fills it from the row it has just written.
    """
    row = {}
    adapt = connection.ops.adapt_datetimefield_value
    for field, auto, is_datetime in _insert_fields(model):
        name = field.attname
        if auto:
            value = now
        elif name in given:
            value = given[name]
        else:
            value = field.get_default()
        row[name] = value
        if name != filled_in:
            params.append(
                adapt(value) if is_datetime else field.get_db_prep_save(value, connection)
            )
    return row


def _saved(model, db, row, pk, **values):
    """The ``model`` instance of a row just inserted, built by ``from_db`` as the ORM
    builds the rows it reads: the values of ``row``, the primary key ``pk`` and the
    attributes in ``values``."""
    row = {**row, **values, model._meta.pk.attname: pk}
    return model.from_db(db, _attnames(model), [row[name] for name in _attnames(model)])


@cache
def _ingest_sql(db, about_user, same_body):
    """The ingest statement for database ``db``, built once per shape: ``about_user``
    names the room fields the message sets, ``same_body`` is True for a body without a
    message id that is checked against earlier ones.

    Its CTEs, and what each guarantees while other calls run at the same time (READ
    COMMITTED: the statement reads one snapshot, taken when it starts; an UPDATE that
    waited for a row's lock works on the row as the other transaction left it):

    ``updated``: an existing room records the message as ``_room_update`` does (the
    newer message wins the last message, one more unread, open again, the end user's
    details). Its UPDATE locks the row, so the calls for one room are stored one after
    the other. With a message id, a redelivery is stopped by the unique (room,
    dedup_key): the message INSERT below fails, concurrent or not, and the whole
    statement with it. A body without an id has no such guard across the window's
    periods: the earlier same-body messages are looked for, but in the snapshot, which
    does not show one stored by a call that committed meanwhile. So the room is only
    updated while its row is the version the snapshot saw (the same ``xmin``, the
    transaction that wrote the version): every stored message updates its room, so an
    unchanged row means that no message came in since the snapshot, and the lock keeps
    any other out until this one commits. A changed row is left alone.

    ``created``: when no room was updated, a room is inserted with the message already
    recorded on it. If the room exists after all (left alone above, or inserted by a
    concurrent first message), ON CONFLICT DO NOTHING inserts nothing. (INSERT … ON
    CONFLICT DO UPDATE could record every message this way, but would draw a room id
    from the sequence for each one.)

    ``room``: the row one of the two wrote, if any; ``message`` and ``event`` insert a
    row for each room row. The statement returns one row (the room, the message id,
    the event id) when it stored the message, and none when it wrote nothing.
    """
    connection = connections[db]
    quote = connection.ops.quote_name
    room_table = quote(ChatRoom._meta.db_table)
    message_table = quote(Message._meta.db_table)
    room = {field.attname: quote(field.column) for field in ChatRoom._meta.concrete_fields}
    message = {field.attname: quote(field.column) for field in Message._meta.concrete_fields}
    this_room = f"{room['credential_id']} = %s AND {room['chat_id']} = %s"
    unchanged = ""
    if same_body:
        unchanged = (
            f" AND xmin = (SELECT xmin FROM {room_table} WHERE {this_room})"  # noqa: S608
            f" AND NOT EXISTS (SELECT FROM {message_table} "
            f"WHERE {message['room_id']} = {room_table}.{room['id']} "
            f"AND {message['dedup_key']} IN (%s, %s, %s) "
            f"AND {message['created_at']} > %s AND {message['created_at']} < %s)"
        )
    room_columns = ", ".join(room.values())
    event = {field.attname: quote(field.column) for field in WebhookEvent._meta.concrete_fields}
    message_id = f"message.{message['id']}"
    return f"""WITH updated AS (
    UPDATE {room_table} SET {", ".join(_room_assignments(room, about_user))}
    WHERE {this_room}{unchanged}
    RETURNING {room_columns}
), created AS (
    {_insert_sql(connection, ChatRoom, "WHERE NOT EXISTS (SELECT FROM updated)")}
    ON CONFLICT ({room["credential_id"]}, {room["chat_id"]}) DO NOTHING
    RETURNING {room_columns}
), room AS (
    SELECT * FROM updated UNION ALL SELECT * FROM created
), message AS (
    {_insert_sql(connection, Message, "FROM room", room_id=f"room.{room['id']}")}
    RETURNING {message["id"]}
), event AS (
    {_insert_sql(connection, WebhookEvent, "FROM message", message_id=message_id)}
    RETURNING {event["message_id"]}, {event["id"]}
)
SELECT room.*, event.* FROM room, event"""  # noqa: S608 - names from _meta, quoted; values are parameters


def _insert_sql(connection, model, source, **filled_in):
    """``INSERT INTO … SELECT …`` of one row of ``model`` per row of ``source``: the
    columns of ``_insert_row``, and the SQL expressions of ``filled_in``."""
    quote = connection.ops.quote_name
    fields = _fields(model)
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(filled_in.get(field.attname, "%s") for field in fields)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) SELECT {values} {source}"


def _dedup_keys(inbound, body, received_at):
    """The new message's dedup key, and the keys an earlier same-body message may have.

    With R-Chat's message id the key is that id: a redelivery collides on the unique
    (room, dedup_key). Without one, the key is the body's SHA-256 and the number of
    the DEDUP_WINDOW_SECONDS-long period the call came in; an earlier identical body
    can sit in the period before or after (a re-processed call), so all three are
    looked up and the exact distance in time decides.
    """
    if inbound.external_id:
        key = f"id:{inbound.external_id}"
        if len(key) > DEDUP_KEY_MAX:
            key = "id#" + hashlib.sha256(inbound.external_id.encode()).hexdigest()
        return key, ()
    window = get_setting("DEDUP_WINDOW_SECONDS") or 0
    if window <= 0:
        return "", ()
    digest = hashlib.sha256(bytes(body)).hexdigest()
    period = int(received_at.timestamp() // window)
    keys = tuple(f"body:{digest}:{n}" for n in (period - 1, period, period + 1))
    return keys[1], keys


def _earlier_same_body(room_id, keys, received_at):
    window = timedelta(seconds=get_setting("DEDUP_WINDOW_SECONDS"))
    for earlier in Message.objects.filter(room_id=room_id, dedup_key__in=keys):
        if abs(earlier.created_at - received_at) < window:
            return earlier
    return None


def _new_room_handler(event):
    """Who handles a chat room that ``event``'s message creates."""
    handler = getattr(event, "new_room_handler", None)
    if handler is None:
        bot_first = (
            Credential.objects.filter(pk=event.credential_id)
            .values_list("bot_first", flat=True)
            .first()
        )
        handler = ChatRoom.Handler.BOT if bot_first else ChatRoom.Handler.PEOPLE
        event.new_room_handler = handler
    return handler


def _room_touch(event, inbound, at):
    """Lock the chat room of ``inbound`` (creating it) and record the new message on it.

    Returns the room as it is after the update. An older message (re-processed)
    does not replace a newer last message.
    """
    credential_id = event.credential_id
    about_user = _about_user(inbound)
    preview = payloads.inbound_preview(inbound.text)
    room = _room_update(credential_id, inbound.chat_id, at, preview, about_user)
    if room is None:
        # The first message of a chat room. Concurrent first messages all insert;
        # the unique (credential, chat_id) keeps one row and the others wait for it
        # and do nothing, then lock and update that row like any later message.
        ChatRoom.objects.bulk_create(
            [
                ChatRoom(
                    credential_id=credential_id,
                    chat_id=inbound.chat_id,
                    channel=inbound.channel,
                    display_name=inbound.display_name,
                    avatar_url=inbound.avatar_url,
                    handler=_new_room_handler(event),
                    handler_since=at,
                )
            ],
            ignore_conflicts=True,
        )
        room = _room_update(credential_id, inbound.chat_id, at, preview, about_user)
    if room is None:
        raise RuntimeError(f"Chat room {inbound.chat_id!r} disappeared while being created.")
    return room


def _about_user(inbound):
    """The room fields ``inbound`` updates: what R-Chat tells about the end user is the
    latest word on them, and a detail it leaves out keeps the room's."""
    return {
        name: getattr(inbound, name)
        for name in ("channel", "display_name", "avatar_url")
        if getattr(inbound, name)
    }


def _room_update(credential_id, chat_id, at, preview, about_user):
    """Lock the room and record an inbound message on it; the room as updated, or None.

    An older message (re-processed) does not replace a newer last message. Where the
    database has ``UPDATE … RETURNING`` (PostgreSQL, SQLite), one statement both locks
    the row and reads it back, where the ORM takes two round trips (SELECT … FOR
    UPDATE, then UPDATE) and a third to read the row again; this runs on every webhook.
    Other databases (MySQL, Oracle) take the ORM's way.
    """
    db = router.db_for_write(ChatRoom)
    connection = connections[db]
    if connection.vendor in ("postgresql", "sqlite"):
        return _room_update_returning(
            connection, db, credential_id, chat_id, at, preview, about_user
        )
    rooms = ChatRoom.objects.using(db).filter(credential_id=credential_id, chat_id=chat_id)
    room = rooms.select_for_update().first()
    if room is None:
        return None
    newer = room.last_message_at is None or room.last_message_at <= at
    latest = {"last_message_at": at, "last_message_preview": preview} if newer else {}
    rooms.filter(pk=room.pk).update(
        unread_count=F("unread_count") + 1,
        status=ChatRoom.Status.OPEN,
        **latest,
        **about_user,
    )
    room.refresh_from_db()
    return room


def _room_update_returning(connection, db, credential_id, chat_id, at, preview, about_user):
    """``_room_update`` in one ``UPDATE … RETURNING``, plain SQL through Django's cursor.

    The table and column names come from the model's documented ``_meta`` API, quoted
    by the backend; every value is a parameter, the time adapted by the backend as the
    ORM would store it. The row comes back in the model's field order and becomes an
    instance with ``Model.from_db``, as the ORM builds one.
    """
    meta = ChatRoom._meta
    fields = meta.concrete_fields
    quote = connection.ops.quote_name
    column = {field.attname: quote(field.column) for field in fields}
    assignments = _room_assignments(column, about_user)
    params = _room_assignment_params(
        connection.ops.adapt_datetimefield_value(at), preview, about_user
    )
    params += [credential_id, chat_id]
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {column['credential_id']} = %s AND {column['chat_id']} = %s "
        f"RETURNING {', '.join(column.values())}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return ChatRoom.from_db(
        db, list(column), [_db_value(f, v) for f, v in zip(fields, row, strict=True)]
    )


def _room_assignments(column, about_user):
    """The SET list recording an inbound message on its room (``column``: quoted column
    names by attname); its parameters are ``_room_assignment_params``."""
    last_at, last_preview = column["last_message_at"], column["last_message_preview"]
    # Every SET expression sees the row as it was, so both CASEs test the old time.
    newer = f"({last_at} IS NULL OR {last_at} <= %s)"
    return [
        f"{last_at} = CASE WHEN {newer} THEN %s ELSE {last_at} END",
        f"{last_preview} = CASE WHEN {newer} THEN %s ELSE {last_preview} END",
        f"{column['unread_count']} = {column['unread_count']} + 1",
        f"{column['status']} = %s",
        *(f"{column[name]} = %s" for name in about_user),
    ]


def _room_assignment_params(at, preview, about_user):
    """The parameters of ``_room_assignments``; ``at`` already adapted by the backend."""
    return [at, at, at, preview, ChatRoom.Status.OPEN, *about_user.values()]


def _db_value(field, value):
    # SQLite hands timestamps back naive (text or datetime), in UTC; psycopg aware.
    if value is None or not isinstance(field, models.DateTimeField):
        return value
    if isinstance(value, str):
        value = parse_datetime(value)
    if settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def _event_save(event, outcome, *, message=None, error=""):
    event.outcome = outcome
    event.message = message
    event.error = payloads.inbound_clean(str(error))[:4000]
    event.processed_at = None if outcome == WebhookEvent.Outcome.FAILED else timezone.now()
    event.save()


def _event_finish(event, outcome, *, error=""):
    _event_save(event, outcome, error=error)
    if outcome == WebhookEvent.Outcome.FAILED:
        logger.warning("Webhook event %s failed: %s", event.pk, event.error)
    return InboundResult(event=event)


def _event_forget_rollback(event, *, live):
    # A rolled-back transaction leaves the Python object as if its writes had stuck:
    # a new event gets a primary key that no longer exists.
    if live:
        event.pk = None  # saved again, it is inserted anew
    event.message = None


def _message_received(message, room, created):
    """After the commit: tell the site, and queue the bot hook for a new message."""
    for receiver, response in signals.message_received.send_robust(
        sender=Message, message=message, room=room, created=created
    ):
        if isinstance(response, Exception):
            logger.error(
                "message_received receiver %r failed for message %s",
                receiver,
                message.pk,
                exc_info=response,
            )
    if created and room.handler == ChatRoom.Handler.BOT:
        try:
            broker.publish(broker.BOT_REPLY, message.pk)
        except Exception as exc:  # the message is stored; people see it in the inbox
            logger.error(
                "Could not ask the bot to answer message %s (%s: %s)",
                message.pk,
                type(exc).__name__,
                exc,
            )
    if created and get_setting("ON_MESSAGE"):
        try:
            broker.publish(broker.MESSAGE_HOOK, message.pk)
        except Exception as exc:  # the message is stored; only the hook is lost
            logger.error(
                "Could not queue RCHAT['ON_MESSAGE'] for message %s (%s: %s)",
                message.pk,
                type(exc).__name__,
                exc,
            )


def _credential_touch(credential_id, *, force=False):
    """Record that a webhook came for the credential (at most once a minute per process)."""
    now = time.monotonic()
    last = _last_webhook_written.get(credential_id)
    if not force and last is not None and now - last < LAST_WEBHOOK_WRITE_SECONDS:
        return
    _last_webhook_written[credential_id] = now
    try:
        # update(), not save(): no signal, so the credential cache is not dropped.
        Credential.objects.filter(pk=credential_id).update(last_webhook_at=timezone.now())
    except DatabaseError:
        logger.warning("Could not record last_webhook_at for credential %s", credential_id)
