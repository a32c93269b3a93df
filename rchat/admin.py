"""Django admin for operators: credentials, chat rooms, messages, webhook events, broadcasts,
private notes."""

import csv
import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Q
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.crypto import constant_time_compare
from django.utils.html import format_html, format_html_join
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, ngettext_lazy

from . import charts, crypto, payloads, selectors, services

# The chatbot back-office's own pages (rules, business hours, external bots) register
# themselves on import; the replay action is offered with the chat rooms.
from .bots import admin as _bots_admin  # noqa: F401
from .bots.admin import replay_action
from .bots.stats import bot_stats
from .exceptions import InvalidMessage, RChatAPIError, RChatConfigurationError, RChatError
from .forms import NoteForm
from .models import (
    Attachment,
    Broadcast,
    CannedResponse,
    ChatRoom,
    Credential,
    DeliveryAttempt,
    ErrorKind,
    Label,
    Message,
    Note,
    WebhookEvent,
)
from .services.broadcasts import SKIP_REASONS
from .ui.messages import person_name, with_parts
from .ui.notes import note_body_html
from .ui.presence import presence_answer
from .ui.reply import ReplyForm, reply_send
from .ui.rooms import room_handler_parts
from .ui.when import WhenFieldsAdmin, day_label, when_html


class CredentialForm(forms.ModelForm):
    # Secrets are write-only in admin: the field is never filled from the database,
    # and left empty on change it keeps the stored token. It is not a model field of
    # the form, so only CredentialAdmin.save_model (through the services) stores it.
    token = forms.CharField(
        label=_("Chatday-Token"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("From R-Chat's settings, menu “R-Chat API”. Leave empty to keep."),
    )

    # R-Chat is reached over HTTPS: a URL typed without a scheme means https.
    base_url = Credential._meta.get_field("base_url").formfield(assume_scheme="https")

    class Meta:
        model = Credential
        fields = ["name", "base_url", "send_rate", "bot_first"]

    def clean_send_rate(self):
        rate = self.cleaned_data.get("send_rate")
        if rate is not None and rate <= 0:
            raise forms.ValidationError(
                _("The send rate must be a number of messages per second above 0.")
            )
        return rate

    def clean_token(self):
        token = self.cleaned_data.get("token")
        if not token and not self.instance.pk:
            raise forms.ValidationError(_("A new credential needs its Chatday-Token."))
        return token

    def clean(self):
        # What every way of saving a credential checks, shown as a form error.
        cleaned = super().clean()
        if not self.errors:
            try:
                services.credential_check(
                    name=cleaned.get("name"),
                    token=cleaned.get("token"),
                    base_url=cleaned.get("base_url"),
                    new=not self.instance.pk,
                )
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


def _search_words(term):
    """The words of an admin search, as Django splits them: "quoted phrases" whole."""
    for bit in smart_split(term):
        if bit[:1] in ('"', "'") and bit[-1:] == bit[:1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit.strip():
            yield bit.strip()


class SubstringSearch:
    """Admin's search box through rchat.search: every word must match
    ``search_condition(word)`` (a Q), a substring in any script and case, served by the
    trigram indexes on PostgreSQL. ``search_fields`` only says a box is shown."""

    def search_condition(self, word):
        raise NotImplementedError

    def get_search_results(self, request, queryset, search_term):
        for word in _search_words(search_term):
            queryset = queryset.filter(self.search_condition(word))
        # Conditions, not joins: a row never comes twice.
        return queryset, False


class RChatAdmin(WhenFieldsAdmin, admin.ModelAdmin):
    """What every rchat admin page shares; its date-time columns and read-only fields
    show times as the inbox does (rchat.ui.when)."""

    def get_changelist_instance(self, request):
        # A filter value with a NUL character reaches the database, which refuses it
        # (a 500 on PostgreSQL): treat it as admin treats any wrong filter ("?e=1").
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            raise IncorrectLookupParameters("NUL in a filter value")
        return super().get_changelist_instance(request)


@admin.register(Credential)
class CredentialAdmin(RChatAdmin):
    form = CredentialForm
    list_display = [
        "name",
        "status",
        "masked_token",
        "registered_at",
        "last_webhook_at",
        "bot_first",
        "webhook_url_copy",
        "last_error_plain",
    ]
    list_filter = ["status", "bot_first"]
    search_fields = ["name"]
    readonly_fields = [
        "masked_token",
        "masked_signature_token",
        "status",
        "registered_at",
        "last_error_plain",
        "last_error_at",
        "last_webhook_at",
        "webhook_url_copy",
    ]
    actions = ["register", "rotate", "test_connection"]

    class Media:
        # The webhook URL's "Copy" button, on the list and the change page.
        js = ["rchat/admin.js"]

    def save_model(self, request, obj, form, change):
        # Through the services, like every other way of saving a credential.
        fields = {
            "name": form.cleaned_data["name"],
            "base_url": form.cleaned_data["base_url"],
            "send_rate": form.cleaned_data.get("send_rate"),
        }
        if "bot_first" in form.changed_data:
            fields["bot_first"] = form.cleaned_data["bot_first"]
        token = form.cleaned_data.get("token")
        if not change:
            obj.pk = services.credential_save(token=token, **fields).pk
            obj.refresh_from_db()
            return
        services.credential_save(credential=obj, **fields)
        if not token or constant_time_compare(token, obj.token):
            return
        # A new Chatday-Token on a working credential: register it first, so a
        # mistyped token never replaces one that works.
        try:
            services.credential_register(credential=obj, token=token)
        except (RChatAPIError, RChatConfigurationError) as exc:
            self.message_user(
                request,
                _("The new Chatday-Token was not saved: R-Chat did not accept it. %(reason)s")
                % {"reason": crypto.redact(exc, token)},
                messages.ERROR,
            )
        else:
            self.message_user(
                request,
                _("R-Chat accepted the new Chatday-Token; the credential is registered."),
                messages.SUCCESS,
            )

    @admin.display(description=_("Chatday-Token"))
    def masked_token(self, obj):
        return obj.masked_token

    @admin.display(description=_("Chatday-Signature-Token"))
    def masked_signature_token(self, obj):
        return obj.masked_signature_token or "—"

    @admin.display(description=_("webhook URL"))
    def webhook_url_copy(self, obj):
        if not obj.pk:
            return _("Shown once the credential is saved.")
        # rchat/admin.js copies the data attribute: no inline script, so the page works
        # under a strict Content-Security-Policy (and any URL or translation is safe).
        return format_html(
            '<code class="rchat-webhook-url">{url}</code> '
            '<button type="button" class="button rchat-copy" data-copy="{url}" '
            'data-copied="{copied}">{label}</button>',
            url=obj.webhook_url(),
            copied=_("Copied"),
            label=_("Copy"),
        )

    @admin.display(description=_("last error"))
    def last_error_plain(self, obj):
        if not obj.last_error:
            return "—"
        if not obj.last_error_advice:
            return obj.last_error
        return format_html("{}<br><small>{}</small>", obj.last_error_advice, obj.last_error)

    # Each action calls R-Chat and changes the credential: it needs "change", not only
    # "view" (an action without permissions is offered to anyone who sees the list).
    @admin.action(
        description=_("Rotate the signature token (the old one works for a grace period)"),
        permissions=["change"],
    )
    def rotate(self, request, queryset):
        done = 0
        for credential in queryset:
            try:
                services.credential_register(credential=credential, rotate=True)
            except (RChatAPIError, RChatConfigurationError) as exc:
                self.message_user(
                    request,
                    _("Rotation failed for %(name)s: %(reason)s")
                    % {"name": credential.name, "reason": exc},
                    messages.ERROR,
                )
            else:
                done += 1
        if done:
            self.message_user(
                request,
                ngettext(
                    "%(count)d credential has a new signature token.",
                    "%(count)d credentials have a new signature token.",
                    done,
                )
                % {"count": done},
                messages.SUCCESS,
            )

    @admin.action(description=_("Test the connection to R-Chat"), permissions=["change"])
    def test_connection(self, request, queryset):
        for credential in queryset:
            try:
                status = services.credential_test_connection(credential=credential)
            except (RChatAPIError, RChatConfigurationError) as exc:
                reason = _advice(exc)
                self.message_user(
                    request,
                    _("%(name)s: the test failed. %(reason)s")
                    % {"name": credential.name, "reason": reason},
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    _(
                        "%(name)s: R-Chat accepted the Chatday-Token (HTTP %(status)d to an "
                        "empty test message; nothing was sent to anyone)."
                    )
                    % {"name": credential.name, "status": status},
                    messages.SUCCESS,
                )

    @admin.action(description=_("Register with R-Chat"), permissions=["change"])
    def register(self, request, queryset):
        done = 0
        for credential in queryset:
            try:
                services.credential_register(credential=credential)
            except (RChatAPIError, RChatConfigurationError) as exc:
                # The error text comes from the client with the token already masked.
                self.message_user(
                    request,
                    _("Register failed for %(name)s: %(reason)s")
                    % {"name": credential.name, "reason": exc},
                    messages.ERROR,
                )
            else:
                done += 1
                self.message_user(
                    request,
                    _("%(name)s: paste this webhook URL into R-Chat: %(url)s")
                    % {"name": credential.name, "url": credential.webhook_url()},
                    messages.SUCCESS,
                )
        if done:
            self.message_user(
                request,
                ngettext(
                    "%(count)d credential registered.",
                    "%(count)d credentials registered.",
                    done,
                )
                % {"count": done},
                messages.SUCCESS,
            )


# --- Presentation helpers ---------------------------------------------------------------


def _advice(exc):
    """What to do about an error from R-Chat, in plain words; the error itself otherwise."""
    kind = getattr(exc, "kind", "")
    if kind in (ErrorKind.REJECTED, ErrorKind.RESPONSE):
        return str(exc)  # R-Chat's own answer says more than a general hint
    return ErrorKind.advice(kind) or str(exc)


def _short(text, length=80):
    return payloads.short(" ".join((text or "").split()), length)


def _pretty_json(value):
    return format_html(
        '<pre class="rchat-pre">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False)
    )


# --- Chat rooms ----------------------------------------------------------------------------


class AssigneeFilter(admin.SimpleListFilter):
    title = _("assigned to")
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        return [("me", _("Me")), ("nobody", _("Nobody")), ("others", _("Someone else"))]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(assignee=request.user)
        if self.value() == "nobody":
            return queryset.filter(assignee__isnull=True)
        if self.value() == "others":
            return queryset.exclude(assignee=request.user).exclude(assignee__isnull=True)
        return queryset


class UnreadFilter(admin.SimpleListFilter):
    title = _("unread")
    parameter_name = "unread"

    def lookups(self, request, model_admin):
        return [("yes", _("Has unread messages")), ("no", _("All read"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(unread_count__gt=0)
        if self.value() == "no":
            return queryset.filter(unread_count=0)
        return queryset


class BroadcastForm(ReplyForm):
    """The broadcast page's form: a reply's fields and a name for the broadcast."""

    broadcast_name = forms.CharField(
        label=_("Name"),
        required=False,
        max_length=Broadcast._meta.get_field("name").max_length,
        help_text=_("Optional; shown in the list of broadcasts."),
    )
    ERROR_FIELDS = {**ReplyForm.ERROR_FIELDS, "name": "broadcast_name"}
    # A broadcast sends one message to many rooms; a file is uploaded for one room.
    file = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["text"].widget.attrs["placeholder"] = _("Write the message…")


def label_chips(labels):
    """Labels as small coloured chips (the colours are classes of rchat/labels.css)."""
    return (
        format_html_join(
            " ",
            '<span class="rchat-label rchat-label-{}">{}</span>',
            ((label.color, label.name) for label in labels),
        )
        or "—"
    )


class LabelForm(forms.ModelForm):
    class Meta:
        model = Label
        fields = ["name", "color", "description"]

    def clean(self):
        # What label_save checks (the name's case ignored), shown next to the name.
        cleaned = super().clean()
        if "name" in cleaned and "color" in cleaned:
            try:
                cleaned["name"] = services.label_check(
                    name=cleaned["name"], color=cleaned["color"], label=self.instance
                )
            except ValueError as exc:
                self.add_error("name", str(exc))
        return cleaned

    def validate_constraints(self, exclude=None):
        # clean() has said why a name is taken, in words; not the constraint's name.
        pass


@admin.register(Label)
class LabelAdmin(RChatAdmin):
    """The labels staff put on chat rooms; their names are unique whatever their case."""

    form = LabelForm
    list_display = ["name", "swatch", "rooms_count", "description"]
    search_fields = ["name", "description"]
    list_filter = ["color"]

    class Media:
        css = {"all": ["rchat/labels.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(rooms_count=Count("rooms"))

    @admin.display(description=_("colour"), ordering="color")
    def swatch(self, obj):
        return format_html(
            '<span class="rchat-label rchat-label-{}">{}</span>', obj.color, obj.get_color_display()
        )

    @admin.display(description=_("chat rooms"), ordering="rooms_count")
    def rooms_count(self, obj):
        return obj.rooms_count

    def save_model(self, request, obj, form, change):
        services.label_save(
            name=form.cleaned_data["name"],
            color=form.cleaned_data["color"],
            description=form.cleaned_data["description"],
            label=obj,
        )


class CannedDataField(forms.JSONField):
    """A text as typed (no quotes needed); an object or a quoted string as JSON."""

    def to_python(self, value):
        if (value or "").strip()[:1] in ("{", "[", '"'):
            return super().to_python(value)
        return value

    def prepare_value(self, value):
        return value if isinstance(value, str) else super().prepare_value(value)


class CannedResponseForm(forms.ModelForm):
    type = forms.ChoiceField(label=_("type"), choices=[(t, t) for t in payloads.OUTBOUND_TYPES])
    data = CannedDataField(
        label=_("data"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_(
            "A text as it is sent, or another type's data as JSON, such as "
            '{"url": "https://…"}. {name} becomes the customer\'s name, {agent} yours.'
        ),
    )

    class Meta:
        model = CannedResponse
        fields = ["shortcut", "title", "type", "data", "owner"]
        help_texts = {
            "owner": _("Empty: shared with everyone. A user: personal to them."),
        }

    def clean(self):
        # What canned_save checks, shown next to the field it is about.
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            cleaned["shortcut"], cleaned["title"], cleaned["data"] = services.canned_check(
                shortcut=cleaned.get("shortcut"),
                title=cleaned.get("title"),
                type=cleaned.get("type"),
                data=cleaned.get("data"),
                owner=cleaned.get("owner"),
                canned=self.instance,
            )
        except InvalidMessage as exc:
            self.add_error("type" if "type" in exc.errors else "data", str(exc))
        except ValueError as exc:
            self.add_error("title" if "title" in str(exc) else "shortcut", str(exc))
        return cleaned

    def validate_constraints(self, exclude=None):
        # clean() has said why a shortcut is taken, in words; not the constraint's name.
        pass


class SharedFilter(admin.SimpleListFilter):
    title = _("shared or personal")
    parameter_name = "shared"

    def lookups(self, request, model_admin):
        return [("yes", _("Shared")), ("no", _("Personal"))]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(owner__isnull=self.value() == "yes")
        return queryset


@admin.register(CannedResponse)
class CannedResponseAdmin(RChatAdmin):
    """Canned responses: the shared ones, changed only with the "manage shared"
    permission, and each agent's own. A superuser sees everyone's; others see the
    shared ones and their own."""

    form = CannedResponseForm
    list_display = ["shortcut_display", "title", "type", "shared", "owner"]
    list_filter = [SharedFilter, "type"]
    search_fields = ["shortcut", "title"]

    @admin.display(description=_("shortcut"), ordering="shortcut")
    def shortcut_display(self, obj):
        return f"/{obj.shortcut}"

    @admin.display(description=_("shared"), boolean=True, ordering="owner")
    def shared(self, obj):
        return obj.is_shared

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("owner")
        if request.user.is_superuser:
            return queryset
        return queryset.filter(Q(owner__isnull=True) | Q(owner=request.user))

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        owner = form.base_fields.get("owner")
        if owner is not None and not request.user.is_superuser:
            # Only their own, or (with the permission) shared: nobody else's.
            owner.queryset = owner.queryset.filter(pk=request.user.pk)
            owner.initial = request.user.pk
            owner.required = not request.user.has_perm(services.MANAGE_SHARED_PERMISSION)
        return form

    def _can_manage(self, request, obj):
        return obj is None or services.canned_can_manage(canned=obj, user=request.user)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._can_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._can_manage(request, obj)

    def save_model(self, request, obj, form, change):
        owner = form.cleaned_data.get("owner")
        if owner is None and not request.user.has_perm(services.MANAGE_SHARED_PERMISSION):
            raise PermissionDenied
        services.canned_save(
            shortcut=form.cleaned_data["shortcut"],
            title=form.cleaned_data["title"],
            type=form.cleaned_data["type"],
            data=form.cleaned_data["data"],
            owner=owner,
            canned=obj,
        )

    def delete_model(self, request, obj):
        services.canned_delete(canned=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for canned in queryset:
            if services.canned_can_manage(canned=canned, user=request.user):
                services.canned_delete(canned=canned, user=request.user)


@admin.register(ChatRoom)
class ChatRoomAdmin(SubstringSearch, RChatAdmin):
    """Conversations: a list to triage, and a change page to read and answer."""

    #: Messages shown on the change page (the newest ones); older ones are in the
    #: message list.
    conversation_limit = 100

    # What an operator triages by comes first; ids and the credential last.
    list_display = [
        "__str__",
        "labels_shown",
        "unread_count",
        "status",
        "handler",
        "assignee",
        "last_message_at",
        "channel",
        "chat_id",
        "credential_name",
    ]
    list_display_links = ["__str__", "chat_id"]
    # Only the assignee is joined: the credential row would decrypt its tokens for
    # every room, and its name comes as an annotation instead.
    list_select_related = ["assignee"]
    list_filter = [
        "status",
        "handler",
        "channel",
        AssigneeFilter,
        UnreadFilter,
        "labels",
        "credential",
    ]
    search_fields = ["chat_id", "display_name", "messages__text"]
    search_help_text = _("Chat id, end user's name or message text.")

    def search_condition(self, word):
        # The inbox's search (one or two letters: names and labels only).
        return selectors.room_matches(word)

    fields = [
        ("credential", "channel"),
        ("chat_id", "display_name"),
        ("status", "assignee"),
        "labels",
        ("handler", "handler_since", "handover_reason"),
        ("last_message_at", "unread_count", "created_at"),
        "handover_history",
    ]
    # Who handles the room changes through the Take over / Return buttons and actions
    # (services/handover.py records each change), never by editing the field.
    readonly_fields = [
        "credential",
        "chat_id",
        "channel",
        "display_name",
        "handler",
        "handler_since",
        "handover_reason",
        "last_message_at",
        "unread_count",
        "created_at",
        "handover_history",
    ]
    actions = [
        "close_rooms",
        "reopen_rooms",
        "assign_to_me",
        "take_over",
        "return_to_bot",
        "send_broadcast",
        replay_action,
    ]
    change_form_template = "admin/rchat/chatroom/change_form.html"
    change_list_template = "admin/rchat/chatroom/change_list.html"
    filter_horizontal = ["labels"]

    class Media:
        css = {"all": ["rchat/labels.css"]}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(credential_name=F("credential__name"))
            .prefetch_related("labels")
        )

    @admin.display(description=_("labels"))
    def labels_shown(self, obj):
        return label_chips(obj.labels.all())

    def save_related(self, request, form, formsets, change):
        # The labels go through their service, not the form's save_m2m.
        if "labels" in form.changed_data:
            services.room_labels_set(room=form.instance, labels=form.cleaned_data["labels"])
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.display(description=_("credential"), ordering="credential__name")
    def credential_name(self, obj):
        return obj.credential_name

    def has_add_permission(self, request):
        # Chat rooms come from R-Chat's webhooks; there is nothing to create by hand.
        return False

    def has_reply_permission(self, request, obj=None):
        return request.user.has_perm("rchat.reply_chatroom")

    @admin.display(description=_("hand-overs (latest first)"))
    def handover_history(self, obj):
        if not obj.pk:
            return "—"
        handovers = selectors.room_handovers(room=obj)
        if not handovers:
            return _("None yet.")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    when_html(h.at),
                    h.get_to_display(),
                    h.get_reason_display(),
                    h.detail or "—",
                    person_name(h.by) if h.by else "—",
                )
                for h in handovers
            ),
        )
        return format_html(
            '<table class="rchat-handovers"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("at"),
            _("handed to"),
            _("reason"),
            _("detail"),
            _("by"),
            rows,
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "assignee":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        # Status and assignee are the only editable fields; each change goes through
        # its service like everywhere else.
        if "assignee" in form.changed_data:
            services.room_assign(room=obj, user=form.cleaned_data["assignee"])
        if "status" in form.changed_data:
            if obj.status == ChatRoom.Status.CLOSED:
                services.room_close(room=obj)
            else:
                services.room_reopen(room=obj)

    # --- actions ---

    @admin.action(description=_("Close the selected chat rooms"), permissions=["change"])
    def close_rooms(self, request, queryset):
        self._for_each_room(
            request,
            queryset.filter(status=ChatRoom.Status.OPEN),
            lambda room: services.room_close(room=room),
            ngettext_lazy("%(count)d chat room closed.", "%(count)d chat rooms closed.", "count"),
        )

    @admin.action(description=_("Reopen the selected chat rooms"), permissions=["change"])
    def reopen_rooms(self, request, queryset):
        self._for_each_room(
            request,
            queryset.filter(status=ChatRoom.Status.CLOSED),
            lambda room: services.room_reopen(room=room),
            ngettext_lazy(
                "%(count)d chat room reopened.", "%(count)d chat rooms reopened.", "count"
            ),
        )

    @admin.action(description=_("Assign the selected chat rooms to me"), permissions=["change"])
    def assign_to_me(self, request, queryset):
        self._for_each_room(
            request,
            queryset,
            lambda room: services.room_assign(room=room, user=request.user),
            ngettext_lazy(
                "%(count)d chat room assigned to you.",
                "%(count)d chat rooms assigned to you.",
                "count",
            ),
        )

    @admin.action(
        description=_("Send a broadcast to the selected chat rooms"), permissions=["reply"]
    )
    def send_broadcast(self, request, queryset):
        """A page with the message to send; on submit, ``services.broadcast_create``."""
        submitted = "_broadcast" in request.POST
        form = BroadcastForm(request.POST if submitted else None, prefix="broadcast")
        if submitted and form.is_valid():
            try:
                broadcast = services.broadcast_create(
                    rooms=queryset,
                    type=form.message_type(),
                    data=form.message_data(),
                    author=request.user,
                    name=form.cleaned_data["broadcast_name"],
                )
            except InvalidMessage as exc:
                form.add_service_errors(exc)
            else:
                self.message_user(request, broadcast_summary(broadcast), messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:rchat_broadcast_change", args=[broadcast.pk])
                )
        audience = selectors.broadcast_audience(rooms=queryset)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Send a broadcast"),
            "opts": self.model._meta,
            "form": form,
            "audience": audience,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action": request.POST.get("action", "send_broadcast"),
        }
        return TemplateResponse(request, "rchat/admin/broadcast_form.html", context)

    @admin.action(description=_("Take over (assign to me)"), permissions=["reply"])
    def take_over(self, request, queryset):
        self._for_each_room_that_may_fail(
            request,
            queryset,
            lambda room: services.room_take_over(room=room, user=request.user),
            ngettext_lazy(
                "%(count)d chat room taken over: people answer it, the bot is silent.",
                "%(count)d chat rooms taken over: people answer them, the bot is silent.",
                "count",
            ),
            ngettext_lazy(
                "%(count)d chat room could not be taken over: %(reasons)s",
                "%(count)d chat rooms could not be taken over: %(reasons)s",
                "count",
            ),
        )

    @admin.action(description=_("Return to the bot"), permissions=["reply"])
    def return_to_bot(self, request, queryset):
        self._for_each_room_that_may_fail(
            request,
            queryset,
            lambda room: services.room_return_to_bot(room=room, by=request.user),
            ngettext_lazy(
                "%(count)d chat room returned to the bot.",
                "%(count)d chat rooms returned to the bot.",
                "count",
            ),
            ngettext_lazy(
                "%(count)d chat room could not be returned to the bot: %(reasons)s",
                "%(count)d chat rooms could not be returned to the bot: %(reasons)s",
                "count",
            ),
        )

    def _for_each_room(self, request, rooms, change, done):
        rooms = list(rooms)
        for room in rooms:
            change(room)
        self.message_user(request, done % {"count": len(rooms)}, messages.SUCCESS)

    def _for_each_room_that_may_fail(self, request, rooms, change, done, failed):
        """``change`` each room; one message counts those done, one those refused (why)."""
        succeeded, refused = 0, []
        for room in rooms.order_by("pk"):
            try:
                change(room)
            except InvalidMessage as exc:
                refused.append(f"{room}: {exc}")
            else:
                succeeded += 1
        if succeeded or not refused:
            self.message_user(request, done % {"count": succeeded}, messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                failed % {"count": len(refused), "reasons": "; ".join(refused[:10])},
                messages.ERROR,
            )

    # --- the conversation and the reply form ---

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("overview/", view(self.overview_view), name="rchat_overview"),
            path("overview/bot.csv", view(self.bot_csv_view), name="rchat_overview_bot_csv"),
            path(
                "<path:object_id>/take-over/",
                view(self.take_over_view),
                name="rchat_chatroom_take_over",
            ),
            path(
                "<path:object_id>/return-to-bot/",
                view(self.return_to_bot_view),
                name="rchat_chatroom_return_to_bot",
            ),
            # The conversation, live (admin_live.js polls it) ...
            path("<path:object_id>/live/", view(self.live_view), name="rchat_chatroom_live"),
            # ... who else has it open (presence.js reports it) ...
            path(
                "<path:object_id>/presence/",
                view(self.presence_view),
                name="rchat_chatroom_presence",
            ),
            # ... and sending a failed reply again from it.
            path(
                "<path:object_id>/messages/<int:message_pk>/retry/",
                view(self.retry_view),
                name="rchat_chatroom_retry",
            ),
            *super().get_urls(),
        ]

    def _handler_change_view(self, request, object_id, change, done):
        """The conversation's Take over / Return to the bot buttons (POST only)."""
        room = self.get_object(request, unquote(object_id))
        if room is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST" or not self.has_reply_permission(request, room):
            raise PermissionDenied
        try:
            change(room)
        except InvalidMessage as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:rchat_chatroom_change", args=[room.pk]) + "#rchat-handling"
        )

    def take_over_view(self, request, object_id):
        return self._handler_change_view(
            request,
            object_id,
            lambda room: services.room_take_over(room=room, user=request.user),
            _("You took over this chat room: the bot stays silent."),
        )

    def return_to_bot_view(self, request, object_id):
        return self._handler_change_view(
            request,
            object_id,
            lambda room: services.room_return_to_bot(room=room, by=request.user),
            _("Chat room returned to the bot."),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        room = self.get_object(request, unquote(object_id))
        if room is None or not self.has_view_permission(request, room):
            return super().change_view(request, object_id, form_url, extra_context)
        reply_form = note_form = None
        if request.method == "POST" and "_reply" in request.POST:
            if not self.has_reply_permission(request, room):
                raise PermissionDenied
            reply_form = ReplyForm(request.POST, request.FILES, prefix="reply")
            if reply_form.is_valid() and self._send_reply(request, room, reply_form):
                return HttpResponseRedirect(request.path + "#rchat-reply")
            # Show the page again with the reply form and its errors; the room's own
            # form is not being submitted.
            request.method = "GET"
        elif request.method == "POST" and "_note" in request.POST:
            if not self.has_reply_permission(request, room):
                raise PermissionDenied
            note_form = NoteForm(request.POST, prefix="note")
            if note_form.is_valid() and self._add_note(request, room, note_form):
                return HttpResponseRedirect(request.path + "#rchat-notes")
            # The page again with the note as typed and the reason next to it.
            request.method = "GET"
        elif request.method == "GET":
            services.room_mark_read(room=room)
            services.mentions_seen(user=request.user, room=room)
        if reply_form is None and self.has_reply_permission(request, room):
            reply_form = ReplyForm(prefix="reply")
        context = {
            **(extra_context or {}),
            **self.conversation_context(request, room),
            **self.notes_context(request, room, note_form),
            "reply_form": reply_form,
        }
        return super().change_view(request, object_id, form_url, context)

    def _send_reply(self, request, room, form):
        try:
            reply_send(form, room=room, request=request)
        except InvalidMessage as exc:
            # What only the room can tell (closed, handled by the bot …).
            form.add_service_errors(exc)
            return False
        self.message_user(request, _("Reply queued for delivery."), messages.SUCCESS)
        return True

    def _add_note(self, request, room, form):
        try:
            services.note_add(room=room, author=request.user, body=form.cleaned_data["body"])
        except ValidationError as exc:
            form.add_error("body", exc)
            return False
        self.message_user(request, _("Note added."), messages.SUCCESS)
        return True

    def notes_context(self, request, room, note_form=None):
        """The room's latest private notes (two queries), and the form to add one."""
        notes, older = selectors.room_notes(room=room)
        for note in notes:
            note.body_html = note_body_html(note, viewer=request.user)
        can_add = self.has_reply_permission(request, room)
        return {
            "notes": notes,
            "notes_older": older,
            "notes_url": reverse("admin:rchat_note_changelist") + f"?room__id__exact={room.pk}",
            "note_form": (note_form or NoteForm(prefix="note")) if can_add else None,
        }

    def conversation_context(self, request, room, present=None):
        """The newest messages of ``room`` drawn by the inbox's template
        (``rchat/_message.html``), with what the live poll needs (a fixed number of
        queries, whatever the length of the thread)."""
        thread, more = selectors.room_conversation(room=room, limit=self.conversation_limit)
        since_id = thread[0].pk if thread else 0
        if present is None:
            present = selectors.room_presence(room=room, user=request.user)
        return {
            "room": room,
            "conversation": with_parts(thread),
            "conversation_truncated": more,
            "room_messages_url": reverse("admin:rchat_message_changelist")
            + f"?room__id__exact={room.pk}",
            "can_reply": self.has_reply_permission(request, room),
            "handling": room_handler_parts(room),
            "take_over_url": reverse("admin:rchat_chatroom_take_over", args=[room.pk]),
            "return_to_bot_url": reverse("admin:rchat_chatroom_return_to_bot", args=[room.pk]),
            "present": present,
            "live_url": reverse("admin:rchat_chatroom_live", args=[room.pk]),
            "presence_url": reverse("admin:rchat_chatroom_presence", args=[room.pk]),
            "since_id": since_id,
            "version": self._live_version(room, since_id, present),
        }

    # --- the conversation, live ---
    # admin_live.js asks live_view every two seconds for the conversation; it answers
    # 204 while nothing shown changed (new messages, a reply's status, who else is
    # there), and the conversation's HTML otherwise. presence.js reports to
    # presence_view that the operator has the room open, or types in it.

    @staticmethod
    def _live_version(room, since_id, present):
        version = selectors.room_thread_version(room=room, since_id=since_id)
        return f"{version}.{selectors.presence_version(present)}"

    def _viewable_room(self, request, object_id):
        room = self.get_object(request, unquote(object_id))
        if room is None:
            raise Http404(_("No such chat room."))
        if not self.has_view_permission(request, room):
            raise PermissionDenied
        return room

    def live_view(self, request, object_id):
        """The conversation alone, for the change page's poll: 204 while ``v`` is current."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        room = self._viewable_room(request, object_id)
        since = request.GET.get("since", "")
        since_id = int(since) if since.isdigit() else 0
        present = selectors.room_presence(room=room, user=request.user)
        if request.GET.get("v") == self._live_version(room, since_id, present):
            return HttpResponse(status=204)
        # The operator is looking at the conversation: what arrives is read.
        services.room_mark_read(room=room)
        context = self.conversation_context(request, room, present=present)
        return TemplateResponse(request, "admin/rchat/chatroom/_conversation.html", context)

    def presence_view(self, request, object_id):
        """The page's beat: ``state`` is "viewing", "typing" or "left"; 204, or 400 with
        the reason as JSON."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        room = self._viewable_room(request, object_id)
        return presence_answer(request, room)

    def retry_view(self, request, object_id, message_pk):
        """Send a failed reply of this chat room again (POST), then back to it."""
        room = self._viewable_room(request, object_id)
        if request.method != "POST" or not self.has_reply_permission(request, room):
            raise PermissionDenied
        message = get_object_or_404(
            Message, pk=message_pk, room=room, direction=Message.Direction.OUT
        )
        try:
            services.message_retry(message=message)
        except InvalidMessage as exc:
            self.message_user(
                request, _("Could not retry: %(reason)s") % {"reason": exc}, messages.ERROR
            )
        else:
            self.message_user(request, _("Message queued again."), messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:rchat_chatroom_change", args=[room.pk]) + f"#message-{message.pk}"
        )

    # --- overview ---

    def overview_view(self, request):
        """Messages per day, delivery success, how the bot is doing, what needs attention."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = _overview_days(request)
        figures = selectors.admin_overview(days=days)
        labels = [day_label(day) for day in figures["days"]]
        chart = charts.grouped_bar_chart(
            labels=labels,
            series=[(_("Inbound"), figures["inbound"]), (_("Outbound"), figures["outbound"])],
            title=_("Messages per day, last %(days)d days") % {"days": days},
            label_every=1 if days <= 14 else 3,
        )
        ratio = charts.ratio_bar(
            parts=[(_("Sent"), figures["sent"]), (_("Failed"), figures["failed"])],
            title=_("Delivery success"),
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("R-Chat overview"),
            "opts": self.model._meta,
            "app_label": self.model._meta.app_label,
            "figures": figures,
            "days": days,
            "chart": chart,
            "ratio": ratio,
            "total_in": sum(figures["inbound"]),
            "total_out": sum(figures["outbound"]),
            "failed_url": reverse("admin:rchat_message_changelist") + "?status__exact=failed",
            "invalid_url": reverse("admin:rchat_credential_changelist") + "?status__exact=invalid",
            **bot_overview(days),
        }
        return TemplateResponse(request, "admin/rchat/overview.html", context)

    def bot_csv_view(self, request):
        """The bot's figures of the overview's period, one row per day, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = _overview_days(request)
        stats = bot_stats(days=days)
        # A BOM first: Excel reads a CSV without one in the machine's legacy code page,
        # and Thai (the headings, the reasons) comes out garbled.
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response.write("\ufeff")
        today = stats.days[-1].day
        response["Content-Disposition"] = (
            f'attachment; filename="rchat-bot-{today:%Y-%m-%d}-{days}d.csv"'
        )
        writer = csv.writer(response)
        writer.writerow(
            [
                _("date"),
                _("conversations"),
                _("answered by the bot alone"),
                _("handed to people"),
                _("neither"),
                _("bot first response, median (s)"),
                _("bot first response, p90 (s)"),
                _("people first response, median (s)"),
                _("people first response, p90 (s)"),
                *(
                    _("hand-over: %(reason)s") % {"reason": label}
                    for _value, label, _count in stats.reasons
                ),
            ]
        )
        for day in stats.days:
            writer.writerow(
                [
                    day.day.isoformat(),
                    day.conversations,
                    day.bot_alone,
                    day.to_people,
                    day.neither,
                    _csv_seconds(day.bot_response.median),
                    _csv_seconds(day.bot_response.p90),
                    _csv_seconds(day.people_response.median),
                    _csv_seconds(day.people_response.p90),
                    *(day.handovers.get(value, 0) for value, _label, _count in stats.reasons),
                ]
            )
        return response


def _overview_days(request):
    return 30 if request.GET.get("days") == "30" else 14


def _csv_seconds(seconds):
    """Seconds to one decimal, without a trailing ".0"; "" for no value."""
    return "" if seconds is None else f"{round(seconds, 1):.1f}".removesuffix(".0")


def bot_overview(days):
    """The overview's bot section: its charts, table and figures (``bot_stats``)."""
    stats = bot_stats(days=days)
    labels = [day_label(day.day) for day in stats.days]
    every = 1 if days <= 14 else 3
    conversations = charts.stacked_bar_chart(
        labels=labels,
        series=[
            (_("Answered by the bot alone"), [day.bot_alone for day in stats.days]),
            (_("Handed to people"), [day.to_people for day in stats.days]),
            (_("Neither"), [day.neither for day in stats.days]),
        ],
        title=_("Conversations per day, last %(days)d days") % {"days": days},
        label_every=every,
    )
    reasons = charts.horizontal_bar_chart(
        items=[(str(label), count) for _value, label, count in stats.reasons],
        title=_("Hand-overs by reason, last %(days)d days") % {"days": days},
    )
    # One chart each: the bot answers in seconds, people in minutes or hours.
    bot_responses = charts.line_chart(
        labels=labels,
        series=[
            (_("Median"), [day.bot_response.median for day in stats.days]),
            (_("90th percentile"), [day.bot_response.p90 for day in stats.days]),
        ],
        title=_("The bot's first response per day, last %(days)d days") % {"days": days},
        shown=charts.duration_text,
        ceiling=charts.duration_ceiling,
        label_every=every,
    )
    people_responses = charts.line_chart(
        labels=labels,
        series=[
            (_("Median"), [day.people_response.median for day in stats.days]),
            (_("90th percentile"), [day.people_response.p90 for day in stats.days]),
        ],
        title=_("People's first response after a hand-over, last %(days)d days") % {"days": days},
        shown=charts.duration_text,
        ceiling=charts.duration_ceiling,
        label_every=every,
    )
    rows = [
        {
            "day": day,
            "bot_median": charts.duration_text(day.bot_response.median),
            "bot_p90": charts.duration_text(day.bot_response.p90),
            "people_median": charts.duration_text(day.people_response.median),
            "people_p90": charts.duration_text(day.people_response.p90),
        }
        for day in reversed(stats.days)
    ]
    return {
        "bot": stats,
        "bot_rows": rows,
        "bot_conversations_chart": conversations,
        "bot_reasons_chart": reasons,
        "bot_responses_chart": bot_responses,
        "people_responses_chart": people_responses,
        "bot_response_median": charts.duration_text(stats.bot_response.median),
        "people_response_median": charts.duration_text(stats.people_response.median),
        "bot_csv_url": reverse("admin:rchat_overview_bot_csv") + f"?days={days}",
    }


# --- Messages ------------------------------------------------------------------------------


class DeliveryAttemptInline(WhenFieldsAdmin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["started_at", "outcome", "http_status", "duration_ms", "error_type", "error"]
    readonly_fields = fields
    verbose_name_plural = _("delivery attempts (read-only)")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MessageAdmin(SubstringSearch, RChatAdmin):
    """Every message in and out; failed ones can be sent again."""

    list_display = [
        "id",
        "room",
        "credential_name",
        "direction",
        "sender",
        "type",
        "status",
        "attempts",
        "last_error_short",
        "created_at",
    ]
    list_select_related = ["room"]
    list_filter = ["status", "direction", "sender", "type", "room__credential", "created_at"]
    search_fields = ["text", "external_id", "room__chat_id", "room__display_name"]
    search_help_text = _("Text, the chat room's chat id or end user's name, or R-Chat's id.")

    def search_condition(self, word):
        return selectors.message_matches(word)

    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    fields = [
        ("room", "direction", "type"),
        ("status", "attempts"),
        ("sender", "author", "rule"),
        "text",
        "data_pretty",
        "extra_pretty",
        "last_error",
        ("external_id", "created_at", "sent_at", "next_attempt_at"),
    ]
    readonly_fields = [
        "room",
        "direction",
        "type",
        "status",
        "attempts",
        "sender",
        "author",
        "rule",
        "text",
        "data_pretty",
        "extra_pretty",
        "last_error",
        "external_id",
        "created_at",
        "sent_at",
        "next_attempt_at",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(credential_name=F("room__credential__name"))

    actions = ["send_again"]

    def has_add_permission(self, request):
        # Messages are written by services.message_send and the webhook, never by hand.
        return False

    @admin.action(description=_("Send again (failed messages only)"), permissions=["change"])
    def send_again(self, request, queryset):
        failed = queryset.filter(direction=Message.Direction.OUT, status=Message.Status.FAILED)
        done = 0
        for message in failed:
            try:
                services.message_retry(message=message)
            except InvalidMessage as exc:
                self.message_user(request, f"#{message.pk}: {exc}", messages.ERROR)
            else:
                done += 1
        skipped = queryset.count() - done
        self.message_user(
            request,
            ngettext("%(count)d message queued again.", "%(count)d messages queued again.", done)
            % {"count": done},
            messages.SUCCESS if done else messages.WARNING,
        )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message was not sent again: only failed outbound messages are.",
                    "%(count)d messages were not sent again: only failed outbound messages are.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.display(description=_("credential"), ordering="room__credential__name")
    def credential_name(self, obj):
        return obj.credential_name

    @admin.display(description=_("last error"))
    def last_error_short(self, obj):
        return _short(obj.last_error) or "—"

    @admin.display(description=_("data"))
    def data_pretty(self, obj):
        return _pretty_json(obj.data)

    @admin.display(description=_("extra fields"))
    def extra_pretty(self, obj):
        return _pretty_json(obj.extra)


# --- Webhook events ------------------------------------------------------------------------


class WebhookEventAdmin(RChatAdmin):
    """A read-only log of every authenticated webhook call."""

    list_display = [
        "id",
        "received_at",
        "credential_name",
        "outcome",
        "remote_addr",
        "message_link",
        "error_short",
    ]
    list_select_related = []
    list_filter = ["outcome", "credential", "received_at"]
    date_hierarchy = "received_at"
    fields = [
        ("credential", "received_at", "remote_addr"),
        ("outcome", "processed_at", "message_link"),
        "error",
        "headers_pretty",
        "body_pretty",
    ]
    readonly_fields = [
        "credential",
        "received_at",
        "remote_addr",
        "outcome",
        "processed_at",
        "message_link",
        "error",
        "headers_pretty",
        "body_pretty",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(credential_name=F("credential__name"))

    def has_add_permission(self, request):
        return False

    actions = ["reprocess"]

    def has_change_permission(self, request, obj=None):
        # A log: rows are written by the webhook and re-processing only.
        return False

    def has_reprocess_permission(self, request):
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Re-process the selected events"), permissions=["reprocess"])
    def reprocess(self, request, queryset):
        done = 0
        for event in queryset:
            try:
                services.webhook_event_reprocess(event=event)
            except (RChatError, ValueError) as exc:
                self.message_user(request, f"#{event.pk}: {exc}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request,
                ngettext("%(count)d event re-processed.", "%(count)d events re-processed.", done)
                % {"count": done},
                messages.SUCCESS,
            )

    @admin.display(description=_("credential"), ordering="credential__name")
    def credential_name(self, obj):
        return obj.credential_name or "—"

    @admin.display(description=_("message"))
    def message_link(self, obj):
        if not obj.message_id:
            return "—"
        url = reverse("admin:rchat_message_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)

    @admin.display(description=_("error"))
    def error_short(self, obj):
        return _short(obj.error) or "—"

    @admin.display(description=_("headers (secrets masked)"))
    def headers_pretty(self, obj):
        return _pretty_json(obj.headers)

    @admin.display(description=_("body"))
    def body_pretty(self, obj):
        return format_html('<pre class="rchat-pre">{}</pre>', obj.body_text)


# --- Broadcasts ----------------------------------------------------------------------------


def skipped_reasons_shown(skipped_reasons):
    """``Broadcast.skipped_reasons`` in words: a list of (reason, count, some room ids)."""
    return [
        (SKIP_REASONS.get(reason, reason), entry.get("count", 0), entry.get("room_ids", []))
        for reason, entry in (skipped_reasons or {}).items()
    ]


def broadcast_summary(broadcast):
    """One sentence on a broadcast just queued: how many rooms got it, how many not and why."""
    queued = broadcast.rooms_total - broadcast.skipped
    text = ngettext(
        "Broadcast #%(id)d queued to %(count)d chat room.",
        "Broadcast #%(id)d queued to %(count)d chat rooms.",
        queued,
    ) % {"id": broadcast.pk, "count": queued}
    if broadcast.skipped:
        reasons = ", ".join(
            f"{reason}: {count}"
            for reason, count, _ids in skipped_reasons_shown(broadcast.skipped_reasons)
        )
        text += " " + _("Skipped: %(count)d (%(reasons)s).") % {
            "count": broadcast.skipped,
            "reasons": reasons,
        }
    return text


@admin.register(Broadcast)
class BroadcastAdmin(RChatAdmin):
    """Broadcasts and how far each has got; what is not sent yet can be cancelled.

    Sent from the chat room list (action "Send a broadcast …"), the API or
    ``rchat_broadcast``; read-only here. Seeing them needs what seeing chat rooms needs,
    cancelling what replying needs.
    """

    list_display = [
        "__str__",
        "status",
        "progress_bar",
        "progress_counts",
        "rooms_total",
        "author",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "type", "created_at"]
    search_fields = ["name", "text"]
    date_hierarchy = "created_at"
    fields = [
        ("name", "status", "author"),
        ("type", "text"),
        "data_pretty",
        ("rooms_total", "skipped"),
        ("created_at", "finished_at"),
    ]
    readonly_fields = [
        "name",
        "status",
        "author",
        "type",
        "text",
        "data_pretty",
        "rooms_total",
        "skipped",
        "created_at",
        "finished_at",
    ]
    actions = ["cancel_broadcasts"]
    change_form_template = "rchat/admin/broadcast_change_form.html"

    def get_queryset(self, request):
        return selectors.broadcast_list()

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "rchat.view_chatroom"
        )

    def has_add_permission(self, request):
        # Sent from the chat room list, the API or the command, never typed in here.
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request, obj=None):
        return request.user.has_perm("rchat.reply_chatroom")

    def get_urls(self):
        cancel = path(
            "<path:object_id>/cancel/",
            self.admin_site.admin_view(self.cancel_view),
            name="rchat_broadcast_cancel",
        )
        return [cancel, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        # What nobody has looked at since its last message was answered turns done now.
        services.broadcasts_settle()
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        broadcast = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if broadcast is not None and self.has_view_permission(request, broadcast):
            services.broadcasts_settle(broadcasts=[broadcast.pk])
            progress = selectors.broadcast_progress(broadcast)
            context.update(
                progress=progress,
                skipped_shown=skipped_reasons_shown(broadcast.skipped_reasons),
                messages_url=reverse("admin:rchat_message_changelist")
                + f"?broadcast__id__exact={broadcast.pk}",
                can_cancel=self.has_cancel_permission(request, broadcast)
                and progress.status in (Broadcast.Status.QUEUEING, Broadcast.Status.SENDING),
                cancel_url=reverse("admin:rchat_broadcast_cancel", args=[broadcast.pk]),
            )
        return super().change_view(request, object_id, form_url, context)

    def cancel_view(self, request, object_id):
        """The change page's "Cancel" button (POST only)."""
        broadcast = self.get_object(request, unquote(object_id))
        if broadcast is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method != "POST" or not self.has_cancel_permission(request, broadcast):
            raise PermissionDenied
        self._cancel(request, broadcast)
        return HttpResponseRedirect(reverse("admin:rchat_broadcast_change", args=[broadcast.pk]))

    @admin.action(description=_("Cancel the selected broadcasts"), permissions=["cancel"])
    def cancel_broadcasts(self, request, queryset):
        for broadcast in queryset:
            self._cancel(request, broadcast)

    def _cancel(self, request, broadcast):
        try:
            cancelled = services.broadcast_cancel(broadcast=broadcast)
        except InvalidMessage as exc:
            self.message_user(request, f"{broadcast}: {exc}", messages.WARNING)
            return
        self.message_user(
            request,
            ngettext(
                "%(name)s cancelled: %(count)d message will not be sent.",
                "%(name)s cancelled: %(count)d messages will not be sent.",
                cancelled,
            )
            % {"name": broadcast, "count": cancelled},
            messages.SUCCESS,
        )

    @admin.display(description=_("progress"))
    def progress_bar(self, obj):
        progress = selectors.BroadcastProgress.of(obj)
        # <progress> needs no style attribute: the page keeps a strict CSP.
        return format_html(
            '<progress value="{}" max="100" title="{}%">{}%</progress>',
            progress.percent,
            progress.percent,
            progress.percent,
        )

    @admin.display(description=_("messages"))
    def progress_counts(self, obj):
        progress = selectors.BroadcastProgress.of(obj)
        return _(
            "sent %(sent)d · failed %(failed)d · waiting %(pending)d · cancelled %(cancelled)d "
            "· skipped %(skipped)d"
        ) % {
            "sent": progress.sent,
            "failed": progress.failed,
            "pending": progress.pending,
            "cancelled": progress.cancelled,
            "skipped": progress.skipped,
        }

    @admin.display(description=_("data"))
    def data_pretty(self, obj):
        return _pretty_json(obj.data)


# --- Private notes --------------------------------------------------------------------------


class MentionInline(WhenFieldsAdmin, admin.TabularInline):
    model = Note.mentioned.through
    extra = 0
    can_delete = False
    fields = ["user", "seen_at"]
    readonly_fields = fields
    verbose_name_plural = _("mentions (read-only)")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Note)
class NoteAdmin(RChatAdmin):
    """Private notes, to find and delete them; they are written on a chat room's page
    (and in the inbox and the API) through ``services.note_add``, never here."""

    list_display = ["body_snippet", "room", "author", "created_at"]
    list_select_related = ["room", "author"]
    search_fields = ["body"]
    search_help_text = _("Text of the note.")
    list_filter = ["created_at"]
    date_hierarchy = "created_at"
    fields = [("room", "author", "created_at"), "body"]
    readonly_fields = ["room", "author", "created_at", "body"]
    inlines = [MentionInline]

    @admin.display(description=_("note"))
    def body_snippet(self, obj):
        return _short(obj.body)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # A note is a record of what someone wrote: it is deleted, not edited.
        return False

    def delete_model(self, request, obj):
        services.note_delete(note=obj, user=request.user)

    def delete_queryset(self, request, queryset):
        for note in queryset:
            services.note_delete(note=note, user=request.user)


admin.site.register(Message, MessageAdmin)
admin.site.register(WebhookEvent, WebhookEventAdmin)


# --- Attachments ---------------------------------------------------------------------------


@admin.register(Attachment)
class AttachmentAdmin(RChatAdmin):
    """Images and files agents and bots uploaded to send; read-only, deletable.

    Uploaded only from a reply (the reply box, the API): a file is kept with the
    message that sends it. Deleting one deletes its file from the storage too, and
    the URL its message carried answers 404 from then on.
    """

    list_display = ["name", "kind", "size_display", "room", "uploaded_by", "created_at", "link"]
    list_select_related = ["room", "uploaded_by"]
    list_filter = ["kind", "content_type", "created_at"]
    search_fields = ["name", "room__chat_id", "room__display_name"]
    date_hierarchy = "created_at"
    fields = [
        ("name", "link"),
        ("kind", "content_type", "size_display"),
        ("room", "uploaded_by", "created_at"),
    ]
    readonly_fields = fields[0] + fields[1] + fields[2]

    def has_add_permission(self, request):
        # Kept by services.attachment_store from a reply, never added by hand.
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.attachment_delete(attachment=obj)

    def delete_queryset(self, request, queryset):
        for attachment in queryset:
            services.attachment_delete(attachment=attachment)

    @admin.display(description=_("size"), ordering="size")
    def size_display(self, obj):
        return filesizeformat(obj.size)

    @admin.display(description=_("file"))
    def link(self, obj):
        # Labelled by its name: the URL carries the key, which need not be read out.
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>',
            obj.get_absolute_url(),
            _("Open"),
        )
