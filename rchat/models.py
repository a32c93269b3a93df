"""rchat's tables: credentials, chat rooms, messages, delivery attempts, webhook events,
and the bot's: hand-overs, auto-reply rules, business hours, external bots.

Rows are changed only through ``rchat.services``; read them through ``rchat.selectors``.
"""

import secrets
from urllib.parse import urljoin

from django.conf import settings
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext_lazy as _

from . import crypto
from .conf import get_setting


def new_webhook_key():
    return secrets.token_urlsafe(24)


class ErrorKind(models.TextChoices):
    """What went wrong talking to R-Chat (``RChatAPIError.kind``), with what to do about it.

    The label is the advice admin shows next to a credential's last error
    (``Credential.last_error_advice``).
    """

    AUTH = (
        "auth",
        _(
            "R-Chat refused the Chatday-Token. Check it in R-Chat's “R-Chat API” menu, save it "
            "here again and register."
        ),
    )
    RATE_LIMITED = "rate_limited", _("R-Chat asked rchat to slow down; it will try again later.")
    TIMEOUT = "timeout", _("R-Chat did not answer in time. It may be down; try again later.")
    UNREACHABLE = "unreachable", _("Could not reach R-Chat. Check the base URL and the network.")
    NOT_FOUND = "not_found", _("R-Chat has no such address. Check the base URL and the API paths.")
    REDIRECT = "redirect", _("R-Chat redirected the call: set the base URL it redirects to.")
    NO_SIGNATURE = "no_signature", _("R-Chat answered Register without a signature token.")
    SERVER = "server", _("R-Chat had an internal error; try again later.")
    REJECTED = "rejected", _("R-Chat rejected the call; its answer is below.")
    RESPONSE = "response", _("R-Chat's answer could not be read; it is below.")

    @classmethod
    def advice(cls, kind):
        """The advice for ``kind``; "" for one that is not (or no longer) known."""
        return cls(kind).label if kind in cls.values else ""


