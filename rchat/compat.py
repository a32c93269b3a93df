"""Fixes for the libraries rchat's Celery workers run on, applied when the app is ready.

Each fix changes only what the library would otherwise crash on, and says which
versions need it.
"""

import functools


def kombu_redis_released_channel():
    """Keep a Celery worker alive when Redis goes away while it holds unacked messages.

    With Celery 5.7 and kombu 5.7 (any pool), a worker whose connection to Redis is lost
    while it holds unacknowledged messages and waits on BRPOP can exit with
    ``Unrecoverable error: AttributeError("'NoneType' object has no attribute
    'hostname'")`` instead of reconnecting:

    1. Celery's ``Consumer.on_connection_error_after_connected`` calls
       ``connection.collect()``. Closing the channel there first reads the pending
       BRPOP reply, which raises ConnectionError; kombu ignores it, so the channel
       stays open with its unacked messages, and ``collect()`` then sets
       ``transport.client`` to None.
    2. Celery then calls ``connection.close()`` (new in 5.7, celery#10242), which
       closes that channel again: kombu's Redis ``QoS.restore_unacked`` asks the
       channel for a new connection pool, whose parameters ``Channel._connparams``
       reads from ``transport.client``. The AttributeError is not one of the
       connection errors Celery ignores there, and it ends the worker.
    3. Likewise, once the worker has reconnected, a task that was running meanwhile
       acknowledges its message through the old channel, whose transport is gone
       (``'NoneType' object has no attribute 'client'``).

    Here ``Channel._connparams`` raises redis-py's ConnectionError instead when the
    channel's transport, or the transport's connection, was released: kombu and
    Celery then do what they do when Redis cannot be reached at that moment (leave
    the messages unrestored, log "Couldn't ack"), and the worker reconnects. Nothing
    is lost: Redis still lists those messages as unacked and puts them back after
    ``visibility_timeout`` (unless they went with Redis), and rchat's stale sweep wakes
    their messages anyway, since the database row says what is left to send. On a
    channel whose transport is in use, kombu's code runs unchanged; so the fix is
    applied whatever the versions (on others it changes only a call that would raise
    that AttributeError). tests/test_compat.py kills Redis under a real worker.

    Returns True when the fix is in place, False when kombu's Redis transport cannot
    be imported (no redis-py: the workers do not use Redis).
    """
    try:
        import redis
        from kombu.transport import redis as kombu_redis
    except ImportError:
        return False
    original = kombu_redis.Channel._connparams
    if getattr(original, "rchat_fix", False):
        return True

    @functools.wraps(original)
    def _connparams(self, *args, **kwargs):
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError(
                "This channel's broker connection was already closed."
            )
        return original(self, *args, **kwargs)

    _connparams.rchat_fix = True
    kombu_redis.Channel._connparams = _connparams
    return True
