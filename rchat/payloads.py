"""R-Chat's JSON, in and out: reading webhook bodies, building and checking outbound ones.

The contract (docs/rchat-contract.md) names five message types that rchat understands
in both directions: text, image, file, sticker and location. Anything else is kept
as it came.
"""

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from .conf import get_setting
from .exceptions import InvalidMessage
from .models import ChatRoom, Message

KNOWN_TYPES = ("text", "image", "file", "sticker", "location")


# --- Inbound: webhook body -> normalized message ---------------------------------------

# R-Chat's detailed field names are not published, so each piece of an inbound message
# is looked for under the names such services commonly use, at the top of the body
# and inside ``message``. Everything found stays in Message.extra as well.
INBOUND_ID_FIELDS = ("message_id", "messageId", "id", "mid")
INBOUND_CHANNEL_FIELDS = ("channel", "source", "platform", "channel_type", "channelType")
INBOUND_NAME_FIELDS = ("display_name", "displayName", "name", "user_name", "username", "nickname")
INBOUND_AVATAR_FIELDS = (
    "avatar_url",
    "avatarUrl",
    "avatar",
    "picture_url",
    "pictureUrl",
    "picture",
    "profile_image",
    "image_url",
)
INBOUND_TIME_FIELDS = ("timestamp", "sent_at", "sentAt", "time", "created_at", "createdAt")
# Objects that describe the end user in common payload shapes.
INBOUND_USER_OBJECTS = ("user", "sender", "from", "customer", "profile", "contact")
INBOUND_CHANNELS = {
    "web": "web",
    "webchat": "web",
    "web_chat": "web",
    "website": "web",
    "widget": "web",
    "livechat": "web",
    "line": "line",
    "line_oa": "line",
    "facebook": "facebook",
    "fb": "facebook",
    "messenger": "facebook",
}
# Column sizes of the rows an inbound message fills, from the models themselves.
CHAT_ID_MAX = ChatRoom._meta.get_field("chat_id").max_length
TYPE_MAX = Message._meta.get_field("type").max_length
NAME_MAX = ChatRoom._meta.get_field("display_name").max_length
AVATAR_MAX = ChatRoom._meta.get_field("avatar_url").max_length
EXTERNAL_ID_MAX = Message._meta.get_field("external_id").max_length
# How deep arrays and objects may nest in a body. Without a limit of its own, how deep
# json.loads goes depends on the Python version (about 1,000 levels on 3.11, thousands
# on 3.13), and a body it reads could still exhaust the recursion limit in the code
# that walks it (inbound_clean) and fail the call with a 500.
INBOUND_DEPTH_MAX = 200


class InvalidPayload(ValueError):
    """A webhook body that cannot be read as a message; the text says why."""


@dataclass(frozen=True)
class InboundMessage:
    """One end-user message, as rchat understood a webhook body.

    ``data`` is the message's content as it came (a string or any JSON); ``text`` its
    plain-text rendering; ``extra`` every field of the body beyond type, data and
    chat_id (those of ``message`` under ``extra["message"]``). The other fields are ""
    or None when the body does not carry them.
    """

    chat_id: str
    type: str
    data: Any
    text: str
    external_id: str = ""
    channel: str = ""
    display_name: str = ""
    avatar_url: str = ""
    sent_at: datetime | None = None
    extra: dict = dataclasses.field(default_factory=dict)


def _reject_constant(name):
    # json accepts NaN and Infinity, which are not JSON and which PostgreSQL's jsonb
    # refuses: better a clear 400 now than a database error later.
    raise ValueError(f"{name} is not a JSON value")


def inbound_load(body):
    """The JSON object in a webhook body (bytes), or None for an empty body.

    Raises ``InvalidPayload`` for a body that is not UTF-8 JSON or not an object.
    """
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidPayload(
            _("The body is not UTF-8 text (bad byte at position %(pos)d).") % {"pos": exc.start}
        ) from exc
    if not text.strip():
        return None
    try:
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
        json_check(payload)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, over-long integers and nesting deeper
        # than INBOUND_DEPTH_MAX; deeper still exhausts json's own recursion limit.
        raise InvalidPayload(
            _("The body is not valid JSON: %(reason)s") % {"reason": short(exc, 120)}
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidPayload(
            _("The body must be a JSON object, not %(kind)s.") % {"kind": _json_kind(payload)}
        )
    return payload


def _parse_float(text):
    # A number too large for a float, such as 1e400, reads as infinity, which is not
    # JSON either and which jsonb refuses: refused here, as NaN is.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {short(text, 40)} is out of range")
    return value


def json_check(value, limit=INBOUND_DEPTH_MAX):
    """Raise ValueError unless ``value`` is JSON that can be stored as it is parsed.

    Arrays and objects may nest at most ``limit`` deep, and every number must be
    finite. One level at a time rather than recursively, so that any depth can be
    measured, and code that walks the value afterwards (recursively) cannot run out
    of stack.
    """
    level, depth = [value], 0
    while level:
        for item in level:
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"the number {item} is out of range")
        containers = [item for item in level if isinstance(item, dict | list)]
        if containers:
            depth += 1
            if depth > limit:
                raise ValueError(f"arrays and objects nested more than {limit} levels deep")
        level = [
            child
            for item in containers
            for child in (item.values() if isinstance(item, dict) else item)
        ]


