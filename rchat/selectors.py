"""Read queries for the webhook, inbox, API and admin (one query per list, no N+1)."""

import dataclasses
import threading
from datetime import datetime, time, timedelta
from time import monotonic
from time import time as time_now

from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import TruncDate
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import crypto, presence, search
from .models import (
    Attachment,
    Broadcast,
    CannedResponse,
    ChatRoom,
    Credential,
    Handover,
    Label,
    Mention,
    Message,
    Note,
)

# --- Inbox and API ----------------------------------------------------------------------
# Each function here runs a fixed number of queries, whatever the number of rooms or
# messages: lists join what they show (the assignee, the credential's name) instead of
# loading rows one by one, and read the denormalized ChatRoom.unread_count and
# last_message_preview columns rather than counting messages.

#: The inbox's tabs: the agent's own rooms, rooms nobody has, every room.
#: The inbox's tabs (and the API's ``view``): the agent's own rooms, rooms people handle
#: that nobody has taken yet, rooms the bot handles, every room.
ROOM_VIEWS = ("mine", "unassigned", "bot", "all")
#: Who handles a room, as the filters name it.
ROOM_HANDLERS = (ChatRoom.Handler.BOT.value, ChatRoom.Handler.PEOPLE.value)
#: Room status filters; "all" means either.
ROOM_STATUSES = ("open", "closed", "all")
#: Messages shown at once in a conversation; older ones are a link away.
THREAD_LIMIT = 50


def _rooms():
    # The credential's row holds encrypted tokens that would be decrypted for every
    # room; a list needs only its name.
    # Labels come in one more query for the whole page (prefetch), not one per room.
    return (
        ChatRoom.objects.select_related("assignee")
        .prefetch_related("labels")
        .annotate(credential_name=F("credential__name"))
    )


def _views(user):
    """Each of ``ROOM_VIEWS`` as a condition on rooms (None: every room)."""
    return {
        "mine": Q(assignee=user),
        # A room the bot answers needs nobody yet; one handed to people does.
        "unassigned": Q(assignee__isnull=True, handler=ChatRoom.Handler.PEOPLE),
        "bot": Q(handler=ChatRoom.Handler.BOT),
        "all": None,
    }


def room_list(
    *,
    user,
    view="all",
    status="open",
    q="",
    credential=None,
    credential_name="",
    chat_id="",
    handler="",
    label="",
):
    """Chat rooms for the inbox or the API, most recent activity first.

    ``view`` is one of ``ROOM_VIEWS`` (``mine`` is relative to ``user``; "unassigned"
    is the rooms people handle that nobody has taken, "bot" those the bot handles),
    ``status`` one of ``ROOM_STATUSES``; ``q`` matches the chat id, the end user's name
    or the text of any message in the room (``room_matches``); ``credential`` (a
    Credential or its pk) or ``credential_name`` keeps only that account's rooms;
    ``chat_id`` is R-Chat's id, matched exactly; ``handler`` ("bot" or "people", ""
    for either) who handles them; ``label`` a label's name (any case) or id keeps the
    rooms that have it (no room for a label that does not exist). ``q`` matches label
    names too.
    """
    rooms = _rooms()
    condition = _views(user).get(view)
    if condition is not None:
        rooms = rooms.filter(condition)
    if handler in ROOM_HANDLERS:
        rooms = rooms.filter(handler=handler)
    if status in ("open", "closed"):
        rooms = rooms.filter(status=status)
    if credential is not None:
        rooms = rooms.filter(credential=credential)
    if credential_name:
        rooms = rooms.filter(credential__name=credential_name)
    if chat_id:
        rooms = rooms.filter(chat_id=chat_id)
    label = str(label or "").strip()
    if label:
        # Exists, not a join: a room is listed once, and the count stays a plain count.
        rooms = rooms.filter(Exists(_room_labels(label_matches(label, prefix="label__"))))
    q = (q or "").strip()
    if q:
        rooms = rooms.filter(room_matches(q))
    # The same order as the rchat_room_inbox / rchat_room_assignee indexes.
    return rooms.order_by("-last_message_at", "-id")


