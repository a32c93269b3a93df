"""The bots' Celery tasks. Registered with a worker through ``rchat.tasks``, which
imports this module (Celery's autodiscovery looks at each app's ``tasks`` module only).
"""

from celery import shared_task

from ..models import BotForward
from . import external


@shared_task(bind=True, ignore_result=True)
def forward_to_bot(self, message_id):
    """Forward inbound message ``message_id`` to its credential's external bot.

    Published by the engine once the message's transaction commits. One try per run;
    a try worth repeating schedules the next run with the back-off ``forward`` gives.
    ``max_retries=None``: the tries are counted in BotForward rows, which survive a
    worker restart, not in Celery's message. Safe to run twice (``forward`` does
    nothing for a message already answered, failed, or being tried). Not acks_late:
    the POST is not known to be safe to repeat.
    """
    forwarded = external.forward(message_id)
    if forwarded.outcome == BotForward.Outcome.RETRY:
        raise self.retry(countdown=forwarded.retry_in, max_retries=None)
    return forwarded.outcome
