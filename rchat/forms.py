"""Forms of the agent inbox: the room list's filters and the reply box."""

from django import forms
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _

from .conf import get_setting
from .selectors import ROOM_STATUSES, ROOM_VIEWS

URL_MAX_LENGTH = 2000


class RoomFilterForm(forms.Form):
    """The inbox's tab, status filter and search box (all optional, GET)."""

    view = forms.ChoiceField(
        label=_("Show"),
        required=False,
        choices=[("mine", _("Mine")), ("unassigned", _("Unassigned")), ("all", _("All"))],
    )
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("open", _("Open")), ("closed", _("Closed")), ("all", _("All"))],
    )
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Chat id, name or message text")}
        ),
    )

    def filters(self):
        """The filters in force: the valid ones given, defaults for the rest."""
        data = self.cleaned_data if self.is_valid() else {}
        view = data.get("view") or "all"
        status = data.get("status") or "open"
        return {
            "view": view if view in ROOM_VIEWS else "all",
            "status": status if status in ROOM_STATUSES else "open",
            "q": (data.get("q") or "").strip(),
        }


class ReplyForm(forms.Form):
    """A reply in a conversation: text, an image or file by URL, or a sticker.

    ``message_type()`` and ``message_data()`` give what ``services.message_send``
    takes; errors the service finds later are put back on the matching field with
    ``add_service_errors``.
    """

    TYPES = [
        ("text", _("Text")),
        ("image", _("Image URL")),
        ("file", _("File URL")),
        ("sticker", _("Sticker")),
    ]

    type = forms.ChoiceField(
        label=_("Type"), choices=TYPES, initial="text", widget=forms.RadioSelect
    )
    text = forms.CharField(
        label=_("Message"),
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": _("Write a reply…")}),
    )
    url = forms.CharField(
        label=_("URL"),
        required=False,
        strip=True,
        max_length=URL_MAX_LENGTH,
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
    )
    package_id = forms.CharField(label=_("Sticker package id"), required=False, max_length=50)
    sticker_id = forms.CharField(label=_("Sticker id"), required=False, max_length=50)

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("type")
        if kind == "text":
            text = cleaned.get("text") or ""
            limit = get_setting("TEXT_MAX_LENGTH")
            if not text:
                self.add_error("text", _("Write a message before sending."))
            elif len(text) > limit:
                self.add_error(
                    "text",
                    _("A message can be at most %(limit)d characters (this one has %(n)d).")
                    % {"limit": limit, "n": len(text)},
                )
        elif kind in ("image", "file"):
            url = cleaned.get("url") or ""
            if not url:
                self.add_error("url", _("Give the address (URL) of the image or file."))
            else:
                try:
                    URLValidator(schemes=["http", "https"])(url)
                except forms.ValidationError:
                    self.add_error(
                        "url", _("Enter a full web address starting with http:// or https://.")
                    )
        elif kind == "sticker":
            for field in ("package_id", "sticker_id"):
                if not cleaned.get(field):
                    self.add_error(field, _("A sticker needs both its package id and its id."))
        return cleaned

    def message_type(self):
        return self.cleaned_data["type"]

    def message_data(self):
        kind = self.cleaned_data["type"]
        if kind == "text":
            return self.cleaned_data["text"]
        if kind in ("image", "file"):
            return {"url": self.cleaned_data["url"]}
        return {
            "package_id": self.cleaned_data["package_id"],
            "sticker_id": self.cleaned_data["sticker_id"],
        }

    def add_service_errors(self, exc):
        """Show an ``InvalidMessage`` from the service on the fields it concerns."""
        kind = self.cleaned_data.get("type")
        data_field = {"text": "text", "image": "url", "file": "url"}.get(kind)
        errors = getattr(exc, "errors", None) or {}
        if not errors:
            self.add_error(None, str(exc))
        for field, reason in errors.items():
            if field in self.fields and field != "type":
                target = field
            elif field in ("data", "url", "text") and data_field:
                target = data_field
            else:
                target = None
            self.add_error(target, reason if isinstance(reason, str) else "; ".join(reason))
