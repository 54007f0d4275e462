"""Small broker operations used by the relay and readiness: publish, queue depth, ping."""
from __future__ import annotations

from celery import Celery
from kombu.exceptions import ChannelError


def make_publisher(celery_app: Celery):
    """A publish(task, args, queue, task_id) function that reuses one producer connection."""

    def publish(task: str, args: list, queue: str, task_id: str) -> None:
        celery_app.send_task(task, args=args, queue=queue, task_id=task_id, retry=True,
                             retry_policy={"max_retries": 2, "interval_start": 0.2,
                                           "interval_step": 0.5, "interval_max": 1})

    return publish


def queue_depth(celery_app: Celery, queue: str) -> int | None:
    """Messages waiting in a queue (None when the broker cannot say)."""
    try:
        with celery_app.connection_for_read() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:  # the queue does not exist yet: nothing is waiting in it
        return 0


def ping_broker(celery_app: Celery, timeout: float = 3.0) -> None:
    """Raise unless the broker answers within ``timeout`` seconds."""
    with celery_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        try:
            conn.default_channel.queue_declare(queue="completions", passive=True)
        except ChannelError:
            pass  # reachable; the queue is created by the first worker
