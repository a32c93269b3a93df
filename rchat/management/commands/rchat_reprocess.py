from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import services


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
        try:
            total, results = services.webhook_events_reprocess(ids=ids, failed=failed)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        counts = {}
        self.stdout.write(_("Re-processing %(total)d webhook event(s)…") % {"total": total})
        for position, done in enumerate(results, start=1):
            counts[done.outcome] = counts.get(done.outcome, 0) + 1
            line = _("[%(position)d/%(total)d] event #%(id)s: %(outcome)s") % {
                "position": position,
                "total": total,
                "id": done.event_id,
                "outcome": done.outcome,
            }
            self.stdout.write(f"{line} ({done.detail})" if done.detail else line)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        self.stdout.write(
            _("Re-processed %(total)d webhook event(s): %(summary)s.")
            % {"total": total, "summary": summary or _("nothing to do")}
        )
