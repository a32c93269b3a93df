"""The class a site subclasses to answer chat rooms the bot handles (RCHAT["BOT"]).

A bot gets each new inbound message of a room the bot handles, with the room's latest
messages, after the auto-reply rules had their turn (rules.py). It answers with
replies, a hand-over to people, both, or nothing. rchat runs it in a Celery worker,
off the webhook's path, and sends what it returns through ``services.message_send``,
in order with everything else sent to that end user. An exception never loses the
message: the room goes to people with the error as the reason.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One message to send: any type the Send Message API takes (see payloads.py)."""

    type: str = "text"
    data: object = ""

    @classmethod
    def text(cls, text):
        return cls("text", text)


@dataclass(frozen=True)
class HandOver:
    """Give the room to people; ``reason`` is shown to them (admin, inbox, API)."""

    reason: str = ""


class Bot:
    """Subclass and override ``answer``; name the subclass in RCHAT["BOT"].

    One instance serves many messages (and, in a threaded worker, many threads at
    once): keep per-conversation state in the database, not on ``self``.
    """

    def answer(self, message, thread):
        """What to do about ``message`` (an inbound ``rchat.models.Message``).

        ``thread``: the room's latest messages (RCHAT["BOT_THREAD_LENGTH"]), oldest
        first, ``message`` last; ``message.room`` is the chat room.

        Return None (say nothing), a ``Reply``, a ``HandOver``, or a list of them
        (replies are sent in the list's order; a hand-over anywhere in it hands the
        room over after the replies are queued).
        """
        return None
