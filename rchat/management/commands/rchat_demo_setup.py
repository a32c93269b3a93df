import contextlib
import os
import socket
import zoneinfo
from datetime import date, datetime, time
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from rchat import services
from rchat.conf import get_setting
from rchat.exceptions import RChatAPIError, RChatConfigurationError
from rchat.models import AutoReply, BusinessHours, ChatRoom, Credential, Holiday, Shift
from rchat.sandbox import DEFAULT_SECRET, DEMO_TOKEN, Sandbox, chat_url, signature_for

#: The demo admin's password when RCHAT_DEMO_PASSWORD is not set. Public on purpose:
#: the command refuses to run unless DEBUG is on.
DEMO_PASSWORD = "rchat-demo"  # noqa: S105
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"
CREDENTIAL_NAME = "demo"

# --- The sample shop's bot (docs/sandbox.md) ---------------------------------------------
# Demo data, written with the ORM: there is no service for rules or business hours,
# only admin's forms. Rules are found again by name, so a second run adds nothing and a
# rule staff edited in admin is left as they made it.

SHOP_TIME_ZONE = "Asia/Bangkok"
#: Monday to Saturday, with a lunch break: a split shift.
SHOP_DAYS = range(Shift.Weekday.MONDAY, Shift.Weekday.SATURDAY + 1)
SHOP_SHIFTS = ((time(10), time(12)), (time(13), time(20)))
SHOP_HOURS_TH = "จันทร์-เสาร์ 10:00-12:00 และ 13:00-20:00 น."
SHOP_HOURS_EN = "Mon-Sat 10:00-12:00 and 13:00-20:00"
#: The holiday (month, day, name): the next one from the day the demo is set up.
SHOP_HOLIDAY = (4, 13, "วันสงกรานต์ / Songkran")

OUT_OF_HOURS_REPLY = (
    f"ขณะนี้อยู่นอกเวลาทำการค่ะ ({SHOP_HOURS_TH}) บอทตอบคำถามทั่วไปได้ "
    "และพนักงานจะตอบกลับเมื่อร้านเปิดค่ะ\n"
    "We are closed now; the bot can still answer common questions, and a person will "
    "reply when we open."
)

