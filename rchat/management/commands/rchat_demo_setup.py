import contextlib
import os
import socket
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from rchat import services
from rchat.conf import get_setting
from rchat.exceptions import RChatAPIError, RChatConfigurationError
from rchat.models import Credential
from rchat.sandbox import DEFAULT_SECRET, DEMO_TOKEN, Sandbox, chat_url, signature_for

#: The demo admin's password when RCHAT_DEMO_PASSWORD is not set. Public on purpose:
#: the command refuses to run unless DEBUG is on.
DEMO_PASSWORD = "rchat-demo"  # noqa: S105
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"
CREDENTIAL_NAME = "demo"


class Command(BaseCommand):
    help = _(
        "Prepare the local demo: migrate, create a demo admin user and a 'demo' credential "
        "registered with the R-Chat sandbox. Safe to run again: it reuses what exists."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sandbox-url",
            default=None,
            help=_('The sandbox\'s URL (default: RCHAT["API_BASE_URL"], else %(url)s).')
            % {"url": DEFAULT_SANDBOX_URL},
        )

    def handle(self, *args, sandbox_url, verbosity, **options):
        if not settings.DEBUG:
            raise CommandError(
                _("rchat_demo_setup creates a user with a known password: run it with DEBUG on.")
            )
        sandbox_url = (sandbox_url or get_setting("API_BASE_URL") or DEFAULT_SANDBOX_URL).rstrip(
            "/"
        )
        parts = urlsplit(sandbox_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise CommandError(
                _("The sandbox URL must look like http://127.0.0.1:8765, not %(url)r.")
                % {"url": sandbox_url}
            )

        self.stdout.write(_("[1/3] Migrating the database …"))
        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))

        self.stdout.write(_("[2/3] Demo admin user …"))
        username, login = self._admin_user()

        self.stdout.write(_("[3/3] Credential %(name)r …") % {"name": CREDENTIAL_NAME})
        credential, registered = self._credential(sandbox_url, parts)

        site = get_setting("SITE_URL") or "http://127.0.0.1:8000"
        try:
            inbox = urljoin(site, reverse("rchat:inbox"))
        except NoReverseMatch:
            inbox = urljoin(site, "/rchat/inbox/")
        write = self.stdout.write
        write("")
        write(
            _("Admin:   %(url)s  (%(login)s)") % {"url": urljoin(site, "/admin/"), "login": login}
        )
        write(_("Inbox:   %(url)s") % {"url": inbox})
        write(_("Sandbox: %(url)s/  (chat as an end user:)") % {"url": sandbox_url})
        for chat_id, channel, name in (
            ("demo-web", "web", "Somchai"),
            ("demo-line", "line", "สมหญิง"),
            ("demo-facebook", "facebook", "Ploy"),
        ):
            write("         " + chat_url(sandbox_url, chat_id, channel=channel, name=name))
        write(
            _("Demo ready: user %(login)s, credential %(name)r %(state)s.")
            % {
                "login": username,
                "name": credential.name,
                "state": _("registered now") if registered else _("already registered"),
            }
        )

    def _admin_user(self):
        User = get_user_model()
        username = os.environ.get("RCHAT_DEMO_USER") or "admin"
        password = os.environ.get("RCHAT_DEMO_PASSWORD") or DEMO_PASSWORD
        user = User.objects.filter(username=username).first()
        if user is None:
            User.objects.create_superuser(username, f"{username}@example.com", password)
            self.stdout.write(_("      created %(user)r") % {"user": username})
            return username, _("login %(user)s / %(password)s") % {
                "user": username,
                "password": password,
            }
        self.stdout.write(_("      reusing %(user)r") % {"user": username})
        if user.check_password(password):
            return username, _("login %(user)s / %(password)s") % {
                "user": username,
                "password": password,
            }
        return username, _("login %(user)s, password unchanged") % {"user": username}

    def _credential(self, sandbox_url, parts):
        secret = os.environ.get("RCHAT_SANDBOX_SECRET") or DEFAULT_SECRET
        # With RCHAT["API_BASE_URL"] pointing at the sandbox the credential follows the
        # setting, as a real site's would; otherwise it names the sandbox itself.
        base_url = "" if get_setting("API_BASE_URL").rstrip("/") == sandbox_url else sandbox_url
        credential = Credential.objects.filter(name=CREDENTIAL_NAME).first()
        expected = signature_for(DEMO_TOKEN, secret)
        if (
            credential is not None
            and credential.status == Credential.Status.ACTIVE
            and credential.signature_token == expected
            and credential.base_url == base_url
        ):
            self.stdout.write(
                _("      reusing it (signature token %(sig)s)")
                % {"sig": credential.masked_signature_token}
            )
            return credential, False
        credential = services.credential_save(
            name=CREDENTIAL_NAME, token=DEMO_TOKEN, base_url=base_url
        )
        with self._sandbox(parts, secret):
            try:
                services.credential_register(credential=credential)
            except (RChatAPIError, RChatConfigurationError) as exc:
                raise CommandError(
                    _("Registering the demo credential with the sandbox failed: %(reason)s")
                    % {"reason": " ".join(str(exc).split())}
                ) from exc
        self.stdout.write(
            _("      registered with the sandbox (signature token %(sig)s)")
            % {"sig": credential.masked_signature_token}
        )
        return credential, True

    def _sandbox(self, parts, secret):
        """A temporary sandbox on the sandbox's own port, unless one already runs there.

        Signature tokens are an HMAC of the Chatday-Token, so the token it issues is
        the one the long-running sandbox will put on its webhooks.
        """
        if _port_in_use(parts.hostname, parts.port):
            self.stdout.write(
                _("      a sandbox is already running at %(host)s:%(port)s")
                % {"host": parts.hostname, "port": parts.port}
            )
            return contextlib.nullcontext()
        self.stdout.write(_("      starting a temporary sandbox to register …"))
        return Sandbox(host=parts.hostname, port=parts.port, tokens=[DEMO_TOKEN], secret=secret)


def _port_in_use(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
