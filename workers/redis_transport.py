"""kombu's Redis transport with one fix: a channel of a connection that was already collected
answers with a connection error, not an AttributeError.

Celery 5.7's consumer, on losing the broker, first ``collect()``s the connection (which drops the
transport's link to it) and then ``close()``s it. If Redis went away while the channel was in a
BRPOP, the first close was cut short, so the second one runs the channel's close again: it
restores the unacknowledged messages through a new pool, whose parameters it reads from the
dropped link, and fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``.
That is no connection error, so Celery calls it unrecoverable and the worker stops consuming
(and hung there, never exiting): a Redis restart with a task in flight stalled the completions
queue (tests/pipeline/test_redis_restart.py). As a connection error it is ignored like the
others; the unacknowledged messages stay in Redis's ``unacked`` set and are restored from there
(``unacked_restore_interval``), and the consumer reconnects.
"""
from __future__ import annotations

import kombu.transport as kombu_transport
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    """A channel that refuses to build a pool once its connection is gone."""

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    """``redis://`` and ``rediss://`` broker URLs (``register``)."""

    Channel = Channel


def register() -> None:
    """Make ``redis://`` and ``rediss://`` URLs resolve to this transport (idempotent).

    Through kombu's alias table, not Celery's ``broker_transport``: with that setting the
    connection's URL reads ``workers.redis_transport:Transport://…`` (in the logs, and Flower's
    broker page, which goes by the scheme, answered 404).
    """
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
        kombu_transport._transport_cache.pop(scheme, None)  # if resolved before: again
