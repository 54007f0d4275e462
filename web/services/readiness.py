"""What the readiness probe asks of the broker and the workers, for the HTTP layer."""
from __future__ import annotations

from flask import current_app
from kombu.exceptions import ChannelError

from queues import QUEUES, queue_for

from . import periodic


def ping_broker(celery_app=None, timeout: float = 3.0) -> None:
    """Raise unless the broker (of this app's Celery by default) answers within ``timeout`` s."""
    celery_app = celery_app or current_app.extensions["celery"]  # attached by the app factory
    with celery_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        try:
            conn.default_channel.queue_declare(queue=queue_for("completions.process"),
                                               passive=True)
        except ChannelError:
            pass  # reachable; the queue is created by the first worker


def canaries(stale_after: float) -> dict[str, dict]:
    """Each worker queue's canary: ok, stale or never (the routing table's queues)."""
    return {q: periodic.canary_status(q, stale_after) for q in QUEUES}
