"""The Redis every rchat process shares: rate limits and the one-per-batch wake-up.

``RCHAT["REDIS_URL"]``, or Celery's broker when that is Redis. Without one (the
development site's filesystem broker, RabbitMQ) ``client()`` is None and callers keep
their state in the process: correct, only not shared (docs/delivery.md says what that
costs). A Redis that cannot be reached is treated the same way for that call.
"""

import logging
import os
import threading

logger = logging.getLogger(__name__)

#: Seconds a call to the shared Redis may take before rchat carries on without it.
TIMEOUT = 1.0

_clients = {}
_lock = threading.Lock()


def url():
    """The Redis URL in force, or "" for none."""
    from celery import current_app

    from .conf import get_setting

    configured = get_setting("REDIS_URL")
    if configured:
        return configured
    broker = current_app.conf.broker_write_url or current_app.conf.broker_url or ""
    if broker.startswith(("redis://", "rediss://")):
        return broker
    return ""


def client():
    """A ``redis.Redis`` for ``url()`` (one per process and URL), or None."""
    address = url()
    if not address:
        return None
    with _lock:
        found = _clients.get(address)
        if found is None:
            import redis

            found = _clients[address] = redis.Redis.from_url(
                address, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
            )
        return found


def _forget_after_fork():
    # A forked worker process opens connections of its own.
    global _clients, _lock
    _clients = {}
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
