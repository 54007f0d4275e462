"""Attach Celery to the Flask app (the Flask docs' pattern) with tasks that reuse an app context."""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from celery import Celery, Task
from flask import Flask, has_app_context

from . import broker
from .config import celery_settings


class PublishingTask(Task):
    """A task base that reaches the broker through the task's own Celery app (bodies never do)."""

    def publish_claimed(self, messages: list[tuple]) -> int:
        """Publish the outbox messages this task has just committed as claimed; how many went."""
        return broker.publish_claimed(self.app, messages)

    @contextmanager
    def relaying(self):
        """(publish, queue_depth) for an outbox relay pass; one producer serves the block."""
        with broker.publisher(self.app) as publish:
            yield publish, partial(broker.queue_depth, self.app)


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for this Flask app and store it in ``app.extensions['celery']``."""

    class FlaskTask(PublishingTask):
        """Runs the task inside the Flask app context (reusing one that is already pushed)."""

        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    from . import redis_transport, sqla_transport
    sqla_transport.register()  # the embedded broker URL scheme, before any connection is made
    redis_transport.register()  # redis:// with the reconnect fix (workers/redis_transport.py)
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    from . import signals  # noqa: F401  (connects pool/session hygiene handlers)
    from . import request_ids  # noqa: F401  (request ids in task headers; logging left to web.logs)
    signals.bind(app)
    return celery_app
