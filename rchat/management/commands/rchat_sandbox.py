import contextlib
import os
import signal
from urllib.parse import urljoin

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from django.utils.translation import gettext as _

from rchat.conf import get_setting
from rchat.sandbox import DEFAULT_SECRET, DEMO_TOKEN, Sandbox, SandboxClient, chat_url
from rchat.sandbox.client import SandboxUnreachable
from rchat.sandbox.state import DEFAULT_SENDER_FIELD, Fault, SandboxInputError, mask


def default_webhook_url():
    """This site's keyless webhook URL, from RCHAT["SITE_URL"]."""
    site = get_setting("SITE_URL") or "http://127.0.0.1:8000"
    return urljoin(site, reverse("rchat:webhook"))


class Command(BaseCommand):
    help = _(
        "Run a fake R-Chat on this machine: Register, Send Message, end-user chat pages "
        "that post webhooks to this site, and fault injection. With --burst, send a burst "
        "of end-user messages through a sandbox that is already running."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help=_("Interface to listen on."))
        parser.add_argument(
            "--port", type=int, default=8765, help=_("Port to listen on (0: any free port).")
        )
        parser.add_argument(
            "--webhook-url",
            default=None,
            help=_("Where to post end users' messages (default: this site's /rchat/webhook/)."),
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help=_("Register accepts only the tokens given with --token (401 otherwise)."),
        )
        parser.add_argument(
            "--token",
            action="append",
            default=[],
            metavar="TOKEN",
            help=_(
                "A Chatday-Token this R-Chat issued (repeatable); counts as registered. The "
                "first one signs the webhooks until a site registers a token, which signs "
                "them from then on. Default: the demo token."
            ),
        )
        parser.add_argument(
            "--ignore-idempotency-key",
            action="store_true",
            help=_(
                "Store every Send Message call, even one whose Idempotency-Key was seen "
                "(by default a repeated key is answered as the first call and not shown twice)."
            ),
        )
        parser.add_argument(
            "--sender-field",
            default=DEFAULT_SENDER_FIELD,
            metavar="NAME",
            help=_(
                "Where Send Message bodies say who wrote a reply (the site's "
                'RCHAT["SENDER_FIELD"]); the chat pages label each reply with it. '
                '"" ignores it. Default: %(default)s.'
            ),
        )
        parser.add_argument(
            "--time-zone",
            default=None,
            metavar="ZONE",
            help=_(
                "The time zone the chat pages show times in, such as Asia/Bangkok "
                "(default: this site's TIME_ZONE)."
            ),
        )
        faults = parser.add_argument_group(_("faults played from the start"))
        faults.add_argument("--fault-status", type=int, help=_("Answer this HTTP status."))
        faults.add_argument("--retry-after", type=int, help=_("Retry-After seconds (with 429)."))
        faults.add_argument("--latency-ms", type=int, help=_("Wait this long before answering."))
        faults.add_argument("--drop", action="store_true", help=_("Drop the connection."))
        faults.add_argument("--fault-count", type=int, help=_("Only for the next N calls."))
        faults.add_argument("--fault-share", type=float, help=_("Only for this share of calls."))
        faults.add_argument(
            "--fault-on", default="any", choices=["any", "register", "send"], help=_("Which call.")
        )
        burst = parser.add_argument_group(_("burst (needs the sandbox running)"))
        burst.add_argument(
            "--burst", type=int, metavar="N", help=_("Send N end-user messages, then exit.")
        )
        burst.add_argument(
            "--chats", type=int, default=1, metavar="M", help=_("Spread the burst over M chats.")
        )

    def handle(self, *args, **options):
        if options["burst"] is not None:
            return self._burst(options)
        secret = os.environ.get("RCHAT_SANDBOX_SECRET") or DEFAULT_SECRET
        tokens = options["token"] or [DEMO_TOKEN]
        webhook_url = options["webhook_url"] or default_webhook_url()
        try:
            sandbox = Sandbox(
                host=options["host"],
                port=options["port"],
                webhook_url=webhook_url,
                tokens=tokens,
                strict=options["strict"],
                secret=secret,
                idempotent=not options["ignore_idempotency_key"],
                sender_field=options["sender_field"],
                time_zone=options["time_zone"],
            )
            fault = self._fault(options)
            if fault:
                sandbox.inject(**fault)
            sandbox.bind()
        except SandboxInputError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(
                _("Cannot listen on %(host)s:%(port)s: %(reason)s")
                % {"host": options["host"], "port": options["port"], "reason": exc.strerror}
            ) from exc

        self._banner(sandbox, tokens, fault)
        # process managers and docker stop processes with SIGTERM: leave like on Ctrl-C.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            sandbox.serve_forever()
        received = len(sandbox.received())
        self.stdout.write(
            _("Sandbox stopped: %(chats)d chat(s), %(received)d message(s) received.")
            % {"chats": len(sandbox.chats()), "received": received}
        )

    def _fault(self, options):
        spec = {
            "status": options["fault_status"],
            "retry_after": options["retry_after"],
            "latency_ms": options["latency_ms"],
            "count": options["fault_count"],
            "share": options["fault_share"],
        }
        spec = {k: v for k, v in spec.items() if v is not None}
        if options["drop"]:
            spec["drop"] = True
        if not spec:
            return None
        spec["on"] = options["fault_on"]
        Fault.parse(spec)
        return spec

    def _banner(self, sandbox, tokens, fault):
        write = self.stdout.write
        # The first line is what scripts and tests read to find a port chosen with --port 0.
        write(_("R-Chat sandbox listening on %(url)s") % {"url": sandbox.url})
        write(_("  Register:      POST %(path)s") % {"path": sandbox.register_path})
        write(_("  Send Message:  POST %(path)s") % {"path": sandbox.send_path})
        write(_("  Webhooks to:   %(url)s") % {"url": sandbox.webhook_url})
        write(
            _("  Sender field:  %(field)s")
            % {"field": sandbox.sender_field or _("(none: replies are not labelled)")}
        )
        write(
            _("  Tokens:        %(tokens)s%(strict)s")
            % {
                "tokens": ", ".join(mask(t) for t in tokens),
                "strict": _(" (strict)") if sandbox.strict else "",
            }
        )
        if fault:
            write(_("  Fault:         %(fault)s") % {"fault": fault})
        write(_("  Chat as an end user: %(url)s") % {"url": chat_url(sandbox.url, "demo-web")})
        write(_("Press Ctrl-C to stop."))
        self.stdout.flush()

    def _burst(self, options):
        host = options["host"]
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{options['port']}"
        total = options["burst"]
        client = SandboxClient(url)
        try:
            client.info()
        except SandboxUnreachable as exc:
            raise CommandError(
                _("%(reason)s Start it first: manage.py rchat_sandbox --port %(port)s")
                % {"reason": exc, "port": options["port"]}
            ) from exc
        step = max(1, total // 10)

        def progress(done, total):
            if done % step == 0 or done == total:
                self.stdout.write(f"  {done}/{total}")

        self.stdout.write(
            _("Sending %(n)d message(s) over %(m)d chat(s) through %(url)s …")
            % {"n": total, "m": options["chats"], "url": url}
        )
        try:
            summary = client.burst(total, options["chats"], progress=progress)
        except (SandboxInputError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except SandboxUnreachable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            _(
                "Burst done: %(messages)d message(s) over %(chats)d chat(s), "
                "%(delivered)d delivered, %(failed)d failed, in %(seconds)s s."
            )
            % summary
        )
        if summary["failed"]:
            raise CommandError(
                _("%(failed)d message(s) did not reach the site: see the chat pages.") % summary
            )


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
