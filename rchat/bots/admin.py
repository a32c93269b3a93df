"""Admin for the chatbot back-office: auto-reply rules (with a "try it" box), business
hours (shifts and holidays), external bots, and the chat rooms' replay action.

rchat/admin.py imports this module, so the pages sit with the rest of rchat's admin.
"""

import json

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import F
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import crypto, payloads
from ..exceptions import InvalidMessage
from ..models import (
    AutoReply,
    BotForward,
    BusinessHours,
    Credential,
    ExternalBot,
    Holiday,
    Shift,
)
from ..ui.when import WhenFieldsAdmin, when_html
from . import hours as business_hours
from . import rules

#: The reply types a rule or an out-of-hours reply can have (payloads.OUTBOUND_TYPES).
REPLY_TYPES = [
    ("text", _("Text")),
    ("image", _("Image")),
    ("file", _("File")),
    ("sticker", _("Sticker")),
    ("location", _("Location")),
]
#: Inbound messages the admin replay action goes through at most (the command has no
#: such bound: a request should not run for minutes).
REPLAY_ADMIN_LIMIT = 1000
#: Forwards shown on an external bot's page.
FORWARDS_SHOWN = 20


class BotAdmin(WhenFieldsAdmin, admin.ModelAdmin):
    """What these pages share with rchat's other admin pages (rchat.admin.RChatAdmin,
    not imported: rchat/admin.py imports this module), times shown as there."""

    def get_changelist_instance(self, request):
        # A filter value with a NUL character reaches the database, which refuses it
        # (a 500 on PostgreSQL): treat it as admin treats any wrong filter ("?e=1").
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            raise IncorrectLookupParameters("NUL in a filter value")
        return super().get_changelist_instance(request)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Credential:
            # The name is all a choice shows: no token decrypted for each credential.
            kwargs["queryset"] = Credential.objects.only("pk", "name").order_by("name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# --- A reply typed in admin ------------------------------------------------------------


def has_reply(data):
    """Whether a stored reply_data holds a reply (empty: none)."""
    return data not in (None, "", {}, [])


def reply_typed(type, data):
    """A stored reply as staff type it: a text as plain text, anything else as JSON."""
    if not has_reply(data):
        return ""
    if type == "text" and isinstance(data, str):
        return data
    return json.dumps(data, ensure_ascii=False, indent=2)


def reply_parsed(type, typed):
    """What staff typed as the reply's data: {} when empty; for a text, a JSON string or
    plain text; for an image or a file, JSON or a bare URL; otherwise JSON. Raises
    ``forms.ValidationError`` for JSON that does not parse."""
    typed = (typed or "").strip()
    if not typed:
        return {}
    try:
        value = json.loads(typed)
    except (ValueError, RecursionError) as exc:
        if type in ("text", "image", "file"):
            return typed
        raise forms.ValidationError(
            gettext("A %(type)s reply is written as JSON: %(error)s.")
            % {"type": type, "error": exc}
        ) from exc
    if type == "text" and not isinstance(value, str):
        return typed  # "123" or "[1]" typed as a text reply is that text
    return value


def reply_preview(type, data, length=60):
    """A short rendering of a stored reply for lists ("—" for none)."""
    if not has_reply(data):
        return "—"
    try:
        text = payloads.outbound_preview(type, data)
    except (KeyError, TypeError, AttributeError, ValueError):
        text = f"[{type}]"
    return payloads.short(text, length)


class ReplyFormMixin:
    """A ModelForm's ``reply_type`` / ``reply_data``: typed as text, checked with
    ``payloads.outbound_validate``, stored as it will be sent."""

    def _reply_fields(self):
        self.fields["reply_type"] = forms.ChoiceField(
            label=self.fields["reply_type"].label, choices=REPLY_TYPES, initial="text"
        )
        self.fields["reply_data"] = forms.CharField(
            label=self.fields["reply_data"].label,
            required=False,
            strip=False,
            widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
            help_text=_(
                "A text reply: just the text. Image or file: its URL (or JSON with "
                '"url"). Sticker: {"package_id": …, "sticker_id": …}. Location: '
                '{"latitude": …, "longitude": …, "title": …}.'
            ),
        )
        if self.instance.pk:
            self.initial["reply_data"] = reply_typed(
                self.instance.reply_type, self.instance.reply_data
            )

    def reply_empty_error(self, cleaned):
        """Why an empty reply cannot be saved ("" when it can)."""
        return ""

    def _clean_reply(self, cleaned):
        type = cleaned.get("reply_type")
        if type is None or "reply_data" in self.errors:
            return
        try:
            data = reply_parsed(type, cleaned.get("reply_data"))
        except forms.ValidationError as exc:
            self.add_error("reply_data", exc)
            return
        if not has_reply(data):
            error = self.reply_empty_error(cleaned)
            if error:
                self.add_error("reply_data", error)
            cleaned["reply_data"] = {}
            return
        try:
            cleaned["reply_data"] = payloads.outbound_validate(type, data)
        except InvalidMessage as exc:
            self.add_error("reply_type" if "type" in exc.errors else "reply_data", str(exc))


# --- Auto-reply rules ---------------------------------------------------------------------


class AutoReplyForm(ReplyFormMixin, forms.ModelForm):
    class Meta:
        model = AutoReply
        fields = [
            "name",
            "active",
            "kind",
            "credential",
            "match",
            "reply_type",
            "reply_data",
            "hand_over",
            "position",
        ]
        widgets = {"match": forms.Textarea(attrs={"rows": 4, "cols": 60})}
        help_texts = {
            "match": _(
                "Keywords: one per line; any of them anywhere in the message answers "
                "(spaces, case and punctuation do not matter). Pattern: one regular "
                "expression (case ignored). Greeting: leave empty."
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reply_fields()
        self.fields["credential"].empty_label = _("Every credential")

    def reply_empty_error(self, cleaned):
        # The engine sends a matching rule's reply whatever it is: a rule without one
        # would queue a message that cannot be sent (a silent hand-over is what
        # RCHAT["HANDOVER_PHRASES"] is for).
        return gettext("A rule needs a reply.")

    def clean(self):
        cleaned = super().clean()
        kind, match = cleaned.get("kind"), cleaned.get("match") or ""
        if kind == AutoReply.Kind.PATTERN:
            error = rules.pattern_error(match)
            if error:
                self.add_error("match", error)
        elif kind == AutoReply.Kind.KEYWORD:
            words = rules.keywords(match)
            if not words:
                self.add_error("match", gettext("Give at least one keyword (one per line)."))
            useless = [word for word in words if not rules.normalize(word)]
            if useless:
                self.add_error(
                    "match",
                    gettext(
                        "These keywords have no letter or digit, so they would never match: "
                        "%(words)s."
                    )
                    % {"words": ", ".join(f"“{word}”" for word in useless)},
                )
        self._clean_reply(cleaned)
        return cleaned


class TryForm(forms.Form):
    """The "try it" box: what the bot would make of a message, nothing sent."""

    credential = forms.ModelChoiceField(
        label=_("Credential"),
        queryset=Credential.objects.only("pk", "name").order_by("name"),
        required=False,
        empty_label=_("None (rules for every credential only)"),
    )
    text = forms.CharField(
        label=_("Message"),
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )
    first = forms.BooleanField(label=_("First message of a new chat room"), required=False)

    def clean_text(self):
        text = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError(gettext("Type a message to try."))
        return text


def try_message(*, credential, text, first_message, at=None):
    """What the try-it box shows (a dict for the template)."""
    credential_id = credential.pk if credential is not None else None
    checks = rules.rules_explain(
        credential_id=credential_id, text=text, first_message=first_message
    )
    answers = [check for check in checks if check.answers]
    if answers and answers[0].rule.kind == AutoReply.Kind.GREETING:
        # As the engine does: a new chat room's greeting, then the first keyword or
        # pattern rule that matches as well.
        then = next(
            (c for c in checks if c.matched and c.rule.kind != AutoReply.Kind.GREETING), None
        )
        if then is not None:
            answers.append(then)
    answering = {check.rule.pk for check in answers}
    return {
        "credential": credential,
        "asks_for_person": rules.asks_for_person(text),
        "hours": (
            business_hours.hours_status(credential_id=credential_id, at=at or timezone.now())
            if credential is not None
            else None
        ),
        "checks": [
            {
                "check": check,
                "answers": check.rule.pk in answering,
                "reply": reply_preview(check.rule.reply_type, check.rule.reply_data),
                "url": reverse("admin:rchat_autoreply_change", args=[check.rule.pk]),
            }
            for check in checks
        ],
        "answers": answers,
    }


@admin.register(AutoReply)
class AutoReplyAdmin(BotAdmin):
    """The bot's rules, in the order they are tried; the list has a "try it" box."""

    form = AutoReplyForm
    list_display = [
        "name",
        "kind",
        "credential_shown",
        "position",
        "active",
        "reply_shown",
    ]
    list_editable = ["position", "active"]
    list_filter = ["kind", "credential", "active"]
    search_fields = ["name", "match"]
    ordering = ["position", "id"]
    fieldsets = [
        (None, {"fields": [("name", "active"), ("kind", "credential"), "match"]}),
        (_("Reply"), {"fields": ["reply_type", "reply_data", ("hand_over", "position")]}),
    ]

    #: GET parameters of the try-it box (prefix "try"): not the list's filters.
    try_prefix = "try"

    def get_queryset(self, request):
        # The credential's name only: joining the row would decrypt its tokens.
        return super().get_queryset(request).annotate(credential_name=F("credential__name"))

    @admin.display(description=_("credential"), ordering="credential__name")
    def credential_shown(self, obj):
        name = getattr(obj, "credential_name", None)
        if name is None and obj.credential_id:
            name = obj.credential.name
        return name or gettext("every credential")

    @admin.display(description=_("reply"))
    def reply_shown(self, obj):
        text = reply_preview(obj.reply_type, obj.reply_data)
        if obj.hand_over:
            text = gettext("%(reply)s, then to people") % {"reply": text}
        return text

    def changelist_view(self, request, extra_context=None):
        params = request.GET.copy()
        mine = [key for key in params if key.startswith(f"{self.try_prefix}-")]
        tried, form = None, TryForm(prefix=self.try_prefix)
        if mine:
            form = TryForm({key: params.getlist(key)[-1] for key in mine}, prefix=self.try_prefix)
            for key in mine:
                del params[key]
            # The list reads its filters from request.GET: an unknown parameter there
            # would be taken for a wrong filter (?e=1).
            request.GET = params
            if form.is_valid():
                tried = try_message(
                    credential=form.cleaned_data["credential"],
                    text=form.cleaned_data["text"],
                    first_message=form.cleaned_data["first"],
                )
        context = {**(extra_context or {}), "try_form": form, "tried": tried}
        return super().changelist_view(request, context)


# --- Business hours ------------------------------------------------------------------------


class ShiftForm(forms.ModelForm):
    class Meta:
        model = Shift
        fields = ["weekday", "start", "end"]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start is not None and end is not None and start == end:
            raise forms.ValidationError(
                gettext(
                    "A shift ends at another time than it starts (an end before the start "
                    "runs past midnight into the next day)."
                )
            )
        return cleaned


class ShiftInline(admin.TabularInline):
    model = Shift
    form = ShiftForm
    extra = 1


class HolidayInline(admin.TabularInline):
    model = Holiday
    fields = ["date", "name"]
    extra = 1


class BusinessHoursForm(ReplyFormMixin, forms.ModelForm):
    class Meta:
        model = BusinessHours
        fields = ["credential", "time_zone", "out_of_hours_handler", "reply_type", "reply_data"]
        help_texts = {"time_zone": _("An IANA time zone, such as Asia/Bangkok.")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reply_fields()
        self.fields["reply_data"].help_text = _(
            "Sent once when an end user writes outside business hours; empty: none. "
            "A text: just the text; other types as JSON."
        )

    def clean_time_zone(self):
        name = (self.cleaned_data.get("time_zone") or "").strip()
        if not business_hours.time_zone_valid(name):
            raise forms.ValidationError(
                gettext("“%(zone)s” is not a time zone; use a name such as Asia/Bangkok.")
                % {"zone": name}
            )
        return name

    def clean(self):
        cleaned = super().clean()
        self._clean_reply(cleaned)
        return cleaned


@admin.register(BusinessHours)
class BusinessHoursAdmin(BotAdmin):
    form = BusinessHoursForm
    inlines = [ShiftInline, HolidayInline]
    list_display = ["credential_name", "time_zone", "shifts_shown", "out_of_hours_handler", "now"]
    fieldsets = [
        (None, {"fields": ["credential", "time_zone"]}),
        (
            _("Out of business hours"),
            {"fields": ["out_of_hours_handler", "reply_type", "reply_data"]},
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(credential_name=F("credential__name"))
            .prefetch_related("shifts", "holidays")
        )

    @admin.display(description=_("credential"), ordering="credential__name")
    def credential_name(self, obj):
        return obj.credential_name

    @admin.display(description=_("shifts"))
    def shifts_shown(self, obj):
        return ", ".join(str(shift) for shift in obj.shifts.all()) or "—"

    @admin.display(description=_("now"))
    def now(self, obj):
        status = business_hours.status_of(
            obj,
            at=timezone.now(),
            shifts=list(obj.shifts.all()),
            holidays=list(obj.holidays.all()),
        )
        return format_html(
            '<span class="rchat-hours {}">{}</span> <span class="help">{}</span>',
            "open" if status.open else "closed",
            gettext("Open") if status.open else gettext("Closed"),
            status.why,
        )


# --- External bots -------------------------------------------------------------------------


class ExternalBotForm(forms.ModelForm):
    # Write-only, like a credential's token in rchat/admin.py: never filled from the
    # database; left empty on change, the stored secret is kept (clean_secret hands it
    # back, so the model field keeps its value).
    secret = forms.CharField(
        label=_("signing secret"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_(
            "Signs each forwarded body (HMAC-SHA256); the bot checks it with the same "
            "secret. Leave empty to keep the stored secret."
        ),
    )

    # A bot is reached over HTTPS: a URL typed without a scheme means https.
    url = ExternalBot._meta.get_field("url").formfield(assume_scheme="https")

    #: A shorter secret is guessed too easily to sign anything.
    SECRET_MIN_LENGTH = 16

    class Meta:
        model = ExternalBot
        fields = ["credential", "url", "secret", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Not even in the form's initial data: nothing can render it by mistake.
        self.initial.pop("secret", None)

    def clean_secret(self):
        secret = self.cleaned_data.get("secret") or ""
        if not secret:
            if self.instance.pk:
                return self.instance.secret
            raise forms.ValidationError(gettext("A new external bot needs its signing secret."))
        if len(secret) < self.SECRET_MIN_LENGTH:
            raise forms.ValidationError(
                gettext("The signing secret needs at least %(n)d characters.")
                % {"n": self.SECRET_MIN_LENGTH}
            )
        return secret


@admin.register(ExternalBot)
class ExternalBotAdmin(BotAdmin):
    form = ExternalBotForm
    list_display = ["credential_name", "url", "active", "masked_secret_shown", "created_at"]
    list_filter = ["active"]
    fields = ["credential", "url", "secret", "masked_secret_shown", "active", "latest_forwards"]
    readonly_fields = ["masked_secret_shown", "latest_forwards"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(credential_name=F("credential__name"))

    @admin.display(description=_("credential"), ordering="credential__name")
    def credential_name(self, obj):
        return obj.credential_name

    @admin.display(description=_("stored secret"))
    def masked_secret_shown(self, obj):
        return (obj.masked_secret if obj and obj.pk else "") or "—"

    @admin.display(description=_("latest forwards"))
    def latest_forwards(self, obj):
        if obj is None or not obj.pk:
            return "—"
        forwards = list(
            BotForward.objects.filter(message__room__credential_id=obj.credential_id).order_by(
                "-started_at", "-id"
            )[:FORWARDS_SHOWN]
        )
        if not forwards:
            return gettext("No message forwarded yet.")
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">#{}</a></td><td>{}</td><td class="{}">{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    when_html(forward.started_at),
                    reverse("admin:rchat_message_change", args=[forward.message_id]),
                    forward.message_id,
                    forward.attempt,
                    f"rchat-forward {forward.outcome}",
                    forward.get_outcome_display(),
                    forward.http_status or "—",
                    forward.duration_ms,
                    # An error text quoting the secret shows its mask only.
                    payloads.short(crypto.redact(forward.error, obj.secret), 160) or "—",
                )
                for forward in forwards
            ),
        )
        return format_html(
            '<table class="rchat-forwards"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            gettext("started at"),
            gettext("message"),
            gettext("attempt"),
            gettext("outcome"),
            gettext("HTTP status"),
            gettext("duration (ms)"),
            gettext("error"),
            rows,
        )


# --- The chat rooms' replay action ---------------------------------------------------------


@admin.action(
    description=_("Replay the bot over these conversations (nothing is sent)"),
    permissions=["view"],
)
def replay_action(modeladmin, request, queryset):
    """For ChatRoomAdmin.actions: a page of the inbound messages whose answer would
    differ today (rules and the site's bot as they are now), nothing sent or written."""
    from .replay import replay

    report = replay(rooms=queryset, limit=REPLAY_ADMIN_LIMIT, keep_same=False)
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": gettext("Bot replay"),
        "opts": opts,
        "app_label": opts.app_label,
        "report": report,
        "differences": [
            {
                "result": result,
                "room_url": reverse("admin:rchat_chatroom_change", args=[result.room_id]),
                "message_url": reverse("admin:rchat_message_change", args=[result.message_id]),
            }
            for result in report.differences
        ],
        "limit": REPLAY_ADMIN_LIMIT,
    }
    return TemplateResponse(request, "admin/rchat/replay.html", context)
