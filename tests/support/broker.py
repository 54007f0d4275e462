"""A Celery app like the product's whose every message lands on one queue of its own.

Other tests' workers may consume the product's queues on the same Redis database; a test that
looks at what was published uses this app instead (made the current one, so ``shared_task``s and
``celery.current_app`` publish through it) and reads its queue.
"""
from __future__ import annotations

import json
from contextlib import contextmanager

import redis
from celery import Celery
from celery._state import get_current_app

from queues import QUEUES
from workers.celery_app import PublishingTask
from workers.config import celery_settings


@contextmanager
def private_queue(app, redis_url: str, queue: str):
    """Yield (celery app, queue reader) for this block; the queue is emptied around it."""
    # The product's publishing base: its tasks publish through this app, as the product's do.
    celery_app = Celery("private-queue", set_as_current=False, task_cls=PublishingTask)
    celery_app.config_from_object(dict(celery_settings(app.config), task_routes={},
                                       task_default_queue=queue))
    r = redis.Redis.from_url(redis_url)
    r.delete(queue)
    before = get_current_app()
    celery_app.set_current()
    try:
        yield celery_app, lambda: [json.loads(m)["headers"] for m in r.lrange(queue, 0, -1)]
    finally:
        before.set_current()
        r.delete(queue)
        celery_app.close()


def empty_product_queues(redis_url: str) -> int:
    """Drop what earlier tests left on the session's broker: every product queue's messages
    (its Redis list, and the lists of its priority steps) and the transport's unacked set (a
    killed worker's messages, redelivered later); the number of keys deleted. (Celery's
    ``control.purge()`` empties only the queues the app declares: ``default``.)"""
    r = redis.Redis.from_url(redis_url)
    keys = [k for q in QUEUES for k in r.scan_iter(match=f"{q}*", count=1000)
            if k == q.encode() or k.startswith(q.encode() + b"\x06\x16")]
    return r.delete(*keys, "unacked", "unacked_index")
