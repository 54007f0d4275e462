"""Attach Celery to the Flask app (the Flask docs' pattern) with tasks that reuse an app context."""
from __future__ import annotations

from celery import Celery, Task
from flask import Flask, has_app_context

from .config import celery_settings


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for this Flask app and store it in ``app.extensions['celery']``."""

    class FlaskTask(Task):
        """Runs the task inside the Flask app context (reusing one that is already pushed)."""

        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    from .sqla_transport import register
    register()  # the embedded broker URL scheme, before any connection is made
    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app.config))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    from . import signals  # noqa: F401  (connects pool/session hygiene handlers)
    signals.bind(app)
    return celery_app
