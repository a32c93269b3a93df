"""Private notes in a conversation, and the colleagues they mention.

A note is for staff only: it is stored beside the room's messages, never as one of
them, so nothing of it is ever queued to R-Chat or reaches the end user.

Who a note mentions (``@username``) is decided once, when it is written, by the rule
of ``mention_tokens``; each person mentioned gets a ``Mention`` row, unseen until they
open the conversation (``mentions_seen``).
"""

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext

from .. import payloads
from ..models import Mention, Note

#: Who may delete anyone's note (an author may always delete their own).
DELETE_PERMISSION = "rchat.delete_note"
#: Who can be mentioned: people who may open the inbox.
VIEW_PERMISSION = "rchat.view_chatroom"
#: The most distinct names of one note looked up; any further ``@name`` is text.
MENTIONS_MAX = 50

# The characters Django's username validator allows that are ASCII: letters, digits
# and "_ . @ + -". Before an "@" they mean the "@" is inside a word, as in an e-mail
# address ("somchai@example.com" mentions nobody).
_ASCII_NAME = r"A-Za-z0-9_.@+\-"
# A name in another script (a Thai username): letters and digits that are not ASCII,
# with the combining marks Thai writes its vowels and tones with (category Mn/Mc,
# which ``\w`` alone leaves out), and the general combining block.
_OTHER_NAME = r"(?:(?![A-Za-z0-9_])\w|[\u0e31\u0e34-\u0e3a\u0e47-\u0e4e\u0300-\u036f])"
_MENTION = re.compile(rf"(?<![{_ASCII_NAME}])@(?P<name>[{_ASCII_NAME}]+|{_OTHER_NAME}+)")
# Left over at the end of a name when it ends a sentence: "ask @somchai." or "@som-".
_TRAILING = ".@+-"


def mention_tokens(text):
    """Where ``text`` may mention someone: ``(start, end, name)`` for each ``@name``.

    The rule (documented in docs/inbox.md):

    - An "@" starts a mention at the start of the text or after any character that is
      not an ASCII letter, digit or one of ``_ . @ + -``. Thai writes words without
      spaces, so Thai directly before it is fine ("ฝาก@somchai"); an e-mail address is
      not a mention.
    - The name is the longest run after the "@" of ASCII letters, digits and
      ``_ . @ + -`` (the characters of Django's usernames), or else of letters, digits
      and combining marks of another script (a Thai username). It ends at anything
      else: a space, punctuation, an emoji, or a change of script, so
      "@somchaiช่วยดู" names "somchai". A Thai username therefore needs a space or
      punctuation after it.
    - Trailing ``. @ + -`` are left out when no user has the name with them
      ("thanks @somchai." names "somchai"); see ``_mentioned_users``.

    ``start`` and ``end`` span the "@" and the name as written.
    """
    for match in _MENTION.finditer(text or ""):
        yield match.start(), match.end(), match.group("name")


def mention_candidates(name):
    """The names ``name`` may stand for, longest first (without its trailing . @ + -)."""
    short = name.rstrip(_TRAILING)
    return [name, short] if short and short != name else [name]


def mentionable_users():
    """The users a note can mention: active, and allowed to open the inbox
    (``rchat.view_chatroom`` of their own or through a group, or superusers)."""
    user_model = get_user_model()
    condition = Q(
        user_permissions__codename="view_chatroom",
        user_permissions__content_type__app_label="rchat",
    ) | Q(
        groups__permissions__codename="view_chatroom",
        groups__permissions__content_type__app_label="rchat",
    )
    if any(field.name == "is_superuser" for field in user_model._meta.get_fields()):
        condition |= Q(is_superuser=True)
    users = user_model._default_manager.filter(condition)
    if any(field.name == "is_active" for field in user_model._meta.get_fields()):
        users = users.filter(is_active=True)
    return users.distinct()


def _mentioned_users(body, *, author):
    """The users ``body`` mentions, in one query: by the rule of ``mention_tokens``,
    their USERNAME_FIELD compared without regard to case; never ``author``."""
    wanted = []
    for _start, _end, name in mention_tokens(body):
        names = [candidate.lower() for candidate in mention_candidates(name)]
        if names not in wanted:
            wanted.append(names)
        if len(wanted) == MENTIONS_MAX:
            break
    if not wanted:
        return []
    field = get_user_model().USERNAME_FIELD
    lowered = {candidate for names in wanted for candidate in names}
    users = mentionable_users().annotate(_rchat_name=Lower(field)).filter(_rchat_name__in=lowered)
    if author is not None:
        users = users.exclude(pk=author.pk)
    by_name = {}
    for user in users.order_by("pk"):
        by_name.setdefault(user._rchat_name, []).append(user)
    found = {}
    for names in wanted:
        # The longest candidate a user has: "@somchai.k" is "somchai.k" if that user
        # exists, else "somchai" only when the rest is trailing punctuation.
        for candidate in names:
            if candidate in by_name:
                for user in by_name[candidate]:
                    found.setdefault(user.pk, user)
                break
    return list(found.values())


def note_check(*, body):
    """``body`` stripped (line breaks as ``\\n``), or ValidationError with the reason it
    cannot be a note.

    For forms that show the reason next to the field before anything is saved.
    """
    if body is not None and not isinstance(body, str):
        raise ValidationError(gettext("A note is text."), code="invalid")
    # A browser sends a textarea's line breaks as CR LF; one newline each is kept.
    body = (body or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not body:
        raise ValidationError(gettext("Write something in the note."), code="required")
    if len(body) > Note.BODY_MAX:
        raise ValidationError(
            gettext("A note has at most %(limit)d characters (this one has %(count)d).")
            % {"limit": Note.BODY_MAX, "count": len(body)},
            code="max_length",
        )
    if payloads.inbound_clean(body) != body:
        raise ValidationError(
            gettext("A note cannot hold a NUL character or an unpaired surrogate."),
            code="invalid",
        )
    return body


def note_add(*, room, author, body):
    """Write a private note in ``room``; returns it.

    ``body`` is stripped and checked (``note_check``: a ValidationError when empty,
    over ``Note.BODY_MAX`` characters or unprintable). Each active colleague who may
    open the inbox and is named ``@username`` in it gets an unseen ``Mention`` (the
    author never does; unknown names stay plain text). The note and its mentions are
    saved together or not at all. Nothing is sent to R-Chat: a note is not a message.
    """
    body = note_check(body=body)
    with transaction.atomic():
        users = _mentioned_users(body, author=author)
        note = Note.objects.create(room=room, author=author, body=body)
        Mention.objects.bulk_create([Mention(note=note, user=user) for user in users])
    return note


def note_can_delete(*, note, user):
    """Whether ``user`` may delete ``note``: its author, or with ``DELETE_PERMISSION``."""
    if user is None or not user.is_authenticated:
        return False
    return (note.author_id is not None and note.author_id == user.pk) or user.has_perm(
        DELETE_PERMISSION
    )


def note_delete(*, note, user):
    """Delete ``note`` (and its mentions): only its author or a user with
    ``DELETE_PERMISSION``; anyone else is a PermissionDenied."""
    if not note_can_delete(note=note, user=user):
        raise PermissionDenied(gettext("You may not delete this note."))
    note.delete()


def mentions_seen(*, user, room):
    """``user`` has opened ``room``: their unseen mentions in its notes are seen now.

    One UPDATE; returns how many mentions it marked.
    """
    if user is None or not user.is_authenticated:
        return 0
    return Mention.objects.filter(user=user, note__room=room, seen_at__isnull=True).update(
        seen_at=timezone.now()
    )
