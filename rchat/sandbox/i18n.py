"""The sandbox's pages in English and Thai: which language a request reads, and its words.

The sandbox runs inside the site's Django project (``manage.py rchat_sandbox``), so its
words are rchat's: Django's gettext with rchat's catalogue, the month names from
Django's own. Used outside a configured project (``Sandbox`` in a plain script) there is
no catalogue to read, and the pages speak English.

The language of a page, first that applies:

1. ``?lang=en`` or ``?lang=th`` in its URL (the switch on every page links there); the
   answer then sets the cookie ``rchat_sandbox_language``, so the choice is remembered;
2. that cookie;
3. the browser's ``Accept-Language`` (the first of en, th it prefers);
4. English.

The page's script gets its words from the server in a ``<script type="application/json"
id="sandbox-texts">`` block (``texts_json``): one catalogue, not a second one in
JavaScript.
"""

import json
from http.cookies import CookieError, SimpleCookie

from .state import SandboxInputError

LANGUAGES = ("en", "th")
DEFAULT_LANGUAGE = "en"
#: Each language's name as its own readers write it: what the switch shows.
LANGUAGE_NAMES = {"en": "English", "th": "ไทย"}
COOKIE = "rchat_sandbox_language"
COOKIE_MAX_AGE = 365 * 24 * 60 * 60

ENGLISH_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
#: How times are written when there is no Django to ask (rchat.ui.when's English).
ENGLISH_TIME_WORDS = {
    "months": list(ENGLISH_MONTHS),
    "months_short": [month[:3] for month in ENGLISH_MONTHS],
    "yesterday": "Yesterday %(time)s",
    "era_offset": 0,
}


def choose_language(query_language, cookie_header, accept_language):
    """The page's language and whether to remember it (``?lang=`` given).

    An unknown ``?lang=`` is refused (the switch never writes one); an unknown cookie
    or Accept-Language is passed over.
    """
    if query_language is not None:
        code = query_language.strip().lower()
        if code not in LANGUAGES:
            raise SandboxInputError(f"lang must be one of {', '.join(LANGUAGES)}.")
        return code, True
    remembered = _cookie(cookie_header)
    if remembered in LANGUAGES:
        return remembered, False
    return _preferred(accept_language) or DEFAULT_LANGUAGE, False


def remember_header(language):
    """The Set-Cookie value that keeps ``language`` for this sandbox's pages."""
    return f"{COOKIE}={language}; Path=/; Max-Age={COOKIE_MAX_AGE}; SameSite=Lax"


def _cookie(header):
    if not header:
        return None
    cookies = SimpleCookie()
    try:
        cookies.load(header)
    except CookieError:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel else None


