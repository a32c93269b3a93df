import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import services
from rchat.crypto import redact
from rchat.exceptions import RChatAPIError, RChatConfigurationError


class Command(BaseCommand):
    help = (
        "Create or update an R-Chat credential, register its Chatday-Token with R-Chat, "
        "and print the webhook URL to paste into R-Chat's settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="A name for this R-Chat account.")
        parser.add_argument(
            "--token",
            required=True,
            help="The Chatday-Token R-Chat gave you; '-' reads it from standard input "
            "(keeps it out of the process list and shell history).",
        )
        parser.add_argument(
            "--base-url",
            default="",
            help='R-Chat\'s API base URL (default: RCHAT["API_BASE_URL"]).',
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Keep accepting the previous signature token for the grace period.",
        )

    def handle(self, *args, name, token, base_url, rotate, **options):
        if token == "-":  # noqa: S105 - the documented "read from stdin" marker
            token = sys.stdin.readline().strip()
        try:
            credential = services.credential_connect(
                name=name, token=token, base_url=base_url, rotate=rotate
            )
        except ValueError as exc:
            raise CommandError(_one_line(exc, token)) from exc
        except (RChatAPIError, RChatConfigurationError) as exc:
            raise CommandError(
                _("Register failed for %(name)r: %(reason)s")
                % {"name": name.strip(), "reason": _one_line(exc, token)}
            ) from exc
        self.stdout.write(
            _("Registered %(name)r (token %(token)s, signature token %(signature)s).")
            % {
                "name": credential.name,
                "token": credential.masked_token,
                "signature": credential.masked_signature_token,
            }
        )
        if credential.previous_valid_until and rotate:
            self.stdout.write(
                _("The previous signature token is accepted until %(until)s.")
                % {"until": credential.previous_valid_until.isoformat(timespec="seconds")}
            )
        self.stdout.write(_("Paste this webhook URL into R-Chat:"))
        self.stdout.write(credential.webhook_url())


def _one_line(exc, token):
    # The client masks the token already; masking again here also covers errors
    # raised before a request was made, and keeps the reason on one line.
    return " ".join(redact(str(exc), token.strip(), token).split()) or type(exc).__name__