def room_matches(q):
    """A condition on rooms: ``q`` (stripped, not empty) is in the chat id, the end
    user's name, a label's name, or, when it is long enough for the trigram index
    (``search.can_search_messages``), the text of one of the room's messages.

    Any case, ``%`` and ``_`` literal, in any script (a substring, not words). A
    shorter query leaves message text out: the inbox polls its room list every two
    seconds, and one or two letters would read every message each time.
    """
    condition = Q(search.contains("chat_id", q)) | Q(search.contains("display_name", q))
    condition |= Q(Exists(_room_labels(Q(search.contains("label__name", q)))))
    if search.can_search_messages(q):
        # IN (SELECT DISTINCT room_id ...), not EXISTS: PostgreSQL costs an EXISTS
        # inside OR as if it ran once per room (it runs once, hashed), and at a million
        # messages that estimate starts JIT compilation, which alone took ~175 ms of a
        # 6 ms query. DISTINCT keeps the hashed list to one id per room however many
        # messages match.
        rooms_with_text = (
            Message.objects.filter(search.contains("text", q))
            .order_by()
            .values("room_id")
            .distinct()
        )
        condition |= Q(pk__in=rooms_with_text)
    return condition


def label_matches(value, prefix=""):
    """A condition on labels: the one named ``value`` (any case), or whose id it is."""
    condition = Q(**{f"{prefix}name__iexact": value})
    if value.isdigit():
        condition |= Q(**{f"{prefix}pk": int(value)})
    return condition


def _room_labels(condition):
    """The outer room's rows of ChatRoom.labels whose label meets ``condition`` (on the
    through model: ``label__...``)."""
    return ChatRoom.labels.through.objects.filter(chatroom=OuterRef("pk")).filter(condition)


def label_list():
    """Every label, by name (case ignored)."""
    return Label.objects.all()


def canned_for(user):
    """The canned responses ``user`` may use: the shared ones and their own, by
    shortcut (a personal one before a shared one of the same shortcut)."""
    return CannedResponse.objects.filter(Q(owner__isnull=True) | Q(owner=user.pk)).order_by(
        "shortcut", F("owner").asc(nulls_last=True), "id"
    )


def canned_matching(user, q=""):
    """``canned_for(user)`` whose shortcut or title starts with / holds ``q``."""
    q = (q or "").strip().removeprefix("/").lower()
    canned = canned_for(user)
    if q:
        canned = canned.filter(Q(shortcut__startswith=q) | Q(title__icontains=q))
    return canned


def canned_by_shortcut(user, shortcut):
    """The canned response ``/shortcut`` means for ``user`` (their own first), or None."""
    return canned_for(user).filter(shortcut=shortcut.strip().lower()).first()


def attachment_by_key(key):
    """The attachment whose key is ``key``, or None (the key is its URL's secret)."""
    if not key or len(key) > Attachment._meta.get_field("key").max_length:
        return None
    return Attachment.objects.filter(key=key).first()


def labels_named(names):
    """The labels named ``names`` (any case), in one query.

    Returns ``(labels, unknown)``: the labels in the order of ``names`` (each once),
    and the names no label has, as given.
    """
    names = [str(name).strip() for name in names]
    condition = Q(pk__in=[])
    for name in names:
        condition |= Q(name__iexact=name)
    by_name = {row.name.casefold(): row for row in Label.objects.filter(condition)} if names else {}
    found, unknown = {}, []
    for name in names:
        row = by_name.get(name.casefold())
        if row is None:
            unknown.append(name)
        else:
            found.setdefault(row.pk, row)
    return list(found.values()), unknown


def room_counts(*, user):
    """Open rooms and open rooms with unread messages, per tab (``ROOM_VIEWS``), in one
    query."""
    unread = Q(unread_count__gt=0)
    counts = {}
    for view, condition in _views(user).items():
        counts[view] = Count("pk", filter=condition)
        counts[f"{view}_unread"] = Count(
            "pk", filter=unread if condition is None else condition & unread
        )
    totals = ChatRoom.objects.filter(status=ChatRoom.Status.OPEN).aggregate(**counts)
    return {view: {"open": totals[view], "unread": totals[f"{view}_unread"]} for view in ROOM_VIEWS}


