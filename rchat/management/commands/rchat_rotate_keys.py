from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import crypto, services
from rchat.exceptions import DecryptionError
from rchat.models import Credential


class Command(BaseCommand):
    help = (
        'Re-encrypt every stored R-Chat secret with the first key of RCHAT["ENCRYPTION_KEYS"], '
        "so older keys can then be removed."
    )

    def handle(self, *args, **options):
        # A malformed key must stop the command before any row is touched.
        crypto.check_keys()
        ids = list(Credential.objects.order_by("pk").values_list("pk", flat=True))
        total = len(ids)
        done = 0
        failed = []
        for position, credential_id in enumerate(ids, start=1):
            try:
                credential = Credential.objects.get(pk=credential_id)
                services.credential_reencrypt(credential=credential)
            except Credential.DoesNotExist:
                continue  # Deleted while the command ran: nothing left to protect.
            except DecryptionError:
                # Keep going: one unreadable row must not leave the others on old keys.
                failed.append(credential_id)
                self.stderr.write(
                    _("[%(position)d/%(total)d] credential #%(id)d: cannot be decrypted")
                    % {"position": position, "total": total, "id": credential_id}
                )
                continue
            done += 1
            self.stdout.write(f"[{position}/{total}] {credential.name}")
        if failed:
            raise CommandError(
                _(
                    "Re-encrypted %(done)d of %(total)d credential(s); %(failed)d cannot be "
                    "decrypted with the configured keys (#%(ids)s): put back the key they were "
                    "written with, then run this command again."
                )
                % {
                    "done": done,
                    "total": total,
                    "failed": len(failed),
                    "ids": ", #".join(str(i) for i in failed),
                }
            )
        self.stdout.write(
            _("Re-encrypted %(done)d credential(s) with the first key.") % {"done": done}
        )
