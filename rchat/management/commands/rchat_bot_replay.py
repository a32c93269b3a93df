"""``manage.py rchat_bot_replay``: what the bot would answer today to stored conversations."""

from datetime import date, datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from rchat.bots.replay import replay
from rchat.models import ChatRoom, Credential

#: Progress on stderr after this many chat rooms, unless --progress-every says.
PROGRESS_EVERY = 50


def one_line(text):
    return " ".join(str(text).split())


class Command(BaseCommand):
    help = (
        "Replay the bot (auto-reply rules and the site's bot, as they are now) over stored "
        "conversations and show where its answer to an inbound message differs from what "
        "it did then. Nothing is sent and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--credential", metavar="NAME", help="Only the chat rooms of this credential."
        )
        parser.add_argument(
            "--room-ids", default="", metavar="ID,ID,…", help="Only these chat rooms, by id."
        )
        parser.add_argument(
            "--since",
            metavar="YYYY-MM-DD",
            help="Only inbound messages from this day on (in the site's time zone).",
        )
        parser.add_argument("--limit", type=int, metavar="N", help="Stop after N inbound messages.")
        parser.add_argument(
            "--show",
            choices=["all", "different"],
            default="different",
            help="Which messages to list (default: those whose answer differs).",
        )
        parser.add_argument(
            "--progress-every",
            type=int,
            default=PROGRESS_EVERY,
            metavar="N",
            help=f"Progress on stderr every N chat rooms (default {PROGRESS_EVERY}; 0: none).",
        )

    def handle(self, *args, **options):
        credential_id = self._credential(options["credential"])
        rooms = self._rooms(options["room_ids"])
        since = self._since(options["since"])
        limit = options["limit"]
        if limit is not None and limit <= 0:
            raise CommandError(_("--limit must be a positive number of messages."))
        every = options["progress_every"]
        if every < 0:
            raise CommandError(_("--progress-every must be 0 or a positive number."))
        show_all = options["show"] == "all"

        def progress(report):
            if every and report.rooms and report.rooms % every == 0:
                self.stderr.write(
                    "  "
                    + _("%(rooms)s chat rooms, %(messages)s messages replayed…")
                    % {"rooms": f"{report.rooms:,}", "messages": f"{report.messages:,}"}
                )

        try:
            report = replay(
                rooms=rooms,
                credential_id=credential_id,
                since=since,
                limit=limit,
                progress=progress,
                keep_same=show_all,
            )
        except ImportError as exc:
            raise CommandError(
                _("The bot engine cannot be imported: %(error)s") % {"error": one_line(exc)}
            ) from exc
        for result in report.results:
            self._show(result)
        self.stdout.write(report.summary())

    # --- input ---

    def _credential(self, name):
        if name is None:
            return None
        found = Credential.objects.filter(name=name).values_list("pk", flat=True).first()
        if found is None:
            known = ", ".join(Credential.objects.values_list("name", flat=True)) or "none"
            raise CommandError(
                _("No credential named %(name)s (known: %(known)s).")
                % {"name": name, "known": known}
            )
        return found

    def _rooms(self, text):
        text = text.strip()
        if not text:
            return None
        try:
            ids = [int(part) for part in text.replace(" ", "").split(",") if part]
        except ValueError:
            raise CommandError(
                _("--room-ids takes chat room ids separated by commas, e.g. 12,15,20.")
            ) from None
        if not ids:
            raise CommandError(_("--room-ids names no chat room."))
        missing = sorted(
            set(ids) - set(ChatRoom.objects.filter(pk__in=ids).values_list("pk", flat=True))
        )
        if missing:
            raise CommandError(
                _("No chat room with id %(ids)s.") % {"ids": ", ".join(map(str, missing))}
            )
        return ids

    def _since(self, text):
        if text is None:
            return None
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise CommandError(
                _("--since takes a date as YYYY-MM-DD, e.g. 2025-01-31 (not %(value)r).")
                % {"value": text}
            ) from None
        return timezone.make_aware(datetime.combine(day, time.min))

    # --- output ---

    def _show(self, result):
        head = _("Chat room #%(room_id)d (%(room)s), message #%(id)d at %(at)s: “%(text)s”") % {
            "room_id": result.room_id,
            "room": result.room,
            "id": result.message_id,
            "at": timezone.localtime(result.at).strftime("%Y-%m-%d %H:%M"),
            "text": result.text,
        }
        if result.same:
            self.stdout.write(head)
            self.stdout.write("  " + _("same: %(outcome)s") % {"outcome": result.now.shown()})
            return
        self.stdout.write(self.style.WARNING(head))
        then = result.then.shown()
        if result.then.handler == ChatRoom.Handler.PEOPLE:
            then += " " + _("(people handled the chat room)")
        self.stdout.write("  " + _("then: %(outcome)s") % {"outcome": then})
        self.stdout.write("  " + _("now:  %(outcome)s") % {"outcome": result.now.shown()})
        for line in result.why:
            self.stdout.write("  " + _("why:  %(line)s") % {"line": one_line(line)})