def room_get(*, pk):
    """One chat room with its assignee and credential name; raises DoesNotExist."""
    return _rooms().get(pk=pk)


def room_messages(*, room):
    """A room's messages with their authors, oldest first (for paginated lists)."""
    return Message.objects.filter(room=room).select_related("author").order_by("id")


def room_thread(*, room, before=None, limit=THREAD_LIMIT):
    """The latest ``limit`` messages of ``room`` (older than id ``before`` if given).

    Returns ``(messages oldest first, whether older messages exist)``.
    """
    messages = Message.objects.filter(room=room).select_related("author").order_by("-id")
    if before:
        messages = messages.filter(id__lt=before)
    rows = list(messages[: limit + 1])
    return rows[:limit][::-1], len(rows) > limit


def room_thread_version(*, room, since_id):
    """A string that changes whenever the thread from message ``since_id`` on changes.

    Covers new messages, status changes of shown ones, and the room's own state; the
    page's poll compares it to skip re-rendering an unchanged thread.
    """
    # Counts per status as well as the latest updated_at: a bulk update() that does
    # not touch updated_at still changes a status count.
    per_status = {status: Count("id", filter=Q(status=status)) for status in Message.Status.values}
    shown = Message.objects.filter(room=room, id__gte=since_id or 0).aggregate(
        last_id=Max("id"), changed=Max("updated_at"), **per_status
    )
    changed = shown["changed"].timestamp() if shown["changed"] else 0
    counts = "-".join(str(shown[status]) for status in Message.Status.values)
    return f"{counts}.{shown['last_id'] or 0}.{changed:.6f}.{room.status}.{room.assignee_id or 0}"


# --- Presence: who else has a conversation open ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Presence:
    """A colleague on the same conversation: their name, and whether they are typing."""

    user_id: int
    name: str
    typing: bool


def room_presence(*, room, user, now=None):
    """The other agents who have ``room`` open (``user`` left out), typing ones first,
    then by name. Read from the cache (``rchat.presence``): no database query."""
    now = time_now() if now is None else now
    present = [
        Presence(
            user_id=user_id,
            name=name,
            typing=bool(typed) and now - typed < presence.TYPING_SECONDS,
        )
        for user_id, (name, _seen, typed) in presence.entries(room.pk, now=now).items()
        if user_id != user.pk
    ]
    return sorted(present, key=lambda p: (not p.typing, p.name, p.user_id))


def presence_version(present):
    """A short string that changes when someone comes, goes, starts or stops typing
    (not with every beat): part of the polls' versions."""
    return "-".join(f"{p.user_id}{'t' if p.typing else 'v'}" for p in present)


# --- Search ----------------------------------------------------------------------------
# Substrings, not words (Thai has no spaces between them), through rchat.search's
# lookup, which the trigram indexes of migration 0009 serve on PostgreSQL.

#: Matching messages the inbox's search page shows at once; older ones are a link away.
SEARCH_PAGE = 20


def message_search(*, user, q, view="all", before=None):
    """Messages whose text holds ``q`` (any case, any script, ``%``/``_`` literal),
    newest first, each with its room and its author, in one query.

    ``view`` (one of ``ROOM_VIEWS``, relative to ``user``) keeps the messages of those
    rooms; ``before`` (a message id) only older messages, to page on. Every status of
    room is searched. A query without ``search.MIN_RUN`` letters or digits in a row
    matches nothing (``search.can_search_messages``): the index cannot serve it.
    Unbounded: callers slice it (the inbox ``SEARCH_PAGE`` rows, the API a page).
    """
    q = (q or "").strip()
    if not search.can_search_messages(q):
        return Message.objects.none()
    messages = (
        Message.objects.filter(search.contains("text", q))
        .select_related("room", "author")
        .annotate(credential_name=F("room__credential__name"))
        .order_by("-id")
    )
    condition = _views(user).get(view)
    if condition is not None:
        messages = messages.filter(room__in=ChatRoom.objects.filter(condition).values("pk"))
    if before:
        messages = messages.filter(id__lt=before)
    return messages


