from django.core.management.base import BaseCommand, CommandError

from rchat import services
from rchat.crypto import mask
from rchat.exceptions import RChatAPIError, RChatConfigurationError


class Command(BaseCommand):
    help = (
        "Create or update an R-Chat credential, register its Chatday-Token with R-Chat, "
        "and print the webhook URL to paste into R-Chat's settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="A name for this R-Chat account.")
        parser.add_argument("--token", required=True, help="The Chatday-Token R-Chat gave you.")
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
        try:
            credential = services.credential_save(name=name, token=token, base_url=base_url)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            services.credential_register(credential=credential, rotate=rotate)
        except (RChatAPIError, RChatConfigurationError) as exc:
            # One line: the reason, with the token masked (the client masks it too).
            reason = " ".join(str(exc).replace(token, mask(token)).split())
            raise CommandError(f"Register failed for {name!r}: {reason}") from exc
        self.stdout.write(
            f"Registered {credential.name!r} (token {credential.masked_token}, "
            f"signature token {credential.masked_signature_token})."
        )
        self.stdout.write("Paste this webhook URL into R-Chat:")
        self.stdout.write(credential.webhook_url())
