from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import services
from rchat.models import WebhookEvent

REPROCESSABLE = (WebhookEvent.Outcome.FAILED, WebhookEvent.Outcome.RECEIVED)


class Command(BaseCommand):
    help = (
        "Process failed R-Chat webhook calls again, e.g. after a fix: every failed event "
        "(the default, or --failed), or the events named with --id."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--failed",
            action="store_true",
            help="Every webhook event whose outcome is failed (the default without --id).",
        )
        parser.add_argument(
            "--id",
            dest="ids",
            type=int,
            action="append",
            default=[],
            metavar="N",
            help="The webhook event with this id (may be given more than once).",
        )

    def handle(self, *args, failed, ids, **options):
        if ids:
            found = WebhookEvent.objects.in_bulk(ids)
            missing = [str(pk) for pk in ids if pk not in found]
            if missing:
                raise CommandError(
                    _("No webhook event with id %(ids)s.") % {"ids": ", ".join(missing)}
                )
            done = [str(pk) for pk in ids if found[pk].outcome not in REPROCESSABLE]
            if done:
                raise CommandError(
                    _("Webhook event %(ids)s did not fail; only failed events are re-processed.")
                    % {"ids": ", ".join(done)}
                )
        events = WebhookEvent.objects.none()
        if failed or not ids:
            events = WebhookEvent.objects.filter(outcome__in=REPROCESSABLE)
        if ids:
            events = events | WebhookEvent.objects.filter(pk__in=ids)
        pks = list(events.order_by("pk").values_list("pk", flat=True))

        total = len(pks)
        counts = {}
        self.stdout.write(_("Re-processing %(total)d webhook event(s)…") % {"total": total})
        for position, pk in enumerate(pks, start=1):
            # Read one by one: bodies can be large, and an event may have been
            # re-processed by someone else since the list was made.
            event = WebhookEvent.objects.filter(pk=pk, outcome__in=REPROCESSABLE).first()
            if event is None:
                outcome, detail = "skipped", _("no longer failed")
            else:
                try:
                    result = services.webhook_event_reprocess(event=event)
                except ValueError as exc:
                    outcome, detail = "skipped", str(exc)
                else:
                    outcome = result.outcome
                    detail = result.event.error if outcome == WebhookEvent.Outcome.FAILED else ""
                    if result.message is not None:
                        detail = _("message #%(id)s") % {"id": result.message.pk}
            counts[outcome] = counts.get(outcome, 0) + 1
            line = _("[%(position)d/%(total)d] event #%(id)s: %(outcome)s") % {
                "position": position,
                "total": total,
                "id": pk,
                "outcome": outcome,
            }
            self.stdout.write(f"{line} ({detail})" if detail else line)

        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        self.stdout.write(
            _("Re-processed %(total)d webhook event(s): %(summary)s.")
            % {"total": total, "summary": summary or _("nothing to do")}
        )
