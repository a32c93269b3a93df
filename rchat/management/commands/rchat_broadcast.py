"""``manage.py rchat_broadcast``: one message to many chat rooms; follow it, or cancel it."""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import payloads, selectors, services
from rchat.exceptions import InvalidMessage
from rchat.models import Broadcast, ChatRoom, Credential

#: Seconds between two looks at the broadcast with --wait.
POLL_INTERVAL = 1.0
#: The exit status after Ctrl-C, as a shell reports it.
INTERRUPTED = 130

CHANNELS = [value for value in ChatRoom.Channel.values if value]


def one_line(text):
    return " ".join(str(text).split())


def _pause(seconds):
    time.sleep(seconds)


def summary(broadcast_id, progress):
    """The one-line outcome: "Broadcast #7: sent 95, failed 1, skipped 2, cancelled 0."."""
    line = _(
        "Broadcast #%(id)d: sent %(sent)d, failed %(failed)d, skipped %(skipped)d, "
        "cancelled %(cancelled)d"
    ) % {
        "id": broadcast_id,
        "sent": progress.sent,
        "failed": progress.failed,
        "skipped": progress.skipped,
        "cancelled": progress.cancelled,
    }
    if progress.pending:
        line += _(" (still to send: %(pending)d)") % {"pending": progress.pending}
    return line + "."


