"""Retention: services.retention_purge, the rchat_purge command and the purge task.

Old webhook events and delivery attempts go, a batch at a time; failed ones stay twice
as long, the attempts of a message still being delivered whatever their age, and
messages always. Runs on SQLite and on PostgreSQL (DATABASE_URL=postgres://…).
"""

import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from rchat import services, tasks
from rchat.exceptions import RChatConfigurationError
from rchat.management.commands import rchat_purge
from rchat.models import DeliveryAttempt, Message, WebhookEvent
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def event(age_days, outcome=WebhookEvent.Outcome.PROCESSED, message=None):
    """A webhook event received ``age_days`` days before NOW."""
    row = WebhookEvent.objects.create(body=b"{}", outcome=outcome, message=message)
    # received_at is set on insert (auto_now_add); age it afterwards.
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=NOW - timedelta(days=age_days))
    return row


def attempt(message, age_days, outcome=DeliveryAttempt.Outcome.SENT):
    """A try at delivering ``message``, ``age_days`` days before NOW."""
    return DeliveryAttempt.objects.create(
        message=message, started_at=NOW - timedelta(days=age_days), outcome=outcome
    )


def outbound(status):
    return MessageFactory(direction=Message.Direction.OUT, status=status)


def left(model):
    return set(model.objects.values_list("pk", flat=True))


@pytest.fixture(autouse=True)
def retention(settings):
    """The documented defaults, whatever the project sets."""
    settings.RCHAT = {
        **settings.RCHAT,
        "WEBHOOK_EVENT_RETENTION_DAYS": 90,
        "DELIVERY_ATTEMPT_RETENTION_DAYS": 90,
    }
    return settings


# --- What goes and what stays ----------------------------------------------------------


def test_webhook_events_older_than_the_retention_go_and_their_messages_stay():
    message = MessageFactory()
    old = [event(91, message=message), event(400, WebhookEvent.Outcome.DUPLICATE)]
    old.append(event(120, WebhookEvent.Outcome.PING))
    recent = event(89, message=message)

    result = services.retention_purge(now=NOW)

    assert left(WebhookEvent) == {recent.pk}
    assert result.webhook_events == len(old)
    assert Message.objects.filter(pk=message.pk).exists()


def test_a_failed_webhook_event_is_kept_twice_the_retention_for_re_processing():
    kept = [
        event(150, WebhookEvent.Outcome.FAILED),
        event(179, WebhookEvent.Outcome.RECEIVED),  # processing cut short: re-processable
    ]
    gone = [event(181, WebhookEvent.Outcome.FAILED), event(500, WebhookEvent.Outcome.RECEIVED)]

    result = services.retention_purge(now=NOW)

    assert left(WebhookEvent) == {row.pk for row in kept}
    assert result.webhook_events == len(gone)


def test_attempts_of_a_message_still_being_delivered_are_kept_whatever_their_age():
    queued, sending, sent = (outbound(s) for s in ("queued", "sending", "sent"))
    kept = [attempt(queued, 1000, "retry"), attempt(sending, 365, "retry"), attempt(sent, 30)]
    attempt(sent, 91, "retry")
    attempt(sent, 200)

    result = services.retention_purge(now=NOW)

    assert left(DeliveryAttempt) == {row.pk for row in kept}
    assert result.delivery_attempts == 2
    assert Message.objects.filter(pk__in=[queued.pk, sending.pk, sent.pk]).count() == 3


def test_the_attempts_of_a_failed_message_are_kept_twice_the_retention():
    failed = outbound("failed")
    kept = attempt(failed, 179, "failed")
    attempt(failed, 181, "retry")

    services.retention_purge(now=NOW)

    assert left(DeliveryAttempt) == {kept.pk}


def test_none_keeps_a_table_for_ever(retention):
    retention.RCHAT = {**retention.RCHAT, "WEBHOOK_EVENT_RETENTION_DAYS": None}
    ancient = event(5000)
    attempt(outbound("sent"), 5000)

    result = services.retention_purge(now=NOW)

    assert left(WebhookEvent) == {ancient.pk}
    assert not DeliveryAttempt.objects.exists()
    assert (result.webhook_event_days, result.webhook_events) == (None, 0)
    assert (result.delivery_attempt_days, result.delivery_attempts) == (90, 1)