def message_search_page(*, user, q, view="all", before=None, limit=SEARCH_PAGE):
    """One page of ``message_search``: ``(messages newest first, whether older ones
    match too)``."""
    rows = list(message_search(user=user, q=q, view=view, before=before)[: limit + 1])
    return rows[:limit], len(rows) > limit


#: Most rooms and external ids a message search word looks up before the messages.
SEARCH_LOOKUP_LIMIT = 10_000


def message_matches(q):
    """A condition on messages for admin's search box: ``q`` is in the text (any
    length: an operator's one search, not a poll), in the room's chat id or end user's
    name, or is the message's R-Chat id exactly.

    The rooms and the external id are looked up first (two small queries), so the
    condition on messages is all indexed conditions, which PostgreSQL combines
    (BitmapOr): the text's trigram index, the thread index by room, the primary key.
    The external id has no index of its own (one more write per message stored):
    looking it up scans for equality once, which is cheap next to scanning text.
    """
    rooms = ChatRoom.objects.filter(
        Q(search.contains("chat_id", q)) | Q(search.contains("display_name", q))
    ).values_list("pk", flat=True)
    by_id = Message.objects.filter(external_id=q).values_list("pk", flat=True)
    return (
        Q(search.contains("text", q))
        | Q(room__in=list(rooms[:SEARCH_LOOKUP_LIMIT]))
        | Q(pk__in=list(by_id[:SEARCH_LOOKUP_LIMIT]))
    )


# --- Who handles a room: hand-overs ----------------------------------------------------

#: Hand-overs shown with a chat room (its latest ones).
HANDOVER_HISTORY_LIMIT = 20


def room_conversation(*, room, before=None, limit=THREAD_LIMIT):
    """``room_thread`` for pages that say who wrote each reply: the author and the
    auto-reply rule of every message come in the same query.

    Returns ``(messages oldest first, whether older messages exist)``.
    """
    messages = Message.objects.filter(room=room).select_related("author", "rule").order_by("-id")
    if before:
        messages = messages.filter(id__lt=before)
    rows = list(messages[: limit + 1])
    return rows[:limit][::-1], len(rows) > limit


def room_handovers(*, room, limit=HANDOVER_HISTORY_LIMIT):
    """The latest ``limit`` hand-overs of ``room``, newest first, with who made each."""
    return list(
        Handover.objects.filter(room=room).select_related("by").order_by("-at", "-id")[:limit]
    )


# --- Private notes and mentions -----------------------------------------------------------
# A fixed number of queries whatever the number of notes or mentions: authors are
# joined, the people a page of notes mentions come in one more query, and a mention
# list joins its note, the note's author and room (never the credential, whose row
# holds encrypted tokens).

#: Notes shown at once with a conversation (its latest ones).
NOTES_LIMIT = 50
#: Mentions shown at once on the mentions page (the latest ones).
MENTIONS_LIMIT = 100


def note_list(*, room):
    """The notes of ``room``, newest first (the ``rchat_note_room`` index), each with
    its author and the people it mentions (one query for the page, then one more)."""
    mentions = Mention.objects.select_related("user").order_by("id")
    return (
        Note.objects.filter(room=room)
        .select_related("author")
        .prefetch_related(Prefetch("mentions", queryset=mentions))
        .order_by("-id")
    )


def room_notes(*, room, limit=NOTES_LIMIT):
    """The latest ``limit`` notes of ``room`` (``note_list``), oldest first.

    Returns ``(notes oldest first, whether older notes exist)``.
    """
    rows = list(note_list(room=room)[: limit + 1])
    return rows[:limit][::-1], len(rows) > limit


def mention_unseen_count(*, user):
    """How many of ``user``'s mentions are unseen (one COUNT on ``rchat_mention_unseen``)."""
    if user is None or not user.is_authenticated:
        return 0
    return Mention.objects.filter(user=user, seen_at__isnull=True).count()


