"""Small broker operations used by the relay and the task base: publish, queue depth."""
from __future__ import annotations

import logging
from contextlib import contextmanager

from celery import Celery
from kombu.exceptions import ChannelError

from .request_ids import HEADER

log = logging.getLogger(__name__)
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


@contextmanager
def publisher(celery_app: Celery):
    """A publish(task, args, queue, task_id, request_id) function for the outbox relay, for this
    block; the message carries ``request_id`` in its headers (``workers.request_ids``).

    One producer (and broker connection) serves every message published in the block, not a
    pool round trip per message, and goes back to the pool when the block ends: the relay holds
    one for its life, each outbox sweep one for its run.

    The message lands on the queue Celery's router picks from the task name (``queues.ROUTES``;
    an unrouted task goes to the default queue), not on ``queue``: the outbox stores that same
    queue (``queues.queue_for``), so the two agree. It goes through the default exchange with the
    queue's name as routing key, so delivery needs no exchange bindings in the broker: after a
    Redis flush or restart (bindings gone, kombu still caching them as declared) a republished
    message still lands in its queue.
    """
    held = []

    def publish(task: str, args: list, queue: str, task_id: str,
                request_id: str | None = None) -> None:
        if not held:
            held.append(celery_app.producer_pool.acquire(block=True, timeout=10))
        try:
            # The row's own request id (none too): the relay publishes many requests' messages.
            celery_app.send_task(task, args=args, task_id=task_id, exchange="",
                                 routing_key=queue, retry=True, retry_policy=RETRY_POLICY,
                                 producer=held[0], headers={HEADER: request_id})
        except Exception:
            held.pop().release()  # the next publish takes a fresh producer from the pool
            raise

    try:
        yield publish
    finally:
        if held:
            held.pop().release()


def publish_claimed(celery_app: Celery, messages: list[tuple]) -> int:
    """Publish outbox messages this process has just committed as claimed; returns how many.

    No retries here: a message that fails to go out stays in the outbox, and the relay
    publishes it when its redispatch delay is over.
    """
    sent = 0
    if not messages:
        return sent
    try:
        with celery_app.producer_or_acquire() as producer:
            for task, args, queue, dedup_key, *request_id in messages:
                # Each message's own request id (outbox.enqueue's), when it has one.
                headers = {HEADER: request_id[0]} if request_id and request_id[0] else None
                celery_app.send_task(task, args=args, task_id=dedup_key.replace(":", "-"),
                                     exchange="", routing_key=queue, retry=False,
                                     producer=producer, headers=headers)
                sent += 1
    except Exception as exc:  # broker down: the outbox still holds them
        log.warning("publishing %d claimed message(s) failed (%s: %s); the relay will",
                    len(messages) - sent, type(exc).__name__, exc)
    return sent


def queue_depth(celery_app: Celery, queue: str) -> int | None:
    """Messages waiting in a queue (0 when the broker does not know the queue)."""
    with celery_app.pool.acquire(block=True, timeout=5) as conn:
        try:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # unknown queue (never declared, or the broker lost it): empty
            return 0

