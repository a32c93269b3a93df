"""Where presence lives: who has a conversation open, and who is typing in it.

Presence is kept in Django's cache (``RCHAT["PRESENCE_CACHE"]``, an alias of
``settings.CACHES``), never in the database: it is worth a few seconds and is written
every few seconds by every open page, so a row per beat would be all cost.

Each chat room has one cache entry, ``rchat:presence:<room id>``: a small dict of
``{user id: [name, seen, typed]}`` (``seen``: the last beat of any kind, ``typed``: the
last "typing" beat, both ``time.time()``). Every beat rewrites the dict with a fresh
time-out and drops the users it has not heard from for ``PRESENCE_SECONDS``, so the
entry holds at most the agents who have the room open, and vanishes with the last of
them. No key is ever written per beat or per user.

Two beats for one room at the same moment may both read the dict, and the later write
wins: the other agent's beat is lost. That costs one beat (the next one, a few seconds
later, puts them back), which is why there is no lock. The services write
(``services.presence_report``) and the selectors read (``selectors.room_presence``)
through this module.
"""

from django.core.cache import caches

from .conf import get_setting

#: An agent whose page has not reported for this long is no longer there (the page
#: beats every ``VIEWING_BEAT`` seconds, see presence.js).
PRESENCE_SECONDS = 15
#: "Typing" lasts this long after the last keystroke reported (they come at most every
#: three seconds while the agent types).
TYPING_SECONDS = 6
#: What a page may report.
VIEWING, TYPING, LEFT = "viewing", "typing", "left"
STATES = (VIEWING, TYPING, LEFT)


def cache():
    """The cache presence is kept in (read at call time: override_settings works)."""
    return caches[get_setting("PRESENCE_CACHE")]


def key(room_id):
    return f"rchat:presence:{room_id}"


def entries(room_id, *, now):
    """The room's dict ``{user id: [name, seen, typed]}``, without who has gone."""
    stored = cache().get(key(room_id))
    if not isinstance(stored, dict):
        return {}
    return {
        user_id: entry
        for user_id, entry in stored.items()
        if isinstance(entry, list | tuple) and len(entry) == 3 and now - entry[1] < PRESENCE_SECONDS
    }


def store(room_id, present):
    """Write the room's dict back, expiring with its last user; empty, delete it."""
    if present:
        cache().set(key(room_id), present, timeout=PRESENCE_SECONDS)
    else:
        cache().delete(key(room_id))
