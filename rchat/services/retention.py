"""Retention: webhook events and delivery attempts past their time are deleted.

Both tables grow with the traffic, a row per webhook call and a row per try to R-Chat,
and are worth little after a few months: what they led to is in the messages, which
rchat never deletes. ``retention_purge`` (the ``rchat_purge`` command and the daily
``rchat.tasks.purge``) deletes what is older than ``RCHAT["WEBHOOK_EVENT_RETENTION_DAYS"]``
and ``RCHAT["DELIVERY_ATTEMPT_RETENTION_DAYS"]`` (None keeps a table for ever).

What stays longer than its age says:

- **Delivery attempts of a message still queued or sending** are kept whatever their
  age: they are the history of a delivery that is not over (why it waits, what the
  sweep took back), and an operator looking at a stuck message needs all of it.
- **Failed webhook events** (and those whose processing was cut short) are kept twice
  the retention, as are **the attempts of a failed message**. They are what an operator
  may still act on, re-processing an event after a fix (``rchat_reprocess``) or sending
  a message again, so they get a whole extra retention period for it. Twice as long and
  not for ever: the purge runs unattended, and a failure that repeats (a payload R-Chat
  keeps sending that rchat cannot store) must not make the table grow without bound.

Rows go a batch at a time, each batch its own short transaction (select the next ids
in id order, delete them), so a purge of millions of rows takes no long lock, holds no
huge transaction, and lets webhooks and deliveries go on meanwhile; an interrupted
purge has kept what it deleted and the next one carries on. Each run reads each table
once, in id order from the oldest row.
"""

import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.db import router, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from ..conf import get_setting
from ..exceptions import RChatConfigurationError
from ..models import DeliveryAttempt, Message, WebhookEvent
from .inbound import REPROCESSABLE

#: Rows deleted per statement (and per transaction).
BATCH_SIZE = 5000
#: Failed rows (events to re-process, attempts of a failed message) are kept this many
#: times the retention.
FAILED_KEPT_FACTOR = 2
#: Messages whose delivery attempts are kept whatever their age: the delivery goes on.
UNFINISHED = (Message.Status.QUEUED, Message.Status.SENDING)


@dataclass
class PurgeResult:
    """What a purge deleted (or, with ``dry_run``, would delete), per table.

    ``webhook_event_days`` and ``delivery_attempt_days`` are the retention applied
    (None: the table is kept for ever and was not touched); failed rows are kept
    ``FAILED_KEPT_FACTOR`` times as long. ``batches`` counts the DELETE statements.
    The task returns ``as_dict()``, for logs.
    """

    webhook_events: int = 0
    delivery_attempts: int = 0
    webhook_event_days: int | None = None
    delivery_attempt_days: int | None = None
    batches: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def as_dict(self):
        return asdict(self)


def retention_purge(*, now=None, days=None, dry_run=False, batch_size=None, progress=None):
    """Delete webhook events and delivery attempts past their retention (see above).

    ``days`` overrides both settings for this run. With ``dry_run`` nothing is deleted
    and the result counts what would be. ``progress(table, count)`` is called after each
    batch with the table's name (``"webhook_events"``, ``"delivery_attempts"``) and how
    many of its rows are deleted so far (in a dry run, once, with the count).

    Raises ``ValueError`` for a ``days`` or ``batch_size`` below 1, and
    ``RChatConfigurationError`` for a retention setting that is not a number of days.
    """
    started = time.monotonic()
    if days is not None:
        days = _whole_days(days, lambda: gettext("--days must be a whole number, 1 or more."))
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(gettext("The batch size must be a whole number, 1 or more."))
    now = now or timezone.now()
    result = PurgeResult(
        webhook_event_days=_retention_days("WEBHOOK_EVENT_RETENTION_DAYS", days),
        delivery_attempt_days=_retention_days("DELIVERY_ATTEMPT_RETENTION_DAYS", days),
        dry_run=dry_run,
    )
    tables = (
        ("webhook_events", result.webhook_event_days, _old_webhook_events),
        ("delivery_attempts", result.delivery_attempt_days, _old_delivery_attempts),
    )
    for table, kept_days, old_rows in tables:
        before = None if kept_days is None else _days_before(now, kept_days)
        if before is None:  # kept for ever, or nothing can be that old
            continue
        rows = old_rows(
            before=before, failed_before=_days_before(now, kept_days * FAILED_KEPT_FACTOR)
        )

        def report(count, table=table):
            if progress is not None:
                progress(table, count)

        if dry_run:
            count = rows.count()
            report(count)
        else:
            count, batches = _delete_in_batches(rows, batch_size=batch_size, on_batch=report)
            result.batches += batches
        setattr(result, table, count)
    result.seconds = round(time.monotonic() - started, 3)
    return result


# --- What goes -----------------------------------------------------------------------
# Each returns the rows older than ``before`` less those kept (the module docstring),
# on the database rchat writes to: the ids are read where they are deleted, never on
# a replica that may lag.


def _old_webhook_events(*, before, failed_before):
    keep = Q(outcome__in=REPROCESSABLE)
    if failed_before is not None:
        keep &= Q(received_at__gte=failed_before)
    db = router.db_for_write(WebhookEvent)
    return WebhookEvent.objects.using(db).filter(received_at__lt=before).exclude(keep)


def _old_delivery_attempts(*, before, failed_before):
    failed = Q(message__status=Message.Status.FAILED)
    if failed_before is not None:
        failed &= Q(started_at__gte=failed_before)
    keep = Q(message__status__in=UNFINISHED) | failed
    db = router.db_for_write(DeliveryAttempt)
    return DeliveryAttempt.objects.using(db).filter(started_at__lt=before).exclude(keep)


def _delete_in_batches(rows, *, batch_size, on_batch):
    """Delete ``rows`` in id order, ``batch_size`` at a time; returns (deleted, batches).

    A batch selects the next ids after the previous batch's last one (so rows kept
    among the old ones are read once, not once per batch), then deletes that id range
    with the same conditions, which the database checks again at the DELETE: a row
    that stopped qualifying meanwhile (a failed message sent again) stays.
    """
    deleted = batches = 0
    last_id = 0
    while True:
        with transaction.atomic(using=rows.db):
            ids = list(
                rows.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            count, _ = rows.filter(pk__gte=ids[0], pk__lte=ids[-1]).delete()
        batches += 1
        deleted += count
        last_id = ids[-1]
        on_batch(deleted)
        if len(ids) < batch_size:
            break
    return deleted, batches


# --- Settings ------------------------------------------------------------------------


def _retention_days(name, override):
    if override is not None:
        return override
    value = get_setting(name)
    if value is None:
        return None
    return _whole_days(
        value,
        lambda: (
            f'RCHAT["{name}"] = {value!r}: give a whole number of days, 1 or more, or '
            "None to keep them for ever."
        ),
        error=RChatConfigurationError,
    )


def _whole_days(value, message, *, error=ValueError):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(message())
    return value


def _days_before(now, days):
    """``now`` less ``days`` days; None when that is before the calendar begins (nothing
    is that old)."""
    try:
        return now - timedelta(days=days)
    except OverflowError:
        return None
