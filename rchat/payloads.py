"""R-Chat's JSON, in and out: reading webhook bodies, building and checking outbound ones.

The contract (docs/rchat-contract.md) names five message types that rchat understands
in both directions: text, image, file, sticker and location. Anything else is kept
as it came.
"""

from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from .conf import get_setting
from .exceptions import InvalidMessage

KNOWN_TYPES = ("text", "image", "file", "sticker", "location")


# --- Inbound: webhook body -> normalized message ---------------------------------------


# --- Outbound: validation and the Send Message body ------------------------------------

# What a sender may put in ``data`` for each outbound type. R-Chat's own field names
# are not published (see docs/rchat-contract.md), so rchat checks what it must know to
# be sure the message makes sense and then sends ``data`` in the shape the sender gave.
OUTBOUND_TYPES = KNOWN_TYPES

# Characters of a message kept in Message.text and the room's last-message preview.
PREVIEW_LENGTH = 200

# Where R-Chat's answer to Send Message may carry its id for the message.
SENT_ID_FIELDS = ("message_id", "messageId", "id")


def _is_http_url(value):
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_number(value):
    # bool is an int in Python; a latitude of True is a mistake, not 1.0.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate_text(data, errors):
    if not isinstance(data, str):
        errors["data"] = _("A text message needs a string.")
        return data
    text = data.strip()
    limit = get_setting("TEXT_MAX_LENGTH")
    if not text:
        errors["data"] = _("A text message cannot be empty.")
    elif len(text) > limit:
        errors["data"] = _(
            "A text message is at most %(limit)d characters (this one has %(n)d)."
        ) % {
            "limit": limit,
            "n": len(text),
        }
    return text


def _validate_media(data, errors):
    # A bare URL string, or an object with "url" and any extra fields (a file name, a
    # preview image …) that R-Chat may use; both are sent as given.
    url = data.get("url") if isinstance(data, dict) else data
    if isinstance(data, dict) and "url" not in data:
        errors["url"] = _("This field is required.")
    elif not _is_http_url(url):
        errors["url"] = _("Enter an http:// or https:// URL.")
    elif isinstance(data, str):
        return data.strip()
    return data


def _validate_sticker(data, errors):
    if not isinstance(data, dict):
        errors["data"] = _("A sticker needs an object with package_id and sticker_id.")
        return data
    for field in ("package_id", "sticker_id"):
        value = data.get(field)
        if isinstance(value, str):
            value = value.strip()
        if value in (None, "") or isinstance(value, bool) or not isinstance(value, str | int):
            errors[field] = _("A sticker needs a %(field)s (a string or a number).") % {
                "field": field
            }
    return data


def _validate_location(data, errors):
    if not isinstance(data, dict):
        errors["data"] = _("A location needs an object with latitude and longitude.")
        return data
    for field, bound in (("latitude", 90), ("longitude", 180)):
        value = data.get(field)
        if value is None:
            errors[field] = _("This field is required.")
        elif not _is_number(value):
            errors[field] = _("Enter a number.")
        elif not -bound <= value <= bound:
            errors[field] = _("Must be between %(low)d and %(high)d.") % {
                "low": -bound,
                "high": bound,
            }
    for field in ("title", "address"):
        if field in data and not isinstance(data[field], str):
            errors[field] = _("Must be a string.")
    return data


_OUTBOUND_VALIDATORS = {
    "text": _validate_text,
    "image": _validate_media,
    "file": _validate_media,
    "sticker": _validate_sticker,
    "location": _validate_location,
}


def outbound_validate(type, data):
    """Check an outbound message; return its ``data`` as it will be sent.

    Raises ``InvalidMessage`` whose ``errors`` maps each wrong field to a translated
    reason. Text is stripped; everything else is returned as given.
    """
    validator = _OUTBOUND_VALIDATORS.get(type)
    if validator is None:
        reason = _("Unknown message type %(type)r; use one of: %(known)s.") % {
            "type": type,
            "known": ", ".join(OUTBOUND_TYPES),
        }
        raise InvalidMessage(reason, errors={"type": reason})
    errors = {}
    data = validator(data, errors)
    if errors:
        details = "; ".join(f"{field}: {reason}" for field, reason in errors.items())
        raise InvalidMessage(
            _("Invalid %(type)s message: %(details)s") % {"type": type, "details": details},
            errors=errors,
        )
    return data


def outbound_preview(type, data):
    """A short plain-text rendering of a valid outbound message (for lists and the inbox)."""
    if type == "text":
        text = data
    elif type in ("image", "file"):
        url = data.get("url") if isinstance(data, dict) else data
        name = data.get("name") or data.get("filename") if isinstance(data, dict) else None
        label = _("[Image]") if type == "image" else _("[File]")
        text = f"{label} {name or url}"
    elif type == "sticker":
        text = str(_("[Sticker]"))
    elif type == "location":
        place = (
            data.get("title") or data.get("address") or f"{data['latitude']}, {data['longitude']}"
        )
        text = f"{_('[Location]')} {place}"
    else:
        text = f"[{type}]"
    text = " ".join(str(text).split())
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


def sent_message_id(answer):
    """R-Chat's id for a message it accepted, from its JSON answer; "" when it gives none."""
    candidates = [answer]
    if isinstance(answer, dict):
        for nested in ("data", "message"):
            if isinstance(answer.get(nested), dict):
                candidates.append(answer[nested])
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        for field in SENT_ID_FIELDS:
            value = candidate.get(field)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()[:255]
    return ""