def mention_list(*, user, unseen=False):
    """``user``'s mentions, newest first, each with its note, the note's author and room
    joined (one query); with ``unseen`` only those not seen yet. Slice it
    (``MENTIONS_LIMIT``) or page it."""
    mentions = (
        Mention.objects.filter(user=user)
        .select_related("note__author", "note__room")
        .order_by("-id")
    )
    if unseen:
        mentions = mentions.filter(seen_at__isnull=True)
    return mentions


# --- Broadcasts ---------------------------------------------------------------------------
# How far a broadcast has got is counted from its messages, not kept in counters that
# every delivery would have to update: the drain stays as fast for broadcasts as for
# replies, and the counts cannot drift from the rows.

#: The message statuses a broadcast's progress counts.
BROADCAST_STATUSES = (
    Message.Status.QUEUED,
    Message.Status.SENDING,
    Message.Status.SENT,
    Message.Status.FAILED,
    Message.Status.CANCELLED,
)


@dataclasses.dataclass(frozen=True)
class BroadcastProgress:
    """A broadcast's messages counted by status, with its skipped chat rooms.

    ``held`` is the part of ``queued`` that waits for a credential R-Chat refused (sent
    once it is registered again); None where it was not counted (lists).
    """

    status: str
    rooms_total: int
    skipped: int
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    held: int | None = None

    @property
    def messages(self):
        """Messages queued for it so far (one per chat room reached)."""
        return self.queued + self.sending + self.sent + self.failed + self.cancelled

    @property
    def pending(self):
        """Messages not yet answered by R-Chat (queued, held, or in a worker's hands)."""
        return self.queued + self.sending

    @property
    def finished(self):
        """Messages that will not change any more: sent, failed or cancelled."""
        return self.sent + self.failed + self.cancelled

    @property
    def percent(self):
        """Messages finished, in percent of those queued (100 when none was queued and
        none will be)."""
        if not self.messages:
            return 0 if self.status == Broadcast.Status.QUEUEING else 100
        return self.finished * 100 // self.messages

    @classmethod
    def of(cls, broadcast):
        """The progress of a row of ``broadcast_list`` (counted by its annotations)."""
        return cls(
            status=broadcast.status,
            rooms_total=broadcast.rooms_total,
            skipped=broadcast.skipped,
            **{status: getattr(broadcast, f"progress_{status}") for status in BROADCAST_STATUSES},
        )


def _broadcast_counts(prefix):
    return {
        f"progress_{status}": Count(f"{prefix}pk", filter=Q(**{f"{prefix}status": status}))
        for status in BROADCAST_STATUSES
    }


@dataclasses.dataclass(frozen=True)
class BroadcastAudience:
    """The chat rooms a broadcast would reach: how many of each kind."""

    total: int
    open: int
    closed: int
    not_found: int
    #: Open rooms of a credential R-Chat refused: their messages would be held.
    held: int


def broadcast_audience(*, rooms):
    """Count ``rooms`` (a queryset of chat rooms, or ids) as a broadcast would see them,
    in one query; ids that match no room are ``not_found``."""
    ids = None
    if not isinstance(rooms, QuerySet):
        ids = list(dict.fromkeys(int(getattr(room, "pk", room)) for room in rooms))
        rooms = ChatRoom.objects.filter(pk__in=ids)
    is_open = Q(status=ChatRoom.Status.OPEN)
    counts = rooms.aggregate(
        total=Count("pk", distinct=True),
        open=Count("pk", distinct=True, filter=is_open),
        held=Count(
            "pk", distinct=True, filter=is_open & Q(credential__status=Credential.Status.INVALID)
        ),
    )
    total = len(ids) if ids is not None else counts["total"]
    return BroadcastAudience(
        total=total,
        open=counts["open"],
        closed=counts["total"] - counts["open"],
        not_found=total - counts["total"],
        held=counts["held"],
    )


