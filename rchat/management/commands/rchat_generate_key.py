from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        'Print a new Fernet key for RCHAT["ENCRYPTION_KEYS"] (keep it with your other '
        "secrets, not in the repository)."
    )
    # Works while the configured keys are still missing or broken: that is when a new
    # one is needed.
    requires_system_checks = []

    def handle(self, *args, **options):
        self.stdout.write(Fernet.generate_key().decode())
