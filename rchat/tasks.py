"""Celery tasks. Each re-reads the rows it works on and calls a service."""

from celery import shared_task

from . import broker, services

# The bots' task lives with the bots; Celery autodiscovers rchat.tasks only.
from .bots.tasks import forward_to_bot  # noqa: F401

# --- Delivery ---------------------------------------------------------------------------
# The broker only wakes a worker up; the rows say what is left to do, so running a
# task twice, or late, sends nothing twice (docs/delivery.md).


@shared_task(ignore_result=True)
def drain_outbound():
    """Send the outbound messages that are due, a batch at a time, until none is left.

    One wake-up per batch, not per message. Not acks_late: a lost run only delays
    messages, whose rows stay queued (or "sending", which the stale sweep takes back).
    """
    return services.delivery_drain().as_dict()


@shared_task(ignore_result=True)
def deliver_message(message_id):
    """Wake-ups queued by rchat 0.3 and earlier, one per message: a drain sends them."""
    return services.delivery_drain().as_dict()


@shared_task(ignore_result=True)
def requeue_stale():
    """Take back abandoned sends and wake the drain when it is owed (beat, every 30-60 s);
    broadcasts with nothing left pending turn done."""
    services.broadcasts_settle()
    services.rooms_return_idle()
    return services.message_requeue_stale()


# --- Housekeeping -----------------------------------------------------------------------


@shared_task(ignore_result=True)
def purge():
    """Delete webhook events and delivery attempts past their retention (beat, daily)."""
    return services.retention_purge().as_dict()


# --- Inbound: the bot hook --------------------------------------------------------------


@shared_task(ignore_result=True)
def run_message_hook(message_id):
    """Call RCHAT["ON_MESSAGE"] with the id of an inbound message just stored.

    Sent once per new message, after its transaction commits, so a bot's work never
    delays the answer to R-Chat. Not acks_late: a bot's reply is not known to be safe
    to repeat, so a worker lost mid-hook does not run it a second time. Replies the
    hook queues are sent by this task right after it, not after a trip through the
    broker: a bot answers as fast as the queue allows.
    """
    with broker.wakes_deferred() as deferred:
        result = services.message_hook_run(message_id=message_id)
    if deferred.requested:
        services.delivery_drain()
    return result


# --- The bot ----------------------------------------------------------------------------


@shared_task(ignore_result=True)
def bot_reply(message_id):
    """Let the bot answer inbound message ``message_id`` in a room the bot handles.

    Queued after the webhook's commit, so the bot never delays the answer to R-Chat.
    Rules, business hours and the site's bot decide (rchat/bots/engine.py); the replies
    are sent by this task right after, as the bot hook's are. Not acks_late: a reply is
    not known to be safe to repeat.
    """
    from .bots import engine

    with broker.wakes_deferred() as deferred:
        decision = engine.bot_answer(message_id)
    if deferred.requested:
        services.delivery_drain()
    if decision is None:
        return None
    return {
        "replies": len(decision.replies),
        "hand_over": decision.hand_over.reason if decision.hand_over else None,
        "forward": decision.forward,
    }
