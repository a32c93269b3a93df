"""Celery tasks. Each takes an id, re-reads the row and calls a service."""

from celery import shared_task

from . import services

# --- Delivery ---------------------------------------------------------------------------
# The broker only wakes a worker up; the Message row says what is left to do, so
# running a task twice, or late, sends nothing twice (docs/delivery.md).


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_message(message_id):
    """Hand outbound message ``message_id`` to R-Chat, or schedule its next try.

    acks_late with reject_on_worker_lost: a worker that dies mid-task gives the task
    back to the broker instead of dropping it. That is safe because the service
    claims the row first and does nothing for a message already sent.
    """
    return services.message_deliver(message_id=message_id)


@shared_task(ignore_result=True)
def requeue_stale():
    """Wake outbound messages whose wake-up was lost (run by Celery beat every 30-60 s)."""
    return services.message_requeue_stale()


# --- Inbound: the bot hook --------------------------------------------------------------


@shared_task(ignore_result=True)
def run_message_hook(message_id):
    """Call RCHAT["ON_MESSAGE"] with the id of an inbound message just stored.

    Sent once per new message, after its transaction commits, so a bot's work never
    delays the answer to R-Chat. Not acks_late: a bot's reply is not known to be safe
    to repeat, so a worker lost mid-hook does not run it a second time.
    """
    return services.message_hook_run(message_id=message_id)