class Command(BaseCommand):
    help = (
        "Send one message to many R-Chat chat rooms: every open room (--all-open), those "
        "of a credential or channel, or rooms by id. Workers send the messages within each "
        "credential's rate limit; --wait follows them until all are sent. --cancel ID "
        "stops what is not sent yet."
    )

    def add_arguments(self, parser):
        rooms = parser.add_argument_group("which chat rooms")
        rooms.add_argument(
            "--all-open", action="store_true", help="Every open chat room (of every credential)."
        )
        rooms.add_argument(
            "--credential",
            action="append",
            default=[],
            metavar="NAME",
            help="Open chat rooms of this credential (repeat for several).",
        )
        rooms.add_argument(
            "--channel",
            action="append",
            default=[],
            choices=CHANNELS,
            help="Open chat rooms of this channel (repeat for several).",
        )
        rooms.add_argument(
            "--room-ids",
            default="",
            metavar="ID,ID,…",
            help="These chat rooms, by id (closed or unknown ones are skipped and counted).",
        )
        message = parser.add_argument_group("the message")
        message.add_argument("--text", help="A text message.")
        message.add_argument(
            "--type", choices=payloads.OUTBOUND_TYPES, help="Another message type, with --data."
        )
        message.add_argument(
            "--data",
            help='JSON for --type (e.g. \'{"latitude": 13.75, "longitude": 100.5}\'); a bare '
            "URL for image/file; the text for text.",
        )
        message.add_argument("--name", default="", help="A name for lists (optional).")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check the message and count the chat rooms; queue nothing.",
        )
        parser.add_argument(
            "--wait", action="store_true", help="Follow the sending until nothing is left."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="With --wait, stop waiting after this many seconds (default: no limit).",
        )
        others = parser.add_argument_group("an existing broadcast")
        others.add_argument("--cancel", type=int, metavar="ID", help="Cancel broadcast ID.")
        others.add_argument(
            "--status", type=int, metavar="ID", help="Show broadcast ID (with --wait: follow it)."
        )

    def handle(self, *args, **options):
        if options["timeout"] is not None and options["timeout"] <= 0:
            raise CommandError(_("--timeout must be a positive number of seconds."))
        if options["cancel"] is not None and options["status"] is not None:
            raise CommandError(_("Give --cancel or --status, not both."))
        if options["cancel"] is not None:
            return self._cancel(self._broadcast(options["cancel"]))
        if options["status"] is not None:
            broadcast = self._broadcast(options["status"])
            if options["wait"]:
                self._wait(broadcast.pk, options["timeout"])
            else:
                self.stdout.write(summary(broadcast.pk, self._progress(broadcast.pk)))
            return None
        rooms = self._rooms(options)
        type, data = self._message(options)
        if options["dry_run"]:
            return self._dry_run(rooms, type, data)
        started = []

        def queued(broadcast, done, total):
            started[:] = [broadcast.pk]
            if done and options["verbosity"] >= 1:
                self.stdout.write(
                    "  "
                    + _("queued %(done)d of %(total)d chat rooms") % {"done": done, "total": total}
                )

        try:
            broadcast = services.broadcast_create(
                rooms=rooms, type=type, data=data, name=options["name"], progress=queued
            )
        except InvalidMessage as exc:
            raise CommandError(_("Not queued: %(reason)s") % {"reason": one_line(exc)}) from exc
        except KeyboardInterrupt:
            if not started:
                raise CommandError(
                    _("Interrupted: nothing was queued."), returncode=INTERRUPTED
                ) from None
            progress = selectors.broadcast_progress(started[0])
            raise CommandError(
                _(
                    "Interrupted: %(queued)d messages queued before Ctrl-C are sent, the other "
                    "chat rooms were not reached. %(summary)s"
                )
                % {"queued": progress.messages, "summary": summary(started[0], progress)},
                returncode=INTERRUPTED,
            ) from None
        self.stdout.write(
            _("Queued broadcast #%(id)d to %(count)d chat rooms.")
            % {"id": broadcast.pk, "count": broadcast.rooms_total - broadcast.skipped}
        )
        self._skipped(broadcast)
        if options["wait"]:
            self._wait(broadcast.pk, options["timeout"])
        else:
            self.stdout.write(summary(broadcast.pk, self._progress(broadcast.pk)))
        return None

    # --- input ---

    def _rooms(self, options):
        """The chat rooms asked for: a list of ids, or a queryset of open rooms."""
        ids_text = options["room_ids"].strip()
        chosen = options["all_open"] or options["credential"] or options["channel"]
        if ids_text and chosen:
            raise CommandError(
                _("--room-ids cannot be combined with --all-open, --credential or --channel.")
            )
        if ids_text:
            try:
                ids = [int(part) for part in ids_text.replace(" ", "").split(",") if part]
            except ValueError:
                raise CommandError(
                    _("--room-ids takes chat room ids separated by commas, e.g. 12,15,20.")
                ) from None
            if not ids:
                raise CommandError(_("--room-ids names no chat room."))
            return ids
        if not chosen:
            raise CommandError(
                _("Choose the chat rooms: --all-open, --credential, --channel or --room-ids.")
            )
        rooms = ChatRoom.objects.filter(status=ChatRoom.Status.OPEN)
        if options["credential"]:
            names = set(options["credential"])
            found = set(Credential.objects.filter(name__in=names).values_list("name", flat=True))
            if names - found:
                known = ", ".join(Credential.objects.values_list("name", flat=True)) or "none"
                raise CommandError(
                    _("No credential named %(names)s (known: %(known)s).")
                    % {"names": ", ".join(sorted(names - found)), "known": known}
                )
            rooms = rooms.filter(credential__name__in=names)
        if options["channel"]:
            rooms = rooms.filter(channel__in=options["channel"])
        return rooms

    def _message(self, options):
        text, type, raw = options["text"], options["type"], options["data"]
        if text is not None and (type or raw is not None):
            raise CommandError(_("Give --text, or --type with --data, not both."))
        if text is not None:
            return "text", text
        if not type or raw is None:
            raise CommandError(_("Give the message: --text, or --type with --data."))
        if type == "text":
            return type, raw
        try:
            return type, json.loads(raw)
        except (ValueError, RecursionError) as exc:
            if type in ("image", "file"):
                return type, raw  # a bare URL; the validation says if it is not one
            raise CommandError(
                _("--data must be JSON for a %(type)s message: %(error)s.")
                % {"type": type, "error": exc}
            ) from exc

    def _broadcast(self, pk):
        try:
            return selectors.broadcast_get(pk=pk)
        except Broadcast.DoesNotExist:
            raise CommandError(_("No broadcast #%(id)d.") % {"id": pk}) from None

    # --- what it does ---

    def _dry_run(self, rooms, type, data):
        try:
            payloads.outbound_validate(type, data)
        except InvalidMessage as exc:
            raise CommandError(_("Not valid: %(reason)s") % {"reason": one_line(exc)}) from exc
        audience = selectors.broadcast_audience(rooms=rooms)
        if not audience.total:
            raise CommandError(_("No chat room matches."))
        self.stdout.write(
            _(
                "Dry run: %(open)d of %(total)d chat rooms would get the message "
                "(skipped: %(closed)d closed, %(missing)d not found). Nothing was queued."
            )
            % {
                "open": audience.open,
                "total": audience.total,
                "closed": audience.closed,
                "missing": audience.not_found,
            }
        )
        if audience.held:
            self.stdout.write(self._held_note(audience.held))

    def _cancel(self, broadcast):
        try:
            cancelled = services.broadcast_cancel(broadcast=broadcast)
        except InvalidMessage as exc:
            raise CommandError(
                _("Broadcast #%(id)d: %(reason)s") % {"id": broadcast.pk, "reason": one_line(exc)}
            ) from exc
        self.stdout.write(
            _("Broadcast #%(id)d cancelled: %(count)d messages will not be sent.")
            % {"id": broadcast.pk, "count": cancelled}
        )
        self.stdout.write(summary(broadcast.pk, self._progress(broadcast.pk)))

    def _skipped(self, broadcast):
        from rchat.services.broadcasts import SKIP_REASONS

        for reason, entry in (broadcast.skipped_reasons or {}).items():
            self.stdout.write(
                "  "
                + _("skipped %(count)d: %(reason)s")
                % {"count": entry.get("count", 0), "reason": SKIP_REASONS.get(reason, reason)}
            )

    def _held_note(self, held):
        return _(
            "%(count)d chat rooms belong to a credential R-Chat refused: their messages "
            "wait until it is registered again (manage.py rchat_register)."
        ) % {"count": held}

    def _progress(self, pk):
        services.broadcasts_settle(broadcasts=[pk])
        return selectors.broadcast_progress(pk)

    def _wait(self, pk, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        try:
            while True:
                progress = self._progress(pk)
                state = (progress.sent, progress.failed, progress.pending, progress.cancelled)
                if state != seen:
                    seen = state
                    self.stdout.write(
                        "  "
                        + _(
                            "sent %(sent)d, failed %(failed)d, to send %(pending)d, "
                            "cancelled %(cancelled)d"
                        )
                        % {
                            "sent": progress.sent,
                            "failed": progress.failed,
                            "pending": progress.pending,
                            "cancelled": progress.cancelled,
                        }
                    )
                if not progress.pending and progress.status != Broadcast.Status.QUEUEING:
                    self.stdout.write(self.style.SUCCESS(summary(pk, progress)))
                    return
                if progress.held and progress.held == progress.pending:
                    raise CommandError(
                        one_line(self._held_note(progress.held)) + " " + summary(pk, progress)
                    )
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandError(
                        _(
                            "Stopped waiting after %(timeout)gs (is a Celery worker running?); "
                            "the broadcast goes on. %(summary)s"
                        )
                        % {"timeout": timeout, "summary": summary(pk, progress)}
                    )
                _pause(POLL_INTERVAL)
        except KeyboardInterrupt:
            raise CommandError(
                _(
                    "Stopped waiting; broadcast #%(id)d goes on (follow it with --status "
                    "%(id)d --wait, stop it with --cancel %(id)d)."
                )
                % {"id": pk},
                returncode=INTERRUPTED,
            ) from None