def test_days_overrides_both_settings_and_failed_rows_keep_twice_as_long(retention):
    retention.RCHAT = {**retention.RCHAT, "WEBHOOK_EVENT_RETENTION_DAYS": None}
    sent = outbound("sent")
    stays = [event(9), event(19, WebhookEvent.Outcome.FAILED), attempt(sent, 9)]
    event(11)
    event(21, WebhookEvent.Outcome.FAILED)
    attempt(sent, 11)

    result = services.retention_purge(now=NOW, days=10)

    assert left(WebhookEvent) | left(DeliveryAttempt) == {row.pk for row in stays}
    assert (result.webhook_event_days, result.delivery_attempt_days) == (10, 10)


def test_a_retention_longer_than_the_calendar_deletes_nothing():
    old = event(100_000)

    result = services.retention_purge(now=NOW, days=999_999_999)

    assert left(WebhookEvent) == {old.pk}
    assert result.batches == 0


# --- Dry run and batches -------------------------------------------------------------


def test_a_dry_run_counts_what_would_go_and_deletes_nothing():
    events = [event(100), event(100), event(10), event(150, WebhookEvent.Outcome.FAILED)]
    attempts = [attempt(outbound("sent"), 100), attempt(outbound("queued"), 100)]
    reported = []

    result = services.retention_purge(
        now=NOW, dry_run=True, progress=lambda *step: reported.append(step)
    )

    assert (result.webhook_events, result.delivery_attempts, result.batches) == (2, 1, 0)
    assert result.dry_run is True
    assert reported == [("webhook_events", 2), ("delivery_attempts", 1)]
    assert left(WebhookEvent) == {row.pk for row in events}
    assert left(DeliveryAttempt) == {row.pk for row in attempts}


def test_batches_smaller_than_the_data_delete_it_all_in_several_batches():
    sent = outbound("sent")
    # Kept rows among the old ones: each batch carries on after the last id it deleted.
    failed = []
    for _ in range(7):
        event(100)
        failed.append(event(100, WebhookEvent.Outcome.FAILED))
    for _ in range(5):
        attempt(sent, 100)
    reported = []

    result = services.retention_purge(
        now=NOW, batch_size=3, progress=lambda *step: reported.append(step)
    )

    assert left(WebhookEvent) == {row.pk for row in failed}
    assert not DeliveryAttempt.objects.exists()
    assert (result.webhook_events, result.delivery_attempts) == (7, 5)
    assert result.batches == 3 + 2
    assert reported == [
        ("webhook_events", 3),
        ("webhook_events", 6),
        ("webhook_events", 7),
        ("delivery_attempts", 3),
        ("delivery_attempts", 5),
    ]


def test_a_batch_that_fills_exactly_ends_with_nothing_left():
    for _ in range(6):
        event(100)

    result = services.retention_purge(now=NOW, batch_size=3)

    assert (result.webhook_events, result.batches) == (6, 2)
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_each_batch_is_committed_before_the_next_one_starts():
    for _ in range(5):
        event(100)
    seen = []

    def progress(table, count):
        # Between batches no transaction is open, and the rows are gone for good.
        seen.append((connection.in_atomic_block, WebhookEvent.objects.count()))

    services.retention_purge(now=NOW, batch_size=2, progress=progress)

    assert seen == [(False, 3), (False, 1), (False, 0)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_another_connection_sees_each_batch_gone_while_the_purge_goes_on():
    for _ in range(4):
        event(100)
    seen = []

    def count_elsewhere(table, count):
        def count_rows():
            try:
                seen.append(WebhookEvent.objects.count())
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=count_rows)
        thread.start()
        thread.join()

    services.retention_purge(now=NOW, batch_size=2, progress=count_elsewhere)

    assert seen == [2, 0]


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -5, "90", 1.5, True])
def test_a_retention_setting_that_is_not_a_number_of_days_is_an_error_naming_it(retention, value):
    retention.RCHAT = {**retention.RCHAT, "DELIVERY_ATTEMPT_RETENTION_DAYS": value}
    old = event(100)

    with pytest.raises(
        RChatConfigurationError, match=r'RCHAT\["DELIVERY_ATTEMPT_RETENTION_DAYS"\]'
    ):
        services.retention_purge(now=NOW)

    assert left(WebhookEvent) == {old.pk}


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"days": -1}, {"batch_size": 0}, {"days": "7"}])
def test_days_and_batch_size_below_one_are_refused(kwargs):
    with pytest.raises(ValueError, match="1 or more"):
        services.retention_purge(now=NOW, **kwargs)


