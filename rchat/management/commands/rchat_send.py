"""``manage.py rchat_send``: queue a message to an R-Chat chat room, optionally wait for it."""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import payloads, services
from rchat.exceptions import InvalidMessage
from rchat.models import Credential, Message

# Seconds between two looks at the message's status with --wait.
POLL_INTERVAL = 0.5


def one_line(text):
    return " ".join(str(text).split())


class Command(BaseCommand):
    help = (
        "Queue a message to an R-Chat chat room and print its id. A Celery worker "
        "delivers it; with --wait, wait for the outcome and fail if delivery failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--chat-id", required=True, help="R-Chat's chat_id of the room.")
        parser.add_argument(
            "--credential",
            default="",
            help="Name of the credential to send with (needed when there are several).",
        )
        parser.add_argument(
            "--type",
            default="text",
            choices=payloads.OUTBOUND_TYPES,
            help="Message type (default: text).",
        )
        parser.add_argument(
            "--data",
            required=True,
            help="The text for a text message; JSON for the other types "
            '(e.g. \'{"latitude": 13.75, "longitude": 100.5}\'); a bare URL for image/file.',
        )
        parser.add_argument(
            "--wait", action="store_true", help="Wait until the message is sent or has failed."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds to wait with --wait (default: 60).",
        )

    def handle(self, *args, chat_id, credential, type, data, wait, timeout, **options):
        if timeout <= 0:
            raise CommandError(_("--timeout must be a positive number of seconds."))
        found = self._credential(credential)
        try:
            room = services.room_get_or_create(credential=found, chat_id=chat_id)
            message = services.message_send(room=room, type=type, data=self._data(type, data))
        except InvalidMessage as exc:
            raise CommandError(_("Not queued: %(reason)s") % {"reason": one_line(exc)}) from exc
        self.stdout.write(
            _("Queued message %(id)s to chat %(chat)s (credential %(credential)s).")
            % {"id": message.pk, "chat": room.chat_id, "credential": found.name}
        )
        if wait:
            self._wait(message, timeout)

    def _credential(self, name):
        if name:
            found = Credential.objects.filter(name=name).first()
            if found is None:
                known = ", ".join(Credential.objects.values_list("name", flat=True)) or "none"
                raise CommandError(
                    _("No credential named %(name)r (known: %(known)s).")
                    % {"name": name, "known": known}
                )
            return found
        credentials = list(Credential.objects.all()[:2])
        if not credentials:
            raise CommandError(_("No credential yet: create one with manage.py rchat_register."))
        if len(credentials) > 1:
            known = ", ".join(Credential.objects.values_list("name", flat=True))
            raise CommandError(
                _("Several credentials exist (%(known)s): choose one with --credential.")
                % {"known": known}
            )
        return credentials[0]

    def _data(self, type, raw):
        if type == "text":
            return raw
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            if type in ("image", "file"):
                return raw  # a bare URL; the validation says if it is not one
            raise CommandError(
                _("--data must be JSON for a %(type)s message: %(error)s.")
                % {"type": type, "error": exc}
            ) from exc

    def _wait(self, message, timeout):
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            message.refresh_from_db(
                fields=["status", "attempts", "last_error", "external_id", "sent_at"]
            )
            state = (message.status, message.attempts, message.last_error)
            if state != seen:
                seen = state
                self.stdout.write(self._progress(message))
            if message.status == Message.Status.SENT:
                done = _("Message %(id)s sent after %(attempts)d attempt(s).") % {
                    "id": message.pk,
                    "attempts": message.attempts,
                }
                if message.external_id:
                    done += " " + _("R-Chat's id: %(id)s.") % {"id": message.external_id}
                self.stdout.write(self.style.SUCCESS(done))
                return
            if message.status == Message.Status.FAILED:
                raise CommandError(
                    _("Message %(id)s failed after %(attempts)d attempt(s): %(reason)s")
                    % {
                        "id": message.pk,
                        "attempts": message.attempts,
                        "reason": one_line(message.last_error),
                    }
                )
            if message.status == Message.Status.CANCELLED:
                raise CommandError(
                    _("Message %(id)s was cancelled (its broadcast was stopped).")
                    % {"id": message.pk}
                )
            if time.monotonic() >= deadline:
                raise CommandError(
                    _(
                        "Message %(id)s is still %(status)s after %(timeout)gs (is a Celery "
                        "worker running?); it is kept and will be delivered later."
                    )
                    % {"id": message.pk, "status": message.status, "timeout": timeout}
                )
            time.sleep(POLL_INTERVAL)

    def _progress(self, message):
        line = "  " + _("%(status)s (attempts: %(attempts)d)") % {
            "status": message.get_status_display(),
            "attempts": message.attempts,
        }
        if message.last_error and message.status != Message.Status.SENT:
            line += f": {one_line(message.last_error)[:300]}"
        return line