def inbound_parse(payload):
    """Turn a webhook's parsed JSON into an ``InboundMessage``; None for a verify ping.

    A ping is a body without a message: empty, ``{}``, or an object with neither
    ``message`` nor ``chat_id``. Raises ``InvalidPayload`` for what cannot be a
    message (no chat_id, a message that is not an object, a type too long to keep).
    """
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise InvalidPayload(
            _("The body must be a JSON object, not %(kind)s.") % {"kind": _json_kind(payload)}
        )
    payload = inbound_clean(payload)
    message = payload.get("message")
    if message is None:
        if first_field(payload, ("chat_id", "chatId")) is None:
            return None
        raise InvalidPayload(_("The body has a chat_id but no message."))
    if isinstance(message, str):
        message = {"type": "text", "data": message}
    if not isinstance(message, dict):
        raise InvalidPayload(
            _("The message must be a JSON object, not %(kind)s.") % {"kind": _json_kind(message)}
        )
    if "type" not in message and "data" not in message and "text" not in message:
        raise InvalidPayload(_("The message has neither a type nor data."))

    chat_id = first_field(message, ("chat_id", "chatId"))
    if chat_id is None:
        chat_id = first_field(payload, ("chat_id", "chatId"))
    chat_id = scalar_text(chat_id)
    if not chat_id:
        raise InvalidPayload(_("The body has no chat_id (at the top or inside message)."))
    if len(chat_id) > CHAT_ID_MAX:
        raise InvalidPayload(
            _("The chat_id is longer than %(max)d characters.") % {"max": CHAT_ID_MAX}
        )

    data = message["data"] if "data" in message else message.get("text")
    type_ = scalar_text(message.get("type"))
    if not type_:
        type_ = "text" if isinstance(data, str) else "unknown"
    if len(type_) > TYPE_MAX:
        raise InvalidPayload(
            _("The message type is longer than %(max)d characters.") % {"max": TYPE_MAX}
        )
    if data is None:
        # The column holds JSON, not SQL NULL; the raw body keeps what came.
        data = {}

    extra = {k: v for k, v in payload.items() if k not in ("message", "chat_id")}
    message_extra = {
        k: v for k, v in message.items() if k not in ("type", "data", "chat_id", "chatId")
    }
    if "data" in message and "text" in message:
        message_extra["text"] = message["text"]
    if message_extra:
        extra["message"] = message_extra

    # The message's own fields win over the body's, the body's over a user object's.
    places = [message_extra, payload]
    people = [
        source[name]
        for source in places
        for name in INBOUND_USER_OBJECTS
        if isinstance(source.get(name), dict)
    ]
    return InboundMessage(
        chat_id=chat_id,
        type=type_,
        data=data,
        text=inbound_text(type_, data),
        external_id=scalar_text(_first_of(places, INBOUND_ID_FIELDS))[:EXTERNAL_ID_MAX],
        channel=_channel(_first_of(places + people, INBOUND_CHANNEL_FIELDS)),
        display_name=scalar_text(_first_of(people + places, INBOUND_NAME_FIELDS))[:NAME_MAX],
        avatar_url=_avatar(_first_of(people + places, INBOUND_AVATAR_FIELDS)),
        sent_at=_timestamp(_first_of(places, INBOUND_TIME_FIELDS)),
        extra=extra,
    )


def inbound_text(type, data):
    """The plain-text rendering of an inbound message, kept in Message.text.

    Text is kept whole; other types get a label and the most telling detail
    ("[Image] photo.jpg", "[Location] Siam Paragon"); an unknown type shows its name
    and the start of its data.
    """
    detail = ""
    if type == "text":
        if isinstance(data, str):
            return data
        return scalar_text(first_field(data, ("text", "message", "content"))) or _compact(data)
    if type in ("image", "file"):
        label = _("[Image]") if type == "image" else _("[File]")
        if isinstance(data, dict):
            named = first_field(data, ("caption", "name", "filename", "file_name", "title"))
            detail = scalar_text(named) or _url_name(data.get("url"))
        else:
            detail = _url_name(data)
    elif type == "sticker":
        label = _("[Sticker]")
    elif type == "location":
        label = _("[Location]")
        if isinstance(data, dict):
            detail = scalar_text(first_field(data, ("title", "address", "name")))
            lat = first_field(data, ("latitude", "lat"))
            lng = first_field(data, ("longitude", "lng", "lon"))
            if not detail and _is_number(lat) and _is_number(lng):
                detail = f"{lat}, {lng}"
        elif isinstance(data, str):
            detail = data
    else:
        label = f"[{type}]"
        detail = data if isinstance(data, str) else _compact(data)
    text = f"{label} {detail}".strip()
    return short(text, PREVIEW_LENGTH)


