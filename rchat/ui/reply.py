"""The reply box: one form for admin's chat room page and the agent inbox.

It parses fields only (a latitude is a float, a URL a string); whether the message
may be sent is ``payloads.outbound_validate``'s to say, the rules the API, the bots
and ``services.message_send`` use as well. Its reasons come back on the fields they
are about, through one mapping (``ERROR_FIELDS``), for errors found while cleaning
and for those the service raises later (a closed room, a bot's room).

Rendered by ``rchat/_reply_form.html``; admin gives it ``prefix="reply"``, the inbox
none.
"""

from django import forms
from django.utils.translation import gettext_lazy as _

from .. import payloads
from ..exceptions import InvalidMessage

URL_MAX_LENGTH = 2000


class ReplyForm(forms.Form):
    """A reply: text, an image or a file by URL, a sticker, or a location.

    Once valid, ``message_type()`` and ``message_data()`` are what
    ``services.message_send`` takes (the data as ``outbound_validate`` returned it).
    """

    TYPES = [
        ("text", _("Text")),
        ("image", _("Image")),
        ("file", _("File")),
        ("sticker", _("Sticker")),
        ("location", _("Location")),
    ]

    type = forms.ChoiceField(
        label=_("Type"), choices=TYPES, initial="text", widget=forms.RadioSelect
    )
    # Not stripped here: outbound_validate strips text, and says when nothing is left.
    text = forms.CharField(
        label=_("Message"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": _("Write a reply…")}),
    )
    url = forms.CharField(
        label=_("URL"),
        required=False,
        max_length=URL_MAX_LENGTH,
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
    )
    name = forms.CharField(label=_("File name"), required=False, max_length=255)
    package_id = forms.CharField(label=_("Sticker package id"), required=False, max_length=50)
    sticker_id = forms.CharField(label=_("Sticker id"), required=False, max_length=50)
    latitude = forms.FloatField(label=_("Latitude"), required=False)
    longitude = forms.FloatField(label=_("Longitude"), required=False)
    title = forms.CharField(label=_("Place name"), required=False, max_length=255)

    #: Which field shows an ``InvalidMessage.errors`` key; a dict picks by message
    #: type ("data" is the text for a text message, the URL for an image or file).
    #: A key with no field here is shown above the form.
    ERROR_FIELDS = {
        "data": {"text": "text", "image": "url", "file": "url"},
        "url": "url",
        "name": "name",
        "package_id": "package_id",
        "sticker_id": "sticker_id",
        "latitude": "latitude",
        "longitude": "longitude",
        "title": "title",
        "type": "type",
    }

    #: The fields each message type reads.
    FIELDS_BY_TYPE = {
        "text": ("text",),
        "image": ("url",),
        "file": ("url", "name"),
        "sticker": ("package_id", "sticker_id"),
        "location": ("latitude", "longitude", "title"),
    }

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("type")
        # A field that did not parse (a latitude that is not a number) has said why.
        if kind is None or any(f in self.errors for f in self.FIELDS_BY_TYPE[kind]):
            return cleaned
        try:
            cleaned["data"] = payloads.outbound_validate(kind, self._data_for(kind, cleaned))
        except InvalidMessage as exc:
            self.add_service_errors(exc)
        return cleaned

    @staticmethod
    def _data_for(kind, values):
        """The message's ``data`` in its type's shape, from the parsed fields."""
        if kind == "text":
            return values.get("text") or ""
        if kind in ("image", "file"):
            data = {"url": (values.get("url") or "").strip()}
            name = (values.get("name") or "").strip()
            if kind == "file" and name:
                data["name"] = name
            return data
        if kind == "sticker":
            return {
                "package_id": (values.get("package_id") or "").strip(),
                "sticker_id": (values.get("sticker_id") or "").strip(),
            }
        # A missing coordinate is left out, so outbound_validate says it is required.
        data = {
            field: values[field]
            for field in ("latitude", "longitude")
            if values.get(field) is not None
        }
        title = (values.get("title") or "").strip()
        if title:
            data["title"] = title
        return data

    def message_type(self):
        return self.cleaned_data["type"]

    def message_data(self):
        """``data`` for ``services.message_send``, as ``outbound_validate`` returned it."""
        return self.cleaned_data["data"]

    def add_service_errors(self, exc):
        """Show an ``InvalidMessage`` next to the fields it is about (else above them)."""
        errors = getattr(exc, "errors", None) or {}
        if not errors:
            self.add_error(None, str(exc))
            return
        kind = self.cleaned_data.get("type")
        for key, reason in errors.items():
            field = self.ERROR_FIELDS.get(key)
            if isinstance(field, dict):
                field = field.get(kind)
            if not isinstance(reason, str):
                reason = "; ".join(str(r) for r in reason)
            self.add_error(field if field in self.fields else None, reason)