class Credential(models.Model):
    """One R-Chat account: its Chatday-Token and the signature token Register returned."""

    class Status(models.TextChoices):
        NEW = "new", _("Not registered")
        ACTIVE = "active", _("Active")
        INVALID = "invalid", _("Invalid")

    name = models.CharField(_("name"), max_length=100, unique=True)
    base_url = models.URLField(
        _("R-Chat base URL"),
        blank=True,
        help_text=_('Leave empty to use RCHAT["API_BASE_URL"].'),
    )
    token = crypto.EncryptedTextField(_("Chatday-Token"))
    signature_token = crypto.EncryptedTextField(_("Chatday-Signature-Token"), blank=True)
    # SHA-256 of signature_token, to find the credential a webhook belongs to.
    signature_digest = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # The signature token before the last rotation, accepted until previous_valid_until.
    previous_signature_token = crypto.EncryptedTextField(blank=True, editable=False)
    previous_signature_digest = models.CharField(
        max_length=64, blank=True, db_index=True, editable=False
    )
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.NEW, db_index=True
    )
    registered_at = models.DateTimeField(_("registered at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # An ErrorKind value (no choices on the field: the advice can change without a
    # migration); see last_error_advice.
    last_error_kind = models.CharField(_("kind of last error"), max_length=20, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    last_webhook_at = models.DateTimeField(_("last webhook received"), null=True, blank=True)
    send_rate = models.FloatField(
        _("messages per second"),
        null=True,
        blank=True,
        help_text=_(
            "At most this many messages per second to R-Chat, shared by every worker. "
            'Empty: RCHAT["SEND_RATE"] (no limit unless set).'
        ),
    )
    bot_first = models.BooleanField(
        _("new chat rooms start with the bot"),
        default=False,
        help_text=_(
            "On: the bot (rules, then the site's bot) answers a new chat room until it "
            "hands it to people. Off: people answer from the first message."
        ),
    )
    webhook_key = models.CharField(
        _("webhook key"), max_length=64, unique=True, default=new_webhook_key, editable=False
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("credential")
        verbose_name_plural = _("credentials")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def api_base_url(self):
        """The base URL in force: the credential's own, else RCHAT["API_BASE_URL"]."""
        return self.base_url or get_setting("API_BASE_URL")

    @property
    def last_error_advice(self):
        """What to do about the last error, in plain words ("" when its kind is unknown)."""
        return ErrorKind.advice(self.last_error_kind)

    @property
    def masked_token(self):
        return crypto.mask(self.token)

    @property
    def masked_signature_token(self):
        return crypto.mask(self.signature_token)

    def webhook_path(self):
        """This credential's own webhook path, which accepts its signature token only.

        Not the one to give R-Chat in most sites (see ``webhook_url``): it is for two
        credentials that can share a signature token, such as one R-Chat account
        registered by staging and production on the same site.
        """
        from django.urls import reverse

        return reverse("rchat:webhook-key", kwargs={"key": self.webhook_key})

    def webhook_url(self):
        """The URL to paste into R-Chat's webhook setting (needs RCHAT["SITE_URL"]).

        The site's one webhook, the same for every credential: the signature token
        each call carries says which credential it belongs to.
        """
        from django.urls import reverse

        return urljoin(get_setting("SITE_URL") or "/", reverse("rchat:webhook"))


class ChatRoom(models.Model):
    """One conversation with one end user, identified by R-Chat's chat_id."""

    class Channel(models.TextChoices):
        WEB = "web", _("Web widget")
        LINE = "line", _("LINE")
        FACEBOOK = "facebook", _("Facebook")
        UNKNOWN = "", _("Unknown")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class Handler(models.TextChoices):
        BOT = "bot", _("Bot")
        PEOPLE = "people", _("People")

    credential = models.ForeignKey(
        Credential, on_delete=models.PROTECT, related_name="rooms", verbose_name=_("credential")
    )
    chat_id = models.CharField(_("chat id"), max_length=255)
    channel = models.CharField(
        _("channel"), max_length=20, choices=Channel.choices, blank=True, default=""
    )
    display_name = models.CharField(_("end user's name"), max_length=255, blank=True)
    avatar_url = models.URLField(_("avatar"), max_length=1000, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.OPEN
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rchat_rooms",
        verbose_name=_("assignee"),
    )
    # Who answers the end user: the bot (rules, then the site's bot) or people. Changed
    # only through services/handover.py, which records each change (Handover).
    handler = models.CharField(
        _("handled by"), max_length=10, choices=Handler.choices, default=Handler.PEOPLE
    )
    handler_since = models.DateTimeField(_("handled by them since"), null=True, blank=True)
    # Why the room was last handed to people ("" while the bot has it).
    handover_reason = models.CharField(_("hand-over reason"), max_length=300, blank=True)
    # A person took the room over when its messages reached this id: the bot's messages
    # up to it are never sent (the delivery claim drops them), whatever happens later.
    bot_silenced_through = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)
    last_message_preview = models.CharField(_("last message preview"), max_length=200, blank=True)
    # Inbound messages since an agent last read the room.
    unread_count = models.PositiveIntegerField(_("unread"), default=0)
    # When the room's oldest pending outbound message may be handed to a worker; None
    # when it has none, or while that message is in a worker's hands. The delivery
    # claim reads rooms by it (services/delivery.py), never a room's whole history.
    send_after = models.DateTimeField(null=True, blank=True, editable=False)
    # Set through services.room_labels_set / room_label_add / room_label_remove.
    labels = models.ManyToManyField(
        "Label", blank=True, related_name="rooms", verbose_name=_("labels")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("chat room")
        verbose_name_plural = _("chat rooms")
        ordering = ["-last_message_at", "-id"]
        permissions = [("reply_chatroom", _("Can reply in chat rooms"))]
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "chat_id"], name="rchat_room_unique_chat_id"
            ),
        ]
        indexes = [
            # The inbox: rooms by status, newest first; and "mine" / "unassigned".
            models.Index(fields=["status", "-last_message_at"], name="rchat_room_inbox"),
            models.Index(
                fields=["assignee", "status", "-last_message_at"], name="rchat_room_assignee"
            ),
            # The inbox's Bot and Unassigned tabs: rooms by who handles them.
            models.Index(
                fields=["handler", "status", "-last_message_at"], name="rchat_room_handler"
            ),
            # The delivery claim: rooms with an outbound message due, soonest first.
            models.Index(
                fields=["send_after"],
                condition=Q(send_after__isnull=False),
                name="rchat_room_send_after",
            ),
        ]

    def __str__(self):
        return self.display_name or self.chat_id


#: What each message type R-Chat knows is called on a page. The field has no choices:
#: R-Chat may send any type, and one it adds later shows as it came.
MESSAGE_TYPE_LABELS = {
    "text": _("Text"),
    "image": _("Image"),
    "file": _("File"),
    "sticker": _("Sticker"),
    "location": _("Location"),
}


def message_type_label(value):
    """The translated name of a message type (of a message, broadcast or canned response)."""
    return MESSAGE_TYPE_LABELS.get(value, value)


class Message(models.Model):
    """One message in a chat room, inbound (from the end user) or outbound (to them)."""

    class Direction(models.TextChoices):
        IN = "in", _("Inbound")
        OUT = "out", _("Outbound")

    class Sender(models.TextChoices):
        """Who wrote an outbound message ("" for inbound ones, and outbound ones older than 0.5)."""

        NONE = "", _("Not recorded")
        PERSON = "person", _("Person")
        BOT = "bot", _("Bot")
        RULE = "rule", _("Rule")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    # No index of its own: rchat_msg_thread (room, id) serves every look-up by room, and
    # each index is one more write for every message stored.
    room = models.ForeignKey(
        ChatRoom,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=_("chat room"),
        db_index=False,
    )
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices)
    type = models.CharField(_("type"), max_length=50, default="text")
    data = models.JSONField(_("data"), default=dict, blank=True)
    # A short plain-text rendering of data, for lists and search.
    text = models.TextField(_("text"), blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices)
    # R-Chat's id for the message, when it gives one (inbound: from the webhook).
    external_id = models.CharField(_("external id"), max_length=255, blank=True)
    # What makes a repeat of this message recognisable. Inbound: a redelivery of the
    # same webhook. Outbound: the idempotency key every try to R-Chat carries.
    dedup_key = models.CharField(max_length=100, blank=True, editable=False)
    # Extra fields of the payload that rchat does not model (kept, never dropped).
    extra = models.JSONField(_("extra fields"), default=dict, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rchat_messages",
        verbose_name=_("author"),
        db_index=False,  # rchat_msg_author: outbound rows only
    )
    # Outbound: a person (``author``), the bot, or an auto-reply rule (``rule``).
    sender = models.CharField(
        _("written by"), max_length=10, choices=Sender.choices, blank=True, default=""
    )
    rule = models.ForeignKey(
        "AutoReply",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("rule"),
        db_index=False,  # rchat_msg_rule: rule replies only
    )
    broadcast = models.ForeignKey(
        "Broadcast",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        verbose_name=_("broadcast"),
        db_index=False,  # rchat_msg_broadcast: a broadcast's rows only
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    # When the end user wrote it, if the payload says (inbound).
    sent_by_user_at = models.DateTimeField(null=True, blank=True)
    # Outbound: earliest time for the next delivery attempt; when it reached R-Chat.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "dedup_key"],
                condition=~Q(dedup_key=""),
                name="rchat_message_unique_dedup",
            ),
        ]
        indexes = [
            # A room's thread, in order.
            models.Index(fields=["room", "id"], name="rchat_msg_thread"),
            # The delivery queue and the stale sweep: only unfinished outbound rows.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="rchat_msg_pending",
            ),
            # A room's oldest pending outbound message, whatever the length of its history.
            models.Index(
                fields=["room", "id"],
                condition=Q(status__in=["queued", "sending"]),
                name="rchat_msg_room_pending",
            ),
            models.Index(fields=["status", "-created_at"], name="rchat_msg_status"),
            # Most rows have no author (inbound ones) and no broadcast: indexed only
            # where set, so storing an inbound message writes neither.
            models.Index(
                fields=["author"], condition=Q(author__isnull=False), name="rchat_msg_author"
            ),
            models.Index(
                fields=["broadcast"],
                condition=Q(broadcast__isnull=False),
                name="rchat_msg_broadcast",
            ),
            models.Index(fields=["rule"], condition=Q(rule__isnull=False), name="rchat_msg_rule"),
        ]

    def __str__(self):
        return f"{self.get_direction_display()} {message_type_label(self.type)} #{self.pk}"


