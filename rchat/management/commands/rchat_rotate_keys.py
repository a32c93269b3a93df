from django.core.management.base import BaseCommand, CommandError

from rchat import services
from rchat.exceptions import DecryptionError
from rchat.models import Credential


class Command(BaseCommand):
    help = (
        'Re-encrypt every stored R-Chat secret with the first key of RCHAT["ENCRYPTION_KEYS"], '
        "so older keys can then be removed."
    )

    def handle(self, *args, **options):
        done = 0
        total = Credential.objects.count()
        for credential_id in Credential.objects.values_list("pk", flat=True):
            try:
                credential = Credential.objects.get(pk=credential_id)
            except DecryptionError as exc:
                raise CommandError(f"Credential #{credential_id}: {exc}") from exc
            services.credential_reencrypt(credential=credential)
            done += 1
            self.stdout.write(f"[{done}/{total}] {credential.name}")
        self.stdout.write(f"Re-encrypted {done} credential(s) with the first key.")