def _preferred(header):
    """The first of LANGUAGES in an Accept-Language header, by its q values."""
    ranked = []
    for position, item in enumerate((header or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def _django_gettext():
    """Django's gettext when a project is set up and its apps loaded, else None."""
    try:
        from django.apps import apps
        from django.conf import settings
        from django.utils.translation import gettext
    except ImportError:  # pragma: no cover - rchat always ships with Django
        return None
    if not settings.configured or not apps.ready:
        return None
    return gettext


def texts(language):
    """Every word of the sandbox's pages in ``language``: a dict the server fills the
    pages with and hands their script (``texts_json``)."""
    gettext = _django_gettext()
    if gettext is None:
        return {**_words(lambda text: text), "time": dict(ENGLISH_TIME_WORDS), "language": "en"}
    from django.utils import translation
    from django.utils.dates import MONTHS, MONTHS_3

    from rchat.ui.when import BUDDHIST_ERA_OFFSET, buddhist_era

    with translation.override(language):
        time_words = {
            # As rchat.ui.when writes them (Django's "F" and "M" date formats).
            "months": [str(MONTHS[month]) for month in range(1, 13)],
            "months_short": [str(MONTHS_3[month]).title() for month in range(1, 13)],
            "yesterday": gettext("Yesterday %(time)s"),
            "era_offset": BUDDHIST_ERA_OFFSET if buddhist_era() else 0,
        }
        return {**_words(gettext), "time": time_words, "language": language}


def texts_json(words):
    """``words`` as JSON safe inside a ``<script>`` element (no "<", ">" or "&")."""
    data = json.dumps(words, ensure_ascii=False)
    return data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _words(_):
    """The pages' words through ``_`` (gettext, or nothing outside Django).

    ``%(name)s`` marks a value put in by the server or by sandbox.js (``t()``).
    """
    return {
        # Both pages.
        "sandbox": _("R-Chat sandbox"),
        "language_switch": _("Language"),
        # The index page.
        "tagline": _("A stand-in for R-Chat on this machine."),
        "chats": _("Chats"),
        "chat_id_placeholder": _("chat id, e.g. customer-1"),
        "name_placeholder": _("end user's name"),
        "open_chat": _("Open chat"),
        "column_chat": _("Chat"),
        "column_channel": _("Channel"),
        "column_name": _("Name"),
        "column_messages": _("Messages"),
        "column_last": _("Last message"),
        "no_chats": _("No chats yet: open one above, or send a burst."),
        "from_user": _("end user"),
        "from_site": _("site"),
        "burst": _("Burst"),
        "burst_messages": _("messages"),
        "burst_chats": _("over chats"),
        "send_burst": _("Send burst"),
        "burst_sending": _("sending…"),
        "burst_done": _(
            "%(messages)s message(s) over %(chats)s chat(s): %(delivered)s delivered, "
            "%(failed)s failed, %(seconds)s s."
        ),
        "faults": _("Faults"),
        "fault_answer": _("answer"),
        "fault_normal": _("(normal answer)"),
        "fault_retry_after": _("Retry-After (s)"),
        "fault_latency": _("latency (ms)"),
        "fault_drop": _("drop the connection"),
        "fault_count": _("for how many calls (empty: until cleared)"),
        "fault_share": _("share of calls"),
        "fault_on": _("on"),
        "on_any": _("any call"),
        "on_send": _("Send Message only"),
        "on_register": _("Register only"),
        "add_fault": _("Add fault"),
        "clear_faults": _("Clear faults"),
        "no_faults": _("No faults: the sandbox answers as R-Chat does."),
        "fault_status_is": _("answers HTTP %(status)s"),
        "fault_retry_after_is": _("Retry-After: %(seconds)s s"),
        "fault_latency_is": _("waits %(ms)s ms"),
        "fault_drop_is": _("drops the connection"),
        "fault_count_is": _("%(applied)s of %(count)s call(s) hit"),
        "fault_until_cleared_is": _("until cleared, %(applied)s call(s) hit"),
        "fault_share_is": _("%(percent)s%% of calls"),
        "settings": _("Settings"),
        "yes": _("yes"),
        "no": _("no"),
        "none": _("(none)"),
        "info": {
            "url": _("Sandbox URL"),
            "webhook_url": _("Webhook URL"),
            "strict": _("Strict (only the given tokens may register)"),
            "register_path": _("Register path"),
            "send_path": _("Send Message path"),
            "sender_field": _("Sender field"),
            "time_zone": _("Time zone"),
            "account_token": _("Token that signs the webhooks"),
            "idempotent": _("Repeated idempotency keys are sent once"),
            "repeated_keys": _("Repeated idempotency keys seen"),
            "registered": _("Registered tokens"),
        },
        # The chat page.
        "all_chats": _("← all chats"),
        "chat_title": _("Chat %(chat_id)s — R-Chat sandbox"),
        "chat_who": _("Channel %(channel)s, end user %(name)s."),
        "chat_how": _(
            "You type as the end user; the site's replies appear live, each labelled by "
            "who wrote it (🤖 Bot, ⚙ Rule, 👤 a person) when the site says so."
        ),
        "compose_placeholder": _("Type a message (ภาษาไทยได้)"),
        "send": _("Send"),
        "from_the_site": _("from the site"),
        "webhook_pending": _("sending to the site…"),
        "webhook_delivered": _("delivered to the site (HTTP %(status)s)"),
        "webhook_refused": _("the site answered HTTP %(status)s: %(answer)s"),
        "webhook_failed": _("not delivered"),
        "image": _("image"),
        "label_bot": _("Bot"),
        "label_rule": _("Rule"),
        "label_rule_named": _("Rule: %(name)s"),
        "label_person": _("Person"),
    }


#: Which emoji goes before a sender label's words (the same in every language).
LABEL_EMOJI = {"bot": "🤖", "rule": "⚙", "person": "👤"}


def label_text(label, words):
    """A reply's sender label (``state.sender_label``) in the page's language."""
    kind, name = label["kind"], label.get("name") or ""
    if kind == "bot":
        shown = words["label_bot"]
    elif kind == "rule":
        shown = words["label_rule_named"] % {"name": name} if name else words["label_rule"]
    else:
        shown = name or words["label_person"]
    return f"{LABEL_EMOJI[kind]} {shown}"
