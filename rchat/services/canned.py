"""Canned responses: saving and deleting them, and filling in their placeholders."""

import copy
import re
import unicodedata

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from .. import payloads
from ..models import CannedResponse

#: Who may add, change and delete the shared canned responses.
MANAGE_SHARED_PERMISSION = "rchat.manage_shared_cannedresponse"

# Only these two are placeholders; any other brace ("{price}", "{", "}}") is text
# and stays as written, so a reply with a JSON snippet or a smiley never breaks.
_PLACEHOLDER = re.compile(r"\{(name|agent)\}")


def _shortcut_clean(shortcut):
    """``shortcut`` stripped (a leading "/" dropped) and lower-cased, or ValueError.

    Letters of any script, digits, "-" and "_": Thai's vowel and tone marks are
    combining marks (category M), which ``\\w`` alone would refuse.
    """
    shortcut = (shortcut or "").strip().removeprefix("/").lower()
    if not shortcut:
        raise ValueError(gettext("A canned response needs a shortcut."))
    if len(shortcut) > CannedResponse.SHORTCUT_MAX:
        raise ValueError(
            gettext("A shortcut has at most %(n)d characters.") % {"n": CannedResponse.SHORTCUT_MAX}
        )
    if not all(
        ch.isalnum() or ch in "-_" or unicodedata.category(ch).startswith("M") for ch in shortcut
    ):
        raise ValueError(
            gettext("A shortcut holds only letters, digits, “-” and “_”, without spaces.")
        )
    return shortcut


def _taken():
    return gettext("A canned response with the shortcut “/%(shortcut)s” exists already.")


def canned_check(*, shortcut, title, type, data, owner=None, canned=None):
    """What ``canned_save`` checks, without saving: ``(shortcut, title, data)`` cleaned.

    Raises ValueError (a bad shortcut or title, one taken) or ``InvalidMessage`` (a
    message ``payloads.outbound_validate`` refuses, with its ``errors``).
    """
    shortcut = _shortcut_clean(shortcut)
    title = (title or "").strip()
    if not title:
        raise ValueError(gettext("A canned response needs a title."))
    data = payloads.outbound_validate(type, data)
    others = CannedResponse.objects.filter(shortcut=shortcut)
    others = others.filter(owner__isnull=True) if owner is None else others.filter(owner=owner)
    if canned is not None and canned.pk:
        others = others.exclude(pk=canned.pk)
    if others.exists():
        raise ValueError(_taken() % {"shortcut": shortcut})
    return shortcut, title, data


def canned_save(*, shortcut, title, type, data, owner=None, canned=None):
    """Create a canned response, or with ``canned`` change it; returns it.

    ``owner`` None makes it shared with everyone, a user makes it theirs alone. A
    shortcut is unique among the shared ones and among each user's own (a personal
    "/price" may sit beside a shared one: the personal one wins, see
    ``selectors.canned_by_shortcut``). Who may save a shared one is the caller's to
    check (``MANAGE_SHARED_PERMISSION``).
    """
    shortcut, title, data = canned_check(
        shortcut=shortcut, title=title, type=type, data=data, owner=owner, canned=canned
    )
    canned = canned or CannedResponse()
    canned.shortcut, canned.title, canned.type, canned.data = shortcut, title, type, data
    canned.owner = owner
    try:
        # Its own savepoint: a concurrent save of the same shortcut fails alone; the
        # constraints are the real guard, canned_check only says why first.
        with transaction.atomic():
            canned.save()
    except IntegrityError:
        raise ValueError(_taken() % {"shortcut": shortcut}) from None
    return canned


def canned_can_manage(*, canned, user):
    """Whether ``user`` may change or delete ``canned``: their own, or a shared one with
    ``MANAGE_SHARED_PERMISSION``."""
    if canned.owner_id is None:
        return user.has_perm(MANAGE_SHARED_PERMISSION)
    return canned.owner_id == user.pk


def canned_delete(*, canned, user):
    """Delete ``canned``: a personal one only by its owner, a shared one only with
    ``MANAGE_SHARED_PERMISSION``; anyone else is a PermissionDenied."""
    if not canned_can_manage(canned=canned, user=user):
        raise PermissionDenied(gettext("You may not delete this canned response."))
    canned.delete()


def _fill(text, values):
    if not isinstance(text, str):
        return text
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def canned_render(*, canned, room, agent):
    """``(type, data)`` to send in ``room``: ``{name}`` becomes the end user's name,
    ``{agent}`` the agent's; in a text, a location's title and address, a file's name.

    Anything else in braces is left as written. ``canned`` itself is not changed.
    """
    values = {
        "name": (room.display_name or "").strip() or gettext("customer"),
        "agent": (agent.get_full_name() or agent.get_username()) if agent else "",
    }
    data = copy.deepcopy(canned.data)
    if isinstance(data, str):
        data = _fill(data, values)
    elif isinstance(data, dict):
        for field in ("title", "address", "name"):
            if field in data:
                data[field] = _fill(data[field], values)
    return canned.type, data