class Broadcast(models.Model):
    """One message sent to many chat rooms; each room gets its own Message row."""

    class Status(models.TextChoices):
        QUEUEING = "queueing", _("Queueing")
        SENDING = "sending", _("Sending")
        DONE = "done", _("Done")
        CANCELLED = "cancelled", _("Cancelled")

    name = models.CharField(_("name"), max_length=200, blank=True)
    type = models.CharField(_("type"), max_length=50, default="text")
    data = models.JSONField(_("data"), default=dict, blank=True)
    text = models.TextField(_("text"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUEING
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rchat_broadcasts",
        verbose_name=_("author"),
    )
    # Rooms asked for, and those given no message (closed, unknown), with why.
    rooms_total = models.PositiveIntegerField(_("chat rooms"), default=0)
    skipped = models.PositiveIntegerField(_("skipped"), default=0)
    skipped_reasons = models.JSONField(_("why skipped"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("broadcast")
        verbose_name_plural = _("broadcasts")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name or f"#{self.pk} {self.text[:50]}"


class Label(models.Model):
    """A tag staff put on chat rooms ("VIP", "refund") to sort and find them."""

    class Color(models.TextChoices):
        GREY = "grey", _("Grey")
        RED = "red", _("Red")
        ORANGE = "orange", _("Orange")
        YELLOW = "yellow", _("Yellow")
        GREEN = "green", _("Green")
        BLUE = "blue", _("Blue")
        PURPLE = "purple", _("Purple")

    #: The longest name a label may have.
    NAME_MAX = 50

    name = models.CharField(_("name"), max_length=NAME_MAX)
    color = models.CharField(_("colour"), max_length=10, choices=Color.choices, default=Color.GREY)
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("label")
        verbose_name_plural = _("labels")
        ordering = [Lower("name"), "id"]
        constraints = [
            # "VIP" and "vip" are one label: a second one would split the rooms.
            models.UniqueConstraint(Lower("name"), name="rchat_label_unique_name"),
        ]

    def __str__(self):
        return self.name


class CannedResponse(models.Model):
    """A reply an agent inserts by its shortcut ("/price"): shared, or one agent's own.

    ``type`` and ``data`` are an outbound message as ``payloads.outbound_validate``
    accepts it; its text may hold ``{name}`` (the end user) and ``{agent}``, filled in
    by ``services.canned_render``. Saved through ``services.canned_save``.
    """

    #: The longest shortcut.
    SHORTCUT_MAX = 30

    shortcut = models.CharField(_("shortcut"), max_length=SHORTCUT_MAX)
    title = models.CharField(_("title"), max_length=200)
    type = models.CharField(_("type"), max_length=50, default="text")
    data = models.JSONField(_("data"), default=dict, blank=True)
    # None: shared with everyone; else personal to that user.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="rchat_canned_responses",
        verbose_name=_("owner"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("canned response")
        verbose_name_plural = _("canned responses")
        ordering = ["shortcut", "id"]
        permissions = [
            ("manage_shared_cannedresponse", _("Can manage shared canned responses")),
        ]
        constraints = [
            # NULL owners are never equal in a plain unique constraint: the shared ones
            # need their own, partial one.
            models.UniqueConstraint(
                fields=["shortcut"],
                condition=Q(owner__isnull=True),
                name="rchat_canned_unique_shared",
            ),
            models.UniqueConstraint(
                fields=["owner", "shortcut"],
                condition=Q(owner__isnull=False),
                name="rchat_canned_unique_personal",
            ),
        ]

    def __str__(self):
        return f"/{self.shortcut}"

    @property
    def is_shared(self):
        return self.owner_id is None


class Note(models.Model):
    """A private note staff leave in a conversation: shown apart from its messages,
    never sent to R-Chat. ``@username`` in the body mentions a colleague (``Mention``).
    Written through ``services.note_add``."""

    #: The longest note, in characters.
    BODY_MAX = 5000

    room = models.ForeignKey(
        ChatRoom,
        on_delete=models.CASCADE,
        related_name="notes",
        verbose_name=_("chat room"),
        db_index=False,  # rchat_note_room: (room, id)
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rchat_notes",
        verbose_name=_("author"),
    )
    body = models.TextField(_("note"), max_length=BODY_MAX)
    mentioned = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Mention",
        blank=True,
        related_name="rchat_mentioned_in",
        verbose_name=_("mentioned"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("private note")
        verbose_name_plural = _("private notes")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["room", "id"], name="rchat_note_room")]

    def __str__(self):
        return self.body[:50]


class Mention(models.Model):
    """A colleague named in a note (``@username``); unseen until they open the room."""

    note = models.ForeignKey(
        Note, on_delete=models.CASCADE, related_name="mentions", verbose_name=_("note")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="rchat_mentions",
        verbose_name=_("user"),
        db_index=False,  # rchat_mention_unseen, and the unique constraint's (note, user)
    )
    seen_at = models.DateTimeField(_("seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("mention")
        verbose_name_plural = _("mentions")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["note", "user"], name="rchat_mention_unique"),
        ]
        indexes = [
            # A person's unseen mentions (the inbox's badge and list).
            models.Index(
                fields=["user", "-id"],
                condition=Q(seen_at__isnull=True),
                name="rchat_mention_unseen",
            ),
        ]

    def __str__(self):
        return f"@{self.user_id} in {self.note_id}"


def new_attachment_key():
    # 256 bits: the URL R-Chat fetches the file from cannot be guessed.
    return secrets.token_urlsafe(32)


class _AttachmentStorage(LazyObject):
    """``storages[RCHAT["ATTACHMENT_STORAGE"]]``, looked up when first used.

    A FileField calls its storage callable once, when the model class is made; this
    stand-in lets the setting (and STORAGES) be read later, and read again when a test
    changes them (``setting_changed``), as every other rchat setting is.
    """

    def _setup(self):
        from django.core.files.storage import storages

        self._wrapped = storages[get_setting("ATTACHMENT_STORAGE")]


_attachment_storage = _AttachmentStorage()


@receiver(setting_changed)
def _attachment_storage_reset(*, setting, **kwargs):
    if setting in ("RCHAT", "STORAGES", "MEDIA_ROOT", "MEDIA_URL"):
        _attachment_storage._wrapped = empty


def attachment_storage():
    """The storage attachments are kept in: ``RCHAT["ATTACHMENT_STORAGE"]``, an alias
    of ``settings.STORAGES`` ("default" unless set)."""
    return _attachment_storage


def attachment_path(instance, filename):
    # The key is a directory of its own: the stored name keeps the uploaded one
    # (sanitised by the storage), and no two uploads share a path.
    return f"rchat/attachments/{instance.key}/{filename}"


class Attachment(models.Model):
    """An image or a file an agent uploaded to send, kept in Django's storage.

    R-Chat fetches it from ``rchat:attachment`` (the key in the URL; nothing else
    finds it). Created through ``services.attachment_store``.
    """

    class Kind(models.TextChoices):
        IMAGE = "image", _("Image")
        FILE = "file", _("File")

    key = models.CharField(max_length=64, unique=True, default=new_attachment_key, editable=False)
    file = models.FileField(
        _("file"), upload_to=attachment_path, storage=attachment_storage, max_length=500
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    name = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    room = models.ForeignKey(
        ChatRoom,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("chat room"),
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="rchat_attachments",
        verbose_name=_("uploaded by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        """Where R-Chat (and anyone holding the key) fetches the file; a path, see
        ``services.attachment_url`` for the absolute URL."""
        from django.urls import reverse

        return reverse("rchat:attachment", kwargs={"key": self.key, "name": self.name})


class DeliveryAttempt(models.Model):
    """One try at handing an outbound message to R-Chat."""

    class Outcome(models.TextChoices):
        SENT = "sent", _("Sent")
        RETRY = "retry", _("Will retry")
        FAILED = "failed", _("Failed")
        HELD = "held", _("Held (credential invalid)")

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="attempt_log", verbose_name=_("message")
    )
    started_at = models.DateTimeField(_("started at"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    error_type = models.CharField(_("error type"), max_length=100, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["message", "started_at", "id"]

    def __str__(self):
        return f"{self.message_id} {self.outcome} {self.started_at:%Y-%m-%d %H:%M:%S}"


class WebhookEvent(models.Model):
    """Every authenticated webhook call, kept as it came (the token redacted)."""

    class Outcome(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        PING = "ping", _("Verify ping")
        DUPLICATE = "duplicate", _("Duplicate")
        FAILED = "failed", _("Failed")

    credential = models.ForeignKey(
        Credential,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_events",
        verbose_name=_("credential"),
    )
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    remote_addr = models.GenericIPAddressField(_("remote address"), null=True, blank=True)
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    body = models.BinaryField(_("body"))
    outcome = models.CharField(
        _("outcome"), max_length=10, choices=Outcome.choices, default=Outcome.RECEIVED
    )
    error = models.TextField(_("error"), blank=True)
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("message"),
    )
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["outcome", "-received_at"], name="rchat_event_outcome")]

    def __str__(self):
        return f"#{self.pk} {self.get_outcome_display()}"

    @property
    def body_text(self):
        return bytes(self.body).decode("utf-8", errors="replace")


# --- The chatbot back-office --------------------------------------------------------------


class Handover(models.Model):
    """One change of who handles a chat room: to people (with why) or back to the bot."""

    class Reason(models.TextChoices):
        ASKED = "asked", _("The end user asked for a person")
        BOT = "bot", _("The bot handed over")
        TAKEN = "taken", _("A person took over")
        BOT_ERROR = "bot_error", _("The bot failed")
        HOURS = "hours", _("Out of business hours")
        RULE = "rule", _("A rule handed over")
        RETURNED = "returned", _("Returned to the bot")
        CLOSED = "closed", _("Closed: back to the bot")
        IDLE = "idle", _("Idle: back to the bot")

    room = models.ForeignKey(
        ChatRoom, on_delete=models.CASCADE, related_name="handovers", verbose_name=_("chat room")
    )
    to = models.CharField(_("handed to"), max_length=10, choices=ChatRoom.Handler.choices)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    detail = models.CharField(_("detail"), max_length=300, blank=True)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    # The inbound message that led to it, if one did.
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("message"),
    )
    at = models.DateTimeField(_("at"), db_index=True)

    class Meta:
        verbose_name = _("hand-over")
        verbose_name_plural = _("hand-overs")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["room", "at"], name="rchat_handover_room")]

    def __str__(self):
        return f"{self.room_id} → {self.to} ({self.reason})"


class AutoReply(models.Model):
    """A rule of the bot, managed in admin: a greeting, or a reply to words or a pattern."""

    class Kind(models.TextChoices):
        GREETING = "greeting", _("Greeting (a new chat room's first message)")
        KEYWORD = "keyword", _("Keywords (any of them, anywhere in the text)")
        PATTERN = "pattern", _("Pattern (a regular expression)")

    credential = models.ForeignKey(
        Credential,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="auto_replies",
        verbose_name=_("credential"),
        help_text=_("Empty: the rule applies to every credential."),
    )
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.KEYWORD)
    # Keywords: one per line (Thai or English; matched without relying on spaces).
    # Pattern: one regular expression.
    match = models.TextField(_("match"), blank=True)
    reply_type = models.CharField(_("reply type"), max_length=50, default="text")
    reply_data = models.JSONField(_("reply"), default=dict, blank=True)
    hand_over = models.BooleanField(
        _("then hand over to people"),
        default=False,
        help_text=_("After replying, people take the chat room."),
    )
    position = models.PositiveIntegerField(_("order"), default=0)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("auto-reply rule")
        verbose_name_plural = _("auto-reply rules")
        ordering = ["position", "id"]

    def __str__(self):
        return self.name


class BusinessHours(models.Model):
    """When people answer a credential's chats, and what happens outside those hours."""

    credential = models.OneToOneField(
        Credential,
        on_delete=models.CASCADE,
        related_name="business_hours",
        verbose_name=_("credential"),
    )
    time_zone = models.CharField(_("time zone"), max_length=64, default="Asia/Bangkok")
    reply_type = models.CharField(_("out-of-hours reply type"), max_length=50, default="text")
    reply_data = models.JSONField(
        _("out-of-hours reply"),
        default=dict,
        blank=True,
        help_text=_("Sent once when an end user writes outside business hours; empty: none."),
    )
    out_of_hours_handler = models.CharField(
        _("out of hours, chats go to"),
        max_length=10,
        choices=ChatRoom.Handler.choices,
        default=ChatRoom.Handler.BOT,
    )

    class Meta:
        verbose_name = _("business hours")
        verbose_name_plural = _("business hours")

    def __str__(self):
        return str(self.credential)


class Shift(models.Model):
    """One stretch of business hours on one day of the week (several make split shifts)."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, _("Monday")
        TUESDAY = 1, _("Tuesday")
        WEDNESDAY = 2, _("Wednesday")
        THURSDAY = 3, _("Thursday")
        FRIDAY = 4, _("Friday")
        SATURDAY = 5, _("Saturday")
        SUNDAY = 6, _("Sunday")

    hours = models.ForeignKey(
        BusinessHours, on_delete=models.CASCADE, related_name="shifts", verbose_name=_("hours")
    )
    weekday = models.PositiveSmallIntegerField(_("day"), choices=Weekday.choices)
    start = models.TimeField(_("from"))
    end = models.TimeField(_("until"))

    class Meta:
        verbose_name = _("shift")
        verbose_name_plural = _("shifts")
        ordering = ["weekday", "start"]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.start:%H:%M}-{self.end:%H:%M}"


class Holiday(models.Model):
    """A day the business is closed, whatever its shifts."""

    hours = models.ForeignKey(
        BusinessHours, on_delete=models.CASCADE, related_name="holidays", verbose_name=_("hours")
    )
    date = models.DateField(_("date"))
    name = models.CharField(_("name"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("holiday")
        verbose_name_plural = _("holidays")
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["hours", "date"], name="rchat_holiday_unique_date")
        ]

    def __str__(self):
        return f"{self.date:%Y-%m-%d} {self.name}".strip()


class ExternalBot(models.Model):
    """A bot that lives elsewhere: rchat forwards each inbound message to its URL, signed."""

    credential = models.OneToOneField(
        Credential,
        on_delete=models.CASCADE,
        related_name="external_bot",
        verbose_name=_("credential"),
    )
    url = models.URLField(_("URL"), max_length=1000)
    # Signs each forwarded body (HMAC-SHA256); shown masked, never whole.
    secret = crypto.EncryptedTextField(_("signing secret"))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("external bot")
        verbose_name_plural = _("external bots")

    def __str__(self):
        return f"{self.credential} → {self.url}"

    @property
    def masked_secret(self):
        return crypto.mask(self.secret)


class BotForward(models.Model):
    """One try at forwarding an inbound message to an external bot."""

    class Outcome(models.TextChoices):
        SENT = "sent", _("Delivered")
        RETRY = "retry", _("Will retry")
        FAILED = "failed", _("Failed")

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="bot_forwards", verbose_name=_("message")
    )
    url = models.URLField(_("URL"), max_length=1000)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    started_at = models.DateTimeField(_("started at"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("bot forward")
        verbose_name_plural = _("bot forwards")
        ordering = ["message", "started_at", "id"]

    def __str__(self):
        return f"{self.message_id} {self.outcome} #{self.attempt}"