# --- The command -----------------------------------------------------------------------


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command("rchat_purge", *args, stdout=out)
    return out.getvalue().splitlines()


def test_the_command_reports_each_batch_and_ends_with_a_one_line_summary():
    for _ in range(3):
        event(100)
    attempt(outbound("sent"), 100)

    lines = run("--batch-size", "2")

    assert lines[:3] == [
        "webhook events: 2 deleted…",
        "webhook events: 3 deleted…",
        "delivery attempts: 1 deleted…",
    ]
    assert lines[-1].startswith(
        "Deleted 3 webhook event(s) older than 90 days (failed: 180) and 1 delivery "
        "attempt(s) older than 90 days (failed: 180) in 3 batch(es), "
    )
    assert len(lines) == 4
    assert not WebhookEvent.objects.exists()


def test_the_command_dry_run_says_what_would_go_and_deletes_nothing():
    event(40)
    event(10)

    lines = run("--dry-run", "--days", "30")

    assert lines == [
        "webhook events: 1 to delete",
        "delivery attempts: 0 to delete",
        "Would delete 1 webhook event(s) older than 30 days (failed: 60) and 0 delivery "
        "attempt(s) older than 30 days (failed: 60) (dry run: nothing deleted).",
    ]
    assert WebhookEvent.objects.count() == 2


def test_the_command_says_which_table_is_kept_for_ever(retention):
    retention.RCHAT = {**retention.RCHAT, "DELIVERY_ATTEMPT_RETENTION_DAYS": None}

    lines = run()

    assert lines[-1].startswith(
        "Deleted 0 webhook event(s) older than 90 days (failed: 180) and no delivery "
        "attempt(s) (kept for ever) in 0 batch(es)"
    )


@pytest.mark.parametrize(
    "args, reason",
    [(["--days", "0"], "--days must be"), (["--batch-size", "-3"], "batch size must be")],
)
def test_the_command_refuses_bad_input_in_one_line_and_deletes_nothing(args, reason):
    old = event(100)

    with pytest.raises(CommandError, match=reason) as caught:
        run(*args)

    assert "\n" not in str(caught.value)
    assert caught.value.returncode == 1
    assert left(WebhookEvent) == {old.pk}


def test_the_command_refuses_a_bad_setting_naming_it(retention):
    retention.RCHAT = {**retention.RCHAT, "WEBHOOK_EVENT_RETENTION_DAYS": "ninety"}

    with pytest.raises(CommandError, match=r'RCHAT\["WEBHOOK_EVENT_RETENTION_DAYS"\]'):
        run()


def test_the_command_exits_non_zero_with_one_line_on_stderr(capsys):
    with pytest.raises(SystemExit) as exit_:
        rchat_purge.Command().run_from_argv(["manage.py", "rchat_purge", "--days", "-1"])

    assert exit_.value.code == 1
    # (System check warnings, if any, come first.)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "CommandError: --days must be a whole number, 1 or more."


@pytest.mark.django_db(transaction=True)  # run_from_argv closes the connection at the end
def test_the_command_exits_zero_when_done(capsys):
    event(100)

    rchat_purge.Command().run_from_argv(["manage.py", "rchat_purge"])

    assert capsys.readouterr().out.splitlines()[-1].startswith("Deleted 1 webhook event(s)")
    assert not WebhookEvent.objects.exists()


# --- The task --------------------------------------------------------------------------


def test_the_beat_task_purges_with_the_settings_and_returns_the_counts():
    event(100)
    event(100, WebhookEvent.Outcome.FAILED)
    attempt(outbound("sent"), 100)

    summary = tasks.purge.apply().get()

    assert {k: summary[k] for k in ("webhook_events", "delivery_attempts", "batches")} == {
        "webhook_events": 1,
        "delivery_attempts": 1,
        "batches": 2,
    }
    assert (summary["webhook_event_days"], summary["dry_run"]) == (90, False)
    assert WebhookEvent.objects.get().outcome == "failed"
