"""Worker process hygiene: a fresh DB pool per forked child, a clean session after every task."""
from __future__ import annotations

from celery.signals import task_postrun, worker_process_init
from flask import Flask

_app: Flask | None = None


def bind(app: Flask) -> None:
    """Remember the Flask app whose engine and session the handlers manage."""
    global _app
    _app = app


@worker_process_init.connect
def _fresh_pool(**_):
    """Forked children must not share the parent's DB sockets."""
    if _app is None:
        return
    from web.extensions import db
    with _app.app_context():
        db.engine.dispose(close=False)


@task_postrun.connect
def _clean_session(**_):
    """No state leaks from one task into the next."""
    if _app is None:
        return
    from web.extensions import db
    with _app.app_context():
        db.session.remove()
