from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import services
from rchat.exceptions import RChatConfigurationError
from rchat.services.retention import FAILED_KEPT_FACTOR


class Command(BaseCommand):
    help = (
        "Delete webhook events and delivery attempts older than RCHAT's retention "
        '(RCHAT["WEBHOOK_EVENT_RETENTION_DAYS"], RCHAT["DELIVERY_ATTEMPT_RETENTION_DAYS"]), '
        "a batch at a time. Failed ones are kept twice as long, the attempts of a message "
        "still being delivered whatever their age; messages are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--days",
            type=int,
            metavar="N",
            help="Keep N days of both, instead of the settings (failed ones 2N days).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help="Rows deleted per statement and transaction (default 5000).",
        )

    def handle(self, *args, dry_run, days, batch_size, **options):
        labels = {
            "webhook_events": _("webhook events"),
            "delivery_attempts": _("delivery attempts"),
        }

        def progress(table, count):
            line = (
                _("%(table)s: %(count)d to delete")
                if dry_run
                else _("%(table)s: %(count)d deleted…")
            )
            self.stdout.write(line % {"table": labels[table], "count": count})

        try:
            result = services.retention_purge(
                days=days, dry_run=dry_run, batch_size=batch_size, progress=progress
            )
        except (ValueError, RChatConfigurationError) as exc:
            raise CommandError(str(exc)) from exc

        parts = [
            _describe(result.webhook_events, result.webhook_event_days, _("webhook event(s)")),
            _describe(
                result.delivery_attempts, result.delivery_attempt_days, _("delivery attempt(s)")
            ),
        ]
        if dry_run:
            summary = _("Would delete %(parts)s (dry run: nothing deleted).")
        else:
            summary = _("Deleted %(parts)s in %(batches)d batch(es), %(seconds).1f s.")
        self.stdout.write(
            summary
            % {
                "parts": _("%(first)s and %(second)s") % {"first": parts[0], "second": parts[1]},
                "batches": result.batches,
                "seconds": result.seconds,
            }
        )


def _describe(count, days, what):
    if days is None:
        return _("no %(what)s (kept for ever)") % {"what": what}
    return _("%(count)d %(what)s older than %(days)d days (failed: %(failed)d)") % {
        "count": count,
        "what": what,
        "days": days,
        "failed": days * FAILED_KEPT_FACTOR,
    }
