"""The reply box: one form for admin's chat room page and the agent inbox.

It parses fields only (a latitude is a float, a URL a string); whether the message
may be sent is ``payloads.outbound_validate``'s to say, the rules the API, the bots
and ``services.message_send`` use as well. Its reasons come back on the fields they
are about, through one mapping (``ERROR_FIELDS``), for errors found while cleaning
and for those the service raises later (a closed room, a bot's room).

A chosen file (``file``) is sent as an image or a file message whatever type is
picked: ``services.attachment_check`` says which while cleaning, so a file too large or
of a type not accepted is a form error before anything is kept; the view then calls
``services.attachment_send``. Text typed beside the file is sent after it.

Rendered by ``rchat/_reply_form.html`` (a multipart form); admin gives it
``prefix="reply"``, the inbox none.
"""

from django import forms
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from .. import payloads, services
from ..conf import get_setting
from ..exceptions import InvalidMessage

URL_MAX_LENGTH = 2000


class ReplyForm(forms.Form):
    """A reply: text, an image or a file by URL or uploaded, a sticker, or a location.

    Once valid, ``message_type()`` and ``message_data()`` are what
    ``services.message_send`` takes (the data as ``outbound_validate`` returned it);
    with a file chosen, ``upload()`` is the file and ``checked_upload()`` what
    ``services.attachment_check`` found, and ``message_data()`` the text to send after
    it (None for none).
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
    # Absent when RCHAT["ATTACHMENT_TYPES"] is empty (attachments turned off).
    file = forms.FileField(label=_("Attach an image or a file"), required=False)

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
        "file": "file",
    }

    #: The fields each message type reads.
    FIELDS_BY_TYPE = {
        "text": ("text",),
        "image": ("url",),
        "file": ("url", "name"),
        "sticker": ("package_id", "sticker_id"),
        "location": ("latitude", "longitude", "title"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "file" not in self.fields:
            return
        if not get_setting("ATTACHMENT_TYPES"):
            del self.fields["file"]
            return
        # Read now, not at import: the settings may change (override_settings in tests).
        limit = get_setting("ATTACHMENT_MAX_BYTES")
        self.fields["file"].help_text = _("Up to %(limit)s: %(types)s.") % {
            "limit": filesizeformat(limit),
            "types": services.accepted_types_text(),
        }
        self.fields["file"].widget.attrs.update(
            {
                "accept": ",".join(services.accepted_types_accept()),
                "data-max-bytes": str(limit),
            }
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("file"):
            return self._clean_upload(cleaned)
        kind = cleaned.get("type")
        # A field that did not parse (a latitude that is not a number) has said why.
        if kind is None or any(f in self.errors for f in self.FIELDS_BY_TYPE[kind]):
            return cleaned
        try:
            cleaned["data"] = payloads.outbound_validate(kind, self._data_for(kind, cleaned))
        except InvalidMessage as exc:
            self.add_service_errors(exc)
        return cleaned

    def _clean_upload(self, cleaned):
        try:
            cleaned["checked_upload"] = services.attachment_check(upload=cleaned["file"])
        except InvalidMessage as exc:
            self.add_error("file", exc.errors.get("file") or str(exc))
        # The type's own fields are not read; text typed beside the file goes after it.
        cleaned["data"] = None
        if (cleaned.get("text") or "").strip():
            try:
                cleaned["data"] = payloads.outbound_validate("text", cleaned["text"])
            except InvalidMessage as exc:
                self.add_error("text", exc.errors.get("data") or str(exc))
        return cleaned

    def upload(self):
        """The chosen file (an ``UploadedFile``), or None."""
        return self.cleaned_data.get("file") or None

    def checked_upload(self):
        """What ``services.attachment_check`` said of the chosen file, or None."""
        return self.cleaned_data.get("checked_upload")

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
        """The message's type; "text" (for the text after it) when a file is chosen."""
        return "text" if self.upload() else self.cleaned_data["type"]

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


def reply_send(form, *, room, request, message=None):
    """Send what a valid ``form`` holds to ``room`` as ``request.user``; the messages.

    A chosen file goes first (``services.attachment_send``: kept, and its image or
    file message queued), then the text typed beside it, if any. Otherwise the one
    message the form describes, or ``message`` (``(type, data)``, a canned response
    the inbox found) in its place. Raises what the services raise (``InvalidMessage``
    for a closed room …), having kept nothing of the reply.
    """
    author = request.user
    upload = form.upload()
    if upload is None:
        type, data = message or (form.message_type(), form.message_data())
        return [services.message_send(room=room, type=type, data=data, author=author)]
    _attachment, sent = services.attachment_send(
        room=room, author=author, upload=upload, request=request, checked=form.checked_upload()
    )
    sent = [sent]
    text = form.message_data()
    if text:
        sent.append(services.message_send(room=room, type="text", data=text, author=author))
    return sent
