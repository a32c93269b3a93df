"""Everything that changes rchat's state goes through here.

Admin, views, the API, tasks and management commands parse their input, call one of
these functions and answer; they do not write rows themselves. Functions are named
``<thing>_<action>`` and take keyword arguments only. One module per part:
``credentials``, ``rooms``, ``outbound`` (queueing), ``delivery`` (sending),
``inbound`` (webhooks), ``handover`` (the bot or people), ``broadcasts`` (one message to
many rooms), ``labels`` (tags on chat rooms), ``canned`` (canned responses),
``notes`` (private notes in a conversation and their @mentions), ``attachments``
(images and files agents upload), ``presence`` (who else has a conversation open: the
cache, not the database), ``retention`` (deleting old webhook events and delivery
attempts) and ``staff`` (the operators' and agents' groups); every public function is
importable from ``rchat.services`` itself.
"""

from .attachments import (
    CheckedUpload,
    accepted_types_accept,
    accepted_types_text,
    attachment_check,
    attachment_delete,
    attachment_message,
    attachment_send,
    attachment_store,
    attachment_url,
)
from .broadcasts import broadcast_cancel, broadcast_create, broadcasts_settle
from .canned import (
    MANAGE_SHARED_PERMISSION,
    canned_can_manage,
    canned_check,
    canned_delete,
    canned_render,
    canned_save,
)
from .credentials import (
    credential_check,
    credential_connect,
    credential_mark_invalid,
    credential_reencrypt,
    credential_register,
    credential_save,
    credential_test_connection,
)
from .delivery import DrainResult, delivery_drain, rooms_mark_ready
from .handover import (
    room_hand_over,
    room_handler_for_new,
    room_return_to_bot,
    room_take_over,
    rooms_return_idle,
)
from .inbound import (
    InboundResult,
    Reprocessed,
    message_hook_run,
    webhook_event_reprocess,
    webhook_events_reprocess,
    webhook_receive,
    webhook_refuse,
)
from .labels import label_check, label_save, room_label_add, room_label_remove, room_labels_set
from .notes import (
    mentions_seen,
    note_add,
    note_can_delete,
    note_check,
    note_delete,
)
from .outbound import message_requeue_stale, message_retry, message_send
from .presence import presence_report
from .retention import PurgeResult, retention_purge
from .rooms import room_assign, room_close, room_get_or_create, room_mark_read, room_reopen
from .staff import staff_groups_sync, staff_member_add

__all__ = [
    "MANAGE_SHARED_PERMISSION",
    "CheckedUpload",
    "DrainResult",
    "InboundResult",
    "PurgeResult",
    "Reprocessed",
    "accepted_types_accept",
    "accepted_types_text",
    "attachment_check",
    "attachment_delete",
    "attachment_message",
    "attachment_send",
    "attachment_store",
    "attachment_url",
    "broadcast_cancel",
    "broadcast_create",
    "broadcasts_settle",
    "canned_can_manage",
    "canned_check",
    "canned_delete",
    "canned_render",
    "canned_save",
    "credential_check",
    "credential_connect",
    "credential_mark_invalid",
    "credential_reencrypt",
    "credential_register",
    "credential_save",
    "credential_test_connection",
    "delivery_drain",
    "label_check",
    "label_save",
    "mentions_seen",
    "message_hook_run",
    "message_requeue_stale",
    "message_retry",
    "message_send",
    "note_add",
    "note_can_delete",
    "note_check",
    "note_delete",
    "presence_report",
    "retention_purge",
    "room_assign",
    "room_close",
    "room_get_or_create",
    "room_hand_over",
    "room_handler_for_new",
    "room_label_add",
    "room_label_remove",
    "room_labels_set",
    "room_mark_read",
    "room_reopen",
    "room_return_to_bot",
    "room_take_over",
    "rooms_mark_ready",
    "rooms_return_idle",
    "staff_groups_sync",
    "staff_member_add",
    "webhook_event_reprocess",
    "webhook_events_reprocess",
    "webhook_receive",
    "webhook_refuse",
]
