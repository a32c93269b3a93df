"""How a message is drawn, in admin and in the inbox alike.

``message_parts`` takes a stored message and returns the few values a template needs.
It accepts any JSON as the message's ``data``: R-Chat may send a string, an object,
an array, a number, a boolean or null under any type, and one odd message must never
break a conversation page. Only http(s) URLs become links or images.

It reads ``message.author`` and ``message.rule``: load messages with both joined
(``selectors.room_conversation``), or each bubble costs a query.
"""

import json

from django.utils.translation import gettext

from ..models import Message
from ..payloads import (
    KNOWN_TYPES,
    first_field,
    http_url,
    inbound_text,
    scalar_text,
    short,
    url_file_name,
)

#: Where the URL of an image, a file or a sticker may be, most likely first.
URL_FIELDS = ("url", "originalContentUrl", "previewImageUrl", "contentUrl", "sticker_url")
NAME_FIELDS = ("name", "filename", "fileName", "file_name", "title")
#: The most of a message's raw data shown when nothing better can be said of it.
RAW_MAX = 500


def _raw(data):
    if data in (None, "", {}, []):
        return ""
    return short(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), RAW_MAX)


def _coordinate(value, limit):
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if -limit <= number <= limit else None


def map_url(latitude, longitude):
    """An OpenStreetMap link to a point (one format for every page)."""
    return f"https://www.openstreetmap.org/?mlat={latitude}&mlon={longitude}#map=16/{latitude}/{longitude}"


def person_name(user):
    """How staff see a colleague: the full name, else the username."""
    return user.get_full_name() or user.get_username()


def written_by(message):
    """Who wrote an outbound message, in words: the person's name, "Bot" or
    "Rule: <name>"; "" for an inbound message or one whose writer was not recorded."""
    if message.direction != Message.Direction.OUT:
        return ""
    sender = message.sender
    if sender == Message.Sender.BOT:
        return gettext("Bot")
    if sender == Message.Sender.RULE:
        rule = message.rule if message.rule_id else None
        return gettext("Rule: %(name)s") % {"name": rule.name} if rule else gettext("Rule")
    if message.author_id:
        # "person", or a message older than Message.sender that has its author.
        return person_name(message.author)
    if sender == Message.Sender.PERSON:
        return gettext("A person")  # whose user account is gone
    return ""


def message_parts(message):
    """A dict for the templates: ``kind`` (a known type or "other"), ``text``, ``url``,
    ``name``, and for a location ``latitude``, ``longitude`` and ``map_url``, for a
    sticker ``package_id`` and ``sticker_id``; ``written_by`` and ``sender`` (a
    ``Message.Sender`` value, "person" for a reply with an author) say who wrote an
    outbound message. Missing values are "" (or None)."""
    data = message.data
    fields = data if isinstance(data, dict) else {}
    kind = message.type if message.type in KNOWN_TYPES else "other"
    parts = {
        "kind": kind,
        "text": "",
        "url": "",
        "name": "",
        "latitude": None,
        "longitude": None,
        "map_url": "",
        "package_id": "",
        "sticker_id": "",
        "written_by": written_by(message),
        "sender": message.sender or (Message.Sender.PERSON if message.author_id else ""),
    }
    if kind == "text":
        parts["text"] = data if isinstance(data, str) else message.text or _raw(data)
    elif kind in ("image", "file", "sticker"):
        url = data if isinstance(data, str) else first_field(fields, URL_FIELDS)
        parts["url"] = http_url(url)
        parts["name"] = scalar_text(first_field(fields, NAME_FIELDS))
        if kind == "file" and not parts["name"]:
            # A file without a name: the one its URL ends with, rather than the URL.
            parts["name"] = url_file_name(parts["url"])
        if kind == "sticker":
            parts["package_id"] = scalar_text(fields.get("package_id"))
            parts["sticker_id"] = scalar_text(fields.get("sticker_id"))
        elif not parts["url"]:
            # No link to show (none, or not http(s)): what the message was, as a label.
            parts["text"] = message.text or inbound_text(kind, None)
    elif kind == "location":
        lat = _coordinate(first_field(fields, ("latitude", "lat")), 90)
        lon = _coordinate(first_field(fields, ("longitude", "lng", "lon")), 180)
        if lat is not None and lon is not None:
            parts.update(latitude=lat, longitude=lon, map_url=map_url(lat, lon))
        parts["text"] = (
            scalar_text(first_field(fields, ("title", "address", "name")))
            or (data if isinstance(data, str) else "")
            or message.text
        )
    else:
        parts["text"] = message.text or _raw(data)
    return parts


def with_parts(messages):
    """``messages``, each with ``parts`` (``message_parts``) set for ``rchat/_message.html``,
    the one template that draws a message on every page."""
    for message in messages:
        message.parts = message_parts(message)
    return messages