def inbound_preview(text):
    """The room's last-message preview for a message whose rendering is ``text``."""
    return short(" ".join(text.split()), PREVIEW_LENGTH)


def short(value, limit):
    """``value`` as text of at most ``limit`` characters, cut with "…"."""
    value = str(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _compact(data):
    if data in ({}, [], None, ""):
        return ""
    return short(json.dumps(data, ensure_ascii=False, separators=(",", ":")), PREVIEW_LENGTH)


def _json_kind(value):
    if value is None:
        return "null"
    return {
        str: "a string",
        list: "an array",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def inbound_clean(value):
    """``value`` with every string made storable: no NUL, no lone surrogate.

    PostgreSQL refuses both (in text and in jsonb); json.loads produces them from
    ``\\u0000`` and ``\\ud800``. They become U+FFFD; the raw body keeps the original.
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, dict):
        return {inbound_clean(k): inbound_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [inbound_clean(v) for v in value]
    return value


def first_field(source, names):
    """The first of ``names`` that ``source`` (a dict, or anything) has a value for."""
    if not isinstance(source, dict):
        return None
    for name in names:
        value = source.get(name)
        if value not in (None, ""):
            return value
    return None


def _first_of(sources, names):
    for source in sources:
        value = first_field(source, names)
        if value is not None:
            return value
    return None


def scalar_text(value):
    """A string or a number as text; "" for anything else (ids and names are scalars)."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value).strip()
    return ""


def _channel(value):
    value = scalar_text(value).lower().replace("-", "_").replace(" ", "_")
    return INBOUND_CHANNELS.get(value, "")


def _avatar(value):
    value = scalar_text(value)
    if len(value) <= AVATAR_MAX and is_http_url(value):
        return value
    return ""


def _url_name(value):
    if not isinstance(value, str):
        return ""
    if is_http_url(value):
        name = urlsplit(value.strip()).path.rstrip("/").rsplit("/", 1)[-1]
        return name or value.strip()
    return value.strip()


def url_file_name(url):
    """The file name an http(s) URL ends with, decoded ("ใบเสร็จ.pdf"); "" for none."""
    if not is_http_url(url):
        return ""
    return unquote(urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1]).strip()


def _timestamp(value):
    """A datetime from epoch seconds, epoch milliseconds or ISO 8601; None otherwise."""
    try:
        if _is_number(value) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
            seconds = float(value)
            if seconds > 1e11:  # milliseconds: 1e11 s is the year 5138
                seconds /= 1000
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str):
            parsed = parse_datetime(value.strip())
            if parsed is not None and timezone.is_naive(parsed):
                parsed = parsed.replace(tzinfo=UTC)
            return parsed
    except (ValueError, OverflowError, OSError):
        pass
    return None


_NUMBER = re.compile(r"\d{9,}(\.\d+)?")


# --- Outbound: validation and the Send Message body ------------------------------------

# What a sender may put in ``data`` for each outbound type. R-Chat's own field names
# are not published (see docs/rchat-contract.md), so rchat checks what it must know to
# be sure the message makes sense and then sends ``data`` in the shape the sender gave.
OUTBOUND_TYPES = KNOWN_TYPES

# Characters of a message kept in Message.text and the room's last-message preview.
PREVIEW_LENGTH = ChatRoom._meta.get_field("last_message_preview").max_length


def is_http_url(value):
    """True for a string that is an absolute http(s) URL."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def http_url(value):
    """``value`` stripped if it is an http(s) URL, safe for href and src; else ""."""
    return value.strip() if is_http_url(value) else ""


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
    elif not is_http_url(url):
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
    try:
        json_check(data)
    except ValueError as exc:
        errors["data"] = _("Cannot be stored or sent: %(reason)s.") % {"reason": exc}
    else:
        # What inbound_clean would change is what PostgreSQL refuses (NUL, surrogates).
        if inbound_clean(data) != data:
            errors["data"] = _(
                "Contains a NUL character or an unpaired surrogate, which cannot be stored or sent."
            )
        else:
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
    return short(" ".join(str(text).split()), PREVIEW_LENGTH)
