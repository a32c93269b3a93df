"""Presence: an agent's open page reports that they view a conversation, type in it, or
left it. Kept in the cache for a few seconds (``rchat.presence``), never in the database."""

import time

from .. import presence
from ..ui.messages import person_name


def presence_report(*, room, user, state, now=None):
    """Record that ``user`` is viewing ``room``, typing in it, or has left it.

    ``state`` is one of ``rchat.presence.STATES`` (ValueError otherwise). ``now`` is a
    ``time.time()`` value, for tests; the real clock by default. Costs no database
    query: the name colleagues see is stored with the beat.
    """
    if state not in presence.STATES:
        raise ValueError(f"Unknown presence state {state!r}; one of {', '.join(presence.STATES)}.")
    now = time.time() if now is None else now
    present = presence.entries(room.pk, now=now)
    if state == presence.LEFT:
        if present.pop(user.pk, None) is None:
            return  # Not there: nothing to write.
    else:
        # "viewing" says the agent is not typing (any more): their page sends it only
        # when no key was pressed since its last "typing".
        present[user.pk] = [person_name(user), now, now if state == presence.TYPING else 0]
    presence.store(room.pk, present)
