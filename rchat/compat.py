"""Fixes for the libraries rchat's Celery workers run on, applied when the app is ready.

Each fix changes only what the library would otherwise crash on, and says which
versions need it.
"""

import functools
import logging

logger = logging.getLogger(__name__)


def kombu_redis_restore_after_release():
    """Keep a Celery worker alive when Redis goes away while it holds unacked messages.

    With Celery 5.7 and kombu 5.7 (every pool), a worker whose connection to Redis is
    lost while it holds unacknowledged messages and waits on BRPOP can exit with
    ``Unrecoverable error: AttributeError("'NoneType' object has no attribute
    'hostname'")`` instead of reconnecting:

    1. Celery's ``Consumer.on_connection_error_after_connected`` calls
       ``connection.collect()``. Closing the channel there first drains the pending
       BRPOP reply, which raises ConnectionError; kombu ignores it, so the channel
       stays open with its unacked messages, and ``collect()`` then sets
       ``transport.client`` to None.
    2. Celery then calls ``connection.close()`` (new in 5.7, celery#10242). It closes
       the same channel again; kombu's Redis ``QoS.restore_unacked`` asks for a new
       connection pool, whose parameters are read from ``transport.client``: the
       AttributeError escapes ``ignore_errors`` and ends the worker.

    Here, when ``restore_unacked`` fails with AttributeError because the transport
    was already released (no client given, ``transport.client`` is None), the restore
    is skipped with a warning, as when Redis cannot be reached at that moment. Nothing
    is lost: Redis still lists those messages as unacked and puts them back after
    ``visibility_timeout`` (unless they went with Redis), and rchat's stale sweep wakes
    their messages anyway, since the database row is what says what is left to send.
    With a usable transport, or a client given, kombu's code runs unchanged.

    Returns True when the fix is in place, False when kombu's Redis transport cannot
    be imported (no redis-py: the worker does not use Redis).
    """
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return False
    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "rchat_fix", False):
        return True

    @functools.wraps(original)
    def restore_unacked(self, client=None):
        try:
            return original(self, client)
        except AttributeError:
            transport = getattr(self.channel, "connection", None)
            if client is not None or getattr(transport, "client", None) is not None:
                raise
            logger.warning(
                "Not restoring %d unacknowledged message(s): the broker connection was "
                "already released. Redis restores them after its visibility timeout, and "
                "the stale sweep wakes their messages.",
                len(self._delivered),
            )
            self._delivered.clear()
            return None

    restore_unacked.rchat_fix = True
    kombu_redis.QoS.restore_unacked = restore_unacked
    return True
