"""Worker process hygiene: a fresh DB pool per forked child, a clean session after every task,
background CPU priority for workers and beat, a stack dump on SIGUSR2, the self-watch, and the
busy markers `neurohub up`'s canary watch reads."""
from __future__ import annotations

import faulthandler
import logging
import os
import signal

from celery.signals import (beat_init, task_postrun, task_prerun, worker_init,
                            worker_process_init, worker_ready)
from flask import Flask

from web.watchdog import mark_busy, mark_idle

log = logging.getLogger(__name__)

_app: Flask | None = None


def bind(app: Flask) -> None:
    """Remember the Flask app whose engine and session the handlers manage."""
    global _app
    _app = app
    from . import metrics
    metrics.connect(app)  # Celery's signals counted (workers/metrics.py), when METRICS_ENABLED


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


def _hard_limit(task) -> float:
    """The hard time limit this run of ``task`` has (the message's, the task's or the app's)."""
    hard = (task.request.timelimit or (None, None))[0]
    return float(hard or task.time_limit or task.app.conf.task_time_limit or 3600)


@task_prerun.connect
def _mark_busy(task=None, **_):
    """Under ``neurohub up``: tell its canary watch this worker runs a task (web/watchdog.py)."""
    folder = os.environ.get("WORKER_BUSY_DIR")
    if folder and task is not None:
        mark_busy(folder, _hard_limit(task))


@task_postrun.connect
def _mark_idle(**_):
    """The task ended: the watch may judge this worker by its canary again."""
    folder = os.environ.get("WORKER_BUSY_DIR")
    if folder:
        mark_idle(folder)


def lower_priority(app: Flask | None) -> None:
    """Renice this process by BACKGROUND_NICE (its children inherit it); the web keeps 0.

    Not on the embedded SQLite: there a worker holds the database's one write lock while it
    decides, and the web's POSTs wait for that lock, so a worker descheduled in favour of the web
    kept the web waiting longer (bench/embedded_load.py at 50/s: POST p99 127-171 ms reniced,
    93-101 ms not, in alternating runs). The web goes first on that lock instead (web/sqlite.py).
    """
    nice = app.config.get("BACKGROUND_NICE", 0) if app is not None else 0
    if nice > 0 and app.config.get("EMBEDDED"):
        log.info("embedded SQLite: background processes keep the web's CPU priority")
        return
    if nice > 0:
        try:
            os.nice(nice)
        except OSError as exc:  # not permitted in some containers: run at the same priority
            log.warning("cannot lower the CPU priority by %d: %s", nice, exc)


@worker_init.connect
def _worker_priority(**_):
    """Before the pool forks, so every child runs at the background priority too."""
    lower_priority(_app)


@worker_init.connect
def _stack_dump_on_usr2(**_):
    """SIGUSR2 writes every thread's stack to stderr, from C: it works even when the main thread
    is stuck where Celery's own SIGUSR1 dump (a Python handler) would never run."""
    faulthandler.register(signal.SIGUSR2, all_threads=True)


@worker_ready.connect
def _self_watch(sender=None, **_):
    """A worker that takes nothing from its queues exits, to be restarted (workers/self_watch.py);
    started once the pool has forked, so no thread of it exists while the pool forks."""
    if _app is not None:
        from . import self_watch
        self_watch.start(_app, sorted(sender.app.amqp.queues.consume_from))


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
