"""rchat's tables: credentials, chat rooms, messages, delivery attempts, webhook events.

Rows are changed only through ``rchat.services``; read them through ``rchat.selectors``.
"""

import secrets
from urllib.parse import urljoin

from django.conf import settings
from django.db import models
from django.db.models import Q
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
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)
    last_message_preview = models.CharField(_("last message preview"), max_length=200, blank=True)
    # Inbound messages since an agent last read the room.
    unread_count = models.PositiveIntegerField(_("unread"), default=0)
    # When the room's oldest pending outbound message may be handed to a worker; None
    # when it has none, or while that message is in a worker's hands. The delivery
    # claim reads rooms by it (services/delivery.py), never a room's whole history.
    send_after = models.DateTimeField(null=True, blank=True, editable=False)
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
            # The delivery claim: rooms with an outbound message due, soonest first.
            models.Index(
                fields=["send_after"],
                condition=Q(send_after__isnull=False),
                name="rchat_room_send_after",
            ),
        ]

    def __str__(self):
        return self.display_name or self.chat_id


class Message(models.Model):
    """One message in a chat room, inbound (from the end user) or outbound (to them)."""

    class Direction(models.TextChoices):
        IN = "in", _("Inbound")
        OUT = "out", _("Outbound")

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
        ]

    def __str__(self):
        return f"{self.get_direction_display()} {self.type} #{self.pk}"


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