#: (name, kind, match, reply, hand over), in the order they are tried.
SHOP_RULES = (
    (
        "Greeting",
        AutoReply.Kind.GREETING,
        "",
        "สวัสดีค่ะ ยินดีต้อนรับสู่ร้านเสื้อผ้าตัวอย่าง 🙏 พิมพ์ 'ราคา', 'ส่งของ' หรือ "
        "'เวลาเปิด' ได้เลยค่ะ\nHello! Welcome to our sample clothes shop. Type 'price', "
        "'shipping' or 'opening hours'.",
        False,
    ),
    (
        "Price",
        AutoReply.Kind.KEYWORD,
        "ราคา\nprice\nhow much",
        "เสื้อยืด 290 บาท เสื้อเชิ้ต 590 บาท กางเกง 790 บาทค่ะ\n"
        "T-shirts 290 THB, shirts 590 THB, trousers 790 THB.",
        False,
    ),
    (
        "Shipping",
        AutoReply.Kind.KEYWORD,
        "ส่งของ\nจัดส่ง\nค่าส่ง\nshipping\ndelivery",
        "ส่งทั่วประเทศ ค่าส่ง 50 บาท ส่งฟรีเมื่อซื้อครบ 1,000 บาท ได้รับภายใน 2-3 วันทำการค่ะ\n"
        "We ship all over Thailand: 50 THB, free from 1,000 THB, in 2-3 working days.",
        False,
    ),
    (
        "Opening hours",
        AutoReply.Kind.KEYWORD,
        "เปิดกี่โมง\nเวลาเปิด\nปิดกี่โมง\nopening hours",
        f"ร้านเปิด{SHOP_HOURS_TH} หยุดวันอาทิตย์ค่ะ\n"
        f"Open {SHOP_HOURS_EN} (Bangkok time), closed on Sundays.",
        False,
    ),
    (
        "Order number",
        AutoReply.Kind.PATTERN,
        r"#\d{5}",
        "ขอบคุณค่ะ กำลังตรวจสอบคำสั่งซื้อ พนักงานจะตอบกลับในไม่ช้าค่ะ\n"
        "Thank you, we are checking your order: a person will answer shortly.",
        True,
    ),
)


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

        self.stdout.write(_("[1/4] Migrating the database …"))
        call_command("migrate", interactive=False, verbosity=max(0, verbosity - 1))

        self.stdout.write(_("[2/4] Demo admin user …"))
        username, login = self._admin_user()

        self.stdout.write(_("[3/4] Credential %(name)r …") % {"name": CREDENTIAL_NAME})
        credential, registered = self._credential(sandbox_url, parts)

        self.stdout.write(_("[4/4] Shop bot …"))
        bot_summary = self._shop_bot(credential)

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
            _("Try:     %(texts)s")
            % {"texts": " · ".join(("สวัสดี", "ราคา", "ส่งของ", "ไซส์ M", "#12345", "คุยกับพนักงาน"))}
        )
        write(bot_summary)
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

    def _shop_bot(self, credential):
        """The sample shop's bot on ``credential``: bot first, rules, business hours.

        One line per part, saying whether it was made now or found; returns the one-line
        summary. All or nothing: one transaction.
        """
        write = self.stdout.write
        kinds = {
            AutoReply.Kind.GREETING: _("greeting"),
            AutoReply.Kind.KEYWORD: _("keywords"),
            AutoReply.Kind.PATTERN: _("pattern"),
        }
        made = []
        with transaction.atomic():
            credential.refresh_from_db()
            if credential.bot_first:
                write(_("      bot first: already on (new chat rooms start with the bot)"))
            else:
                credential.bot_first = True
                credential.save(update_fields=["bot_first", "updated_at"])
                made.append("bot_first")
                write(_("      bot first: turned on (new chat rooms start with the bot)"))
            for position, (name, kind, match, reply, hand_over) in enumerate(SHOP_RULES):
                rule, created = AutoReply.objects.get_or_create(
                    credential=credential,
                    name=name,
                    defaults={
                        "kind": kind,
                        "match": match,
                        "reply_type": "text",
                        "reply_data": reply,
                        "hand_over": hand_over,
                        "position": position,
                    },
                )
                made += ["rule"] if created else []
                write(
                    _("      rule %(name)r (%(kind)s%(match)s%(hand_over)s): %(state)s")
                    % {
                        "name": rule.name,
                        "kind": kinds.get(rule.kind, rule.kind),
                        "match": ": " + ", ".join(rule.match.splitlines()) if rule.match else "",
                        "hand_over": _(", then people") if rule.hand_over else "",
                        "state": _("created") if created else _("kept as it is"),
                    }
                )
            self._shop_hours(credential, made)
        path = get_setting("BOT")
        write(
            _('      site bot: RCHAT["BOT"] = %(path)s') % {"path": path}
            if path
            else _('      site bot: none (RCHAT["BOT"] is empty: the rules answer alone)')
        )
        if not made:
            return _("Shop bot: already set up, nothing changed.")
        rules = made.count("rule")
        return _("Shop bot: set up (%(rules)d rule(s) added%(hours)s%(first)s).") % {
            "rules": rules,
            "hours": _(", business hours added") if "hours" in made else "",
            "first": _(", bot first turned on") if "bot_first" in made else "",
        }

    def _shop_hours(self, credential, made):
        write = self.stdout.write
        hours, created = BusinessHours.objects.get_or_create(
            credential=credential,
            defaults={
                "time_zone": SHOP_TIME_ZONE,
                "reply_type": "text",
                "reply_data": OUT_OF_HOURS_REPLY,
                "out_of_hours_handler": ChatRoom.Handler.BOT,
            },
        )
        if not created:
            write(
                _("      business hours (%(zone)s, %(shifts)d shift(s)): kept as they are")
                % {"zone": hours.time_zone, "shifts": hours.shifts.count()}
            )
            return
        made.append("hours")
        Shift.objects.bulk_create(
            Shift(hours=hours, weekday=day, start=start, end=end)
            for day in SHOP_DAYS
            for start, end in SHOP_SHIFTS
        )
        month, day, name = SHOP_HOLIDAY
        holiday = Holiday.objects.create(hours=hours, date=_next(month, day), name=name)
        write(
            _("      business hours: %(zone)s, %(hours)s: created")
            % {"zone": hours.time_zone, "hours": SHOP_HOURS_EN}
        )
        write(
            _("      holiday: %(date)s %(name)s: created")
            % {"date": holiday.date.isoformat(), "name": holiday.name}
        )
        write(_("      out of hours: a reply once, and the bot keeps answering: created"))

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


def _next(month, day):
    """The next ``month``/``day`` from today in the shop's time zone (today included)."""
    today = datetime.now(zoneinfo.ZoneInfo(SHOP_TIME_ZONE)).date()
    this_year = date(today.year, month, day)
    return this_year if this_year >= today else date(today.year + 1, month, day)


def _port_in_use(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
