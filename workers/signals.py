"""Worker process hygiene: a fresh DB pool per forked child, a clean session after every task,
and background CPU priority for workers and beat."""
from __future__ import annotations

import logging
import os

from celery.signals import beat_init, task_postrun, worker_init, worker_process_init
from flask import Flask

log = logging.getLogger(__name__)

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


def lower_priority(app: Flask | None) -> None:
    """Renice this process by BACKGROUND_NICE (its children inherit it); the web keeps 0."""
    nice = app.config.get("BACKGROUND_NICE", 0) if app is not None else 0
    if nice > 0:
        try:
            os.nice(nice)
        except OSError as exc:  # not permitted in some containers: run at the same priority
            log.warning("cannot lower the CPU priority by %d: %s", nice, exc)


@worker_init.connect
def _worker_priority(**_):
    """Before the pool forks, so every child runs at the background priority too."""
    lower_priority(_app)


@beat_init.connect
def _beat_priority(**_):
    lower_priority(_app)


@beat_init.connect
def _one_beat(**_):
    """There is never a second beat on one database: this one exits before it sends anything."""
    if _app is None:
        return
    from web.services.beat_leader import ANOTHER_BEAT, become_leader
    with _app.app_context():
        if not become_leader():
            log.error(ANOTHER_BEAT)
            raise SystemExit(1)  # not an Exception: celery's signal dispatch lets it through
