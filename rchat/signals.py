"""Signals rchat sends. Every one is sent after the database commit it reports.

``message_received(sender=Message, message=Message, room=ChatRoom, created=bool)``
    An end user's message was stored (``created`` is False for a redelivery).
``message_sent(sender=Message, message=Message)``
    R-Chat accepted an outbound message.
``message_failed(sender=Message, message=Message, error=str)``
    An outbound message failed for good (it can be sent again with
    ``services.message_retry``).
"""

from django.dispatch import Signal

message_received = Signal()
message_sent = Signal()
message_failed = Signal()