def broadcast_list():
    """Broadcasts, newest first, each with its progress counts (``BroadcastProgress.of``),
    in one query."""
    return (
        Broadcast.objects.select_related("author")
        .annotate(**_broadcast_counts("messages__"))
        .order_by("-created_at", "-id")
    )


def broadcast_get(*, pk):
    """One broadcast with its author; raises Broadcast.DoesNotExist."""
    return Broadcast.objects.select_related("author").get(pk=pk)


def broadcast_progress(broadcast):
    """A ``BroadcastProgress`` for ``broadcast`` (a row or its id), read fresh, in one
    query: its status and skipped rooms, and its messages counted by status."""
    pk = getattr(broadcast, "pk", broadcast)
    held = Q(
        messages__status=Message.Status.QUEUED,
        messages__room__credential__status=Credential.Status.INVALID,
    )
    rows = list(
        Broadcast.objects.filter(pk=pk)
        .values("status", "rooms_total", "skipped")
        .annotate(**_broadcast_counts("messages__"), held=Count("messages__pk", filter=held))
        .order_by()
    )
    if not rows:
        raise Broadcast.DoesNotExist(f"Broadcast #{pk} does not exist.")
    row = rows[0]
    return BroadcastProgress(
        status=row["status"],
        rooms_total=row["rooms_total"],
        skipped=row["skipped"],
        held=row["held"],
        **{status: row[f"progress_{status}"] for status in BROADCAST_STATUSES},
    )


# --- Admin overview ---------------------------------------------------------------------


