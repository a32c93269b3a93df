"""Publishing wake-ups to Celery's broker, without ever holding up the sender for long.

The database row is the truth and a task only a wake-up (docs/delivery.md), so a
publish that cannot reach the broker is not worth waiting for: services give up after
``CONNECT_TIMEOUT`` and leave the row to the stale sweep. Celery's own publishing would
wait ``broker_connection_timeout`` and retry, and opening a connection for every
wake-up costs several times the publish itself; so connections come from a small
kombu pool of this module's own, with a short connect time-out and no retry loop.

Tasks are named, not imported: services publish ``rchat.tasks.*`` by name, and only
``tasks`` imports ``services``.

Outbound delivery is woken once per batch, not per message (``drain_wake``): a flag in
the shared Redis (``rchat.shared``) says a drain is already on its way, and a drain
clears it before each claim, so a message committed after that claim wakes another.
"""

import importlib
import logging
import os
import threading

from celery import current_app

logger = logging.getLogger(__name__)

#: Seconds a sender waits for the broker before giving up on the wake-up.
CONNECT_TIMEOUT = 1.0
#: Connections kept per broker URL and process (one per thread that publishes at once).
POOL_LIMIT = 10

DRAIN = "rchat.tasks.drain_outbound"
MESSAGE_HOOK = "rchat.tasks.run_message_hook"
BOT_REPLY = "rchat.tasks.bot_reply"

#: Seconds the "a drain is on its way" flag lives: a wake-up lost after the flag was set
#: delays the next one this long at most (the stale sweep also wakes the drain).
DRAIN_FLAG_SECONDS = 10

_pools = {}
_pools_lock = threading.Lock()


_deferring = threading.local()


class wakes_deferred:
    """Within it, an immediate ``drain_wake`` in this thread is noted, not published.

    For a task that queues replies and is about to drain itself (the bot hook): its
    replies are sent from the same worker at once instead of after a trip through the
    broker. ``requested`` says whether a wake-up was asked for.
    """

    def __enter__(self):
        self.requested = False
        self.outer = getattr(_deferring, "current", None)
        _deferring.current = self
        return self

    def __exit__(self, *exc_info):
        _deferring.current = self.outer
        if self.outer is not None and self.requested:
            self.outer.requested = True


def drain_wake(*, countdown=None):
    """Wake a drain of the outbound queue (now, or in ``countdown`` seconds).

    An immediate wake-up is published only when no drain is already on its way (the
    shared flag; without a shared Redis every call publishes). Never raises: when the
    broker cannot be reached the rows stay queued and the stale sweep wakes a drain.
    """
    deferring = getattr(_deferring, "current", None)
    if countdown is None and deferring is not None:
        deferring.requested = True
        return
    flag = None
    if countdown is None and not current_app.conf.task_always_eager:
        flag = _drain_flag()
        if flag is not None:
            redis, key = flag
            try:
                if not redis.set(key, 1, nx=True, ex=DRAIN_FLAG_SECONDS):
                    return
            except Exception as exc:  # no shared flag: wake anyway
                logger.warning("Shared Redis unavailable for the drain flag (%s)", exc)
                flag = None
    try:
        publish(DRAIN, countdown=countdown)
    except Exception as exc:  # a lost wake-up is what the sweep is for
        logger.warning(
            "Could not wake the outbound drain (%s: %s); the stale sweep will.",
            type(exc).__name__,
            exc,
        )
        if flag is not None:
            drain_flag_clear()  # let the next sender try the broker again


def drain_flag_clear():
    """Called by a drain before it claims: whoever commits a message next wakes another."""
    flag = _drain_flag()
    if flag is None:
        return
    redis, key = flag
    try:
        redis.delete(key)
    except Exception as exc:  # the flag expires by itself
        logger.warning("Shared Redis unavailable for the drain flag (%s)", exc)


def _drain_flag():
    from django.db import connections, router

    from . import shared
    from .models import Message

    redis = shared.client()
    if redis is None:
        return None
    # One flag per site database: two sites sharing a Redis wake their own drains.
    database = connections[router.db_for_write(Message)].settings_dict.get("NAME")
    return redis, f"rchat:drain-flag:{database}"


def publish(task_name, *args, countdown=None):
    """Enqueue task ``task_name`` with the positional arguments ``args``.

    Raises whatever the broker raises when it cannot take the task (after one more try
    on a fresh connection, in case the pooled one went stale when the broker restarted).
    With ``task_always_eager`` (tests) the task runs at once, in this process.
    """
    app = current_app
    if app.conf.task_always_eager:
        _task(app, task_name).apply_async(args, countdown=countdown)
        return
    try:
        _send(app, task_name, args, countdown, fresh=False)
    except Exception:
        _send(app, task_name, args, countdown, fresh=True)


def _send(app, task_name, args, countdown, *, fresh):
    pool = _pool(app)
    with pool.acquire(block=True, timeout=CONNECT_TIMEOUT) as connection:
        if fresh:
            # Drop whatever the pooled connection held; it reconnects on use.
            connection.collect()
        try:
            app.send_task(
                task_name,
                args=args,
                countdown=countdown,
                connection=connection,
                retry=False,
                # rchat reads no task results: no result backend is asked to wait for one.
                ignore_result=True,
            )
        except Exception:
            connection.collect()  # never hand a broken connection to the next sender
            raise


def _pool(app):
    # Keyed on where tasks are published, so a changed setting takes new connections.
    url = app.conf.broker_write_url or app.conf.broker_url
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            options = {**(app.conf.broker_transport_options or {}), "max_retries": 0}
            connection = app.connection_for_write(
                connect_timeout=CONNECT_TIMEOUT, transport_options=options
            )
            pool = _pools[url] = connection.Pool(limit=POOL_LIMIT)
        return pool


def _task(app, task_name):
    """The registered task ``task_name``, importing its module when nothing has yet."""
    if task_name not in app.tasks:
        importlib.import_module(task_name.rsplit(".", 1)[0])
    return app.tasks[task_name]


def _forget_after_fork():
    # A forked child must not share the parent's sockets: it starts with no pool (the
    # parent's connections are left alone, not closed, since closing one could end the
    # parent's session with the broker).
    global _pools, _pools_lock
    _pools = {}
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