def admin_overview(*, days=14, now=None):
    """Figures for the admin overview page, in four queries whatever the volume.

    Returns a dict: ``days`` (the last ``days`` dates, oldest first, in the current
    time zone), ``inbound`` and ``outbound`` (messages created per day), ``sent`` and
    ``failed`` (outbound messages of the period that reached R-Chat / gave up),
    ``success_rate`` (sent / (sent + failed), in percent, None when nothing finished),
    ``failed_total`` (failed messages of all time) and ``invalid_credentials``.
    """
    tz = timezone.get_current_timezone()
    today = timezone.localdate(now or timezone.now(), tz)
    dates = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    since = timezone.make_aware(datetime.combine(dates[0], time.min), tz)

    in_period = Message.objects.filter(created_at__gte=since)
    per_day = {(d, "in"): 0 for d in dates} | {(d, "out"): 0 for d in dates}
    rows = (
        in_period.annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day", "direction")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        key = (row["day"], row["direction"])
        if key in per_day:
            per_day[key] = row["n"]

    outcome = in_period.filter(direction=Message.Direction.OUT).aggregate(
        sent=Count("id", filter=Q(status=Message.Status.SENT)),
        failed=Count("id", filter=Q(status=Message.Status.FAILED)),
    )
    finished = outcome["sent"] + outcome["failed"]
    return {
        "days": dates,
        "inbound": [per_day[(d, "in")] for d in dates],
        "outbound": [per_day[(d, "out")] for d in dates],
        "sent": outcome["sent"],
        "failed": outcome["failed"],
        "success_rate": round(100 * outcome["sent"] / finished, 1) if finished else None,
        "failed_total": Message.objects.filter(status=Message.Status.FAILED).count(),
        "invalid_credentials": Credential.objects.filter(status=Credential.Status.INVALID).count(),
    }


# --- Credentials for the webhook --------------------------------------------------------
# Every webhook call needs the credential its signature token belongs to. A site has a
# handful of credentials, so each process keeps the registered ones in memory instead
# of decrypting rows on every call. The copy is dropped when a Credential is saved or
# deleted in this process (receivers below), and is at most WEBHOOK_CACHE_SECONDS old
# anywhere: other processes, and services that change rows with queryset.update(),
# are caught by the age limit. A token the copy does not know triggers one reload
# (at most every WEBHOOK_CACHE_MISS_RELOAD_SECONDS), so a credential registered in
# another process is accepted at once, while a stranger's guesses cost no query.

WEBHOOK_CACHE_SECONDS = 30.0
WEBHOOK_CACHE_MISS_RELOAD_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class WebhookCredential:
    """What the webhook needs to know about a registered credential."""

    id: int
    name: str
    webhook_key: str
    signature_token: str
    previous_signature_token: str
    previous_valid_until: datetime | None
    # Who handles the chat rooms this credential's webhooks create.
    new_room_handler: str = ChatRoom.Handler.PEOPLE

    def accepts(self, token, *, now=None):
        """Whether ``token`` is this credential's signature token (compared in constant time).

        The previous token (before a rotation) is accepted until ``previous_valid_until``.
        """
        if constant_time_compare(token, self.signature_token):
            return True
        if not self.previous_signature_token or self.previous_valid_until is None:
            return False
        if (now or timezone.now()) >= self.previous_valid_until:
            return False
        return constant_time_compare(token, self.previous_signature_token)


class _WebhookCredentials:
    def __init__(self):
        self._lock = threading.Lock()
        self._snapshot = None  # (loaded_at, by_digest, by_key)

    def clear(self, **kwargs):
        self._snapshot = None

    def _load(self):
        accepted = (Credential.Status.ACTIVE, Credential.Status.INVALID)
        by_digest, by_key = {}, {}
        rows = Credential.objects.filter(status__in=accepted).exclude(signature_digest="")
        for row in rows.only(
            "id",
            "name",
            "webhook_key",
            "signature_token",
            "signature_digest",
            "previous_signature_token",
            "previous_signature_digest",
            "previous_valid_until",
            "bot_first",
        ):
            entry = WebhookCredential(
                id=row.id,
                name=row.name,
                webhook_key=row.webhook_key,
                signature_token=row.signature_token,
                previous_signature_token=row.previous_signature_token,
                previous_valid_until=row.previous_valid_until,
                new_room_handler=(
                    ChatRoom.Handler.BOT if row.bot_first else ChatRoom.Handler.PEOPLE
                ),
            )
            by_key[row.webhook_key] = entry
            for digest in (row.signature_digest, row.previous_signature_digest):
                if digest:
                    by_digest.setdefault(digest, []).append(entry)
        snapshot = (monotonic(), by_digest, by_key)
        self._snapshot = snapshot
        return snapshot

    def snapshot(self, *, refresh_if_older_than=None):
        snapshot = self._snapshot
        limit = WEBHOOK_CACHE_SECONDS if refresh_if_older_than is None else refresh_if_older_than
        if snapshot is None or monotonic() - snapshot[0] >= limit:
            with self._lock:
                # Another thread may have reloaded while this one waited.
                snapshot = self._snapshot
                if snapshot is None or monotonic() - snapshot[0] >= limit:
                    snapshot = self._load()
        return snapshot

    def find(self, token, key=None):
        now = timezone.now()
        digest = crypto.digest(token)
        for attempt in (None, WEBHOOK_CACHE_MISS_RELOAD_SECONDS):
            _, by_digest, by_key = self.snapshot(refresh_if_older_than=attempt)
            if key is not None:
                entry = by_key.get(key)
                if entry is not None and entry.accepts(token, now=now):
                    return entry
            else:
                for entry in by_digest.get(digest, ()):
                    if entry.accepts(token, now=now):
                        return entry
        return None


_webhook_credentials = _WebhookCredentials()


def webhook_credential(*, token, key=None):
    """The registered credential whose signature token is ``token``, or None.

    With ``key`` (the credential's own webhook URL) only that credential is considered.
    Credentials with status "new" are never returned; "invalid" ones are (R-Chat
    refusing our outbound token must not make us drop what it sends us).
    """
    if not token:
        return None
    return _webhook_credentials.find(token, key)


def webhook_credentials_clear():
    """Forget this process's copy of the credentials (the next webhook reloads it)."""
    _webhook_credentials.clear()


post_save.connect(
    _webhook_credentials.clear, sender=Credential, dispatch_uid="rchat.webhook_credentials"
)
post_delete.connect(
    _webhook_credentials.clear, sender=Credential, dispatch_uid="rchat.webhook_credentials"
)
