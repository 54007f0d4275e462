"""Celery's signals, counted: what celery-exporter reads from events, from our own processes.

- Whichever process publishes (relay, beat, web, a worker publishing labels after its commit)
  counts ``sent`` and stamps the message with its publish time (header ``nh_published_at``), so
  the worker that starts the task observes how long it waited in the queue.
- A worker's main process counts ``received``, ``rejected`` and ``revoked``; its pool children
  ``started``, ``succeeded``, ``failed``, ``retried`` and the run time (the children write through
  PROMETHEUS_MULTIPROC_DIR; the main process's exporter serves them all).
- ``worker_init`` gives the worker its role (worker or worker-io, by the queues it consumes);
  ``worker_ready`` starts its exporter (after the pool forked); ``worker_ready`` and
  ``worker_shutdown`` set ``neurohub_celery_worker_up``.
- ``beat_init`` does the same for beat.

Nothing is connected while METRICS_ENABLED is false.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime

from celery import signals
from flask import Flask

from queues import worker_role
from web.metrics import core, instruments

log = logging.getLogger(__name__)

PUBLISHED_HEADER = "nh_published_at"
_app: Flask | None = None
_started: dict[str, float] = {}  # task id -> perf_counter at task_prerun (per pool child)
_consumed: list[str] = []  # this worker's queues
_serving: list = []  # the exporter's port once started (once per process)


def _queue_of(delivery_info) -> str:
    """The queue a message came from: the routing key (messages go through the default
    exchange with the queue's name as routing key)."""
    info = delivery_info or {}
    return str(info.get("routing_key") or info.get("queue") or "")[:64]


def _name(value) -> str:
    return str(value or "unknown")[:128]


def _stamp(headers=None, **_):
    """before_task_publish: the publish time, for the queue-wait histogram."""
    if headers is not None:
        headers[PUBLISHED_HEADER] = time.time()


def _sent(sender=None, headers=None, routing_key=None, **_):
    instruments.task_event(_name(sender), str(routing_key or "")[:64], "sent")


def _received(request=None, **_):
    instruments.task_event(_name(request.name), _queue_of(request.delivery_info), "received")


def _timestamp(value) -> float | None:
    """A message's ``eta`` (ISO 8601 text, or a datetime) as a Unix time; None if it has none."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value.timestamp() if isinstance(value, datetime) else None


def _prerun(task_id=None, task=None, **_):
    """Started: counted, its queue wait observed, its start noted for the run time."""
    req = task.request
    queue = _queue_of(req.delivery_info)
    instruments.task_event(_name(task.name), queue, "started")
    published = getattr(req, PUBLISHED_HEADER, None)
    if isinstance(published, (int, float)):
        # A message with an ETA (a retry's countdown) waits on purpose until then: only the
        # time after it was due is queueing.
        due = max(published, _timestamp(getattr(req, "eta", None)) or 0.0)
        instruments.queue_wait(_name(task.name), queue, time.time() - due)
    _started[task_id] = time.perf_counter()


def _postrun(task_id=None, task=None, **_):
    start = _started.pop(task_id, None)
    if start is not None:
        instruments.task_runtime(_name(task.name), _queue_of(task.request.delivery_info),
                                 time.perf_counter() - start)


def _outcome(state: str):
    def handler(sender=None, **_):
        instruments.task_event(_name(getattr(sender, "name", None)),
                               _queue_of(getattr(sender.request, "delivery_info", None)), state)
    handler.__name__ = f"_{state}"
    return handler


_succeeded, _failed = _outcome("succeeded"), _outcome("failed")


def _retried(request=None, sender=None, **_):
    instruments.task_event(_name(getattr(sender, "name", None)),
                           _queue_of(getattr(request, "delivery_info", None)), "retried")


def _rejected(message=None, **_):
    headers = getattr(message, "headers", None) or {}
    instruments.task_event(_name(headers.get("task")),
                           _queue_of(getattr(message, "delivery_info", None)), "rejected")


def _revoked(request=None, **_):
    instruments.task_event(_name(getattr(request, "name", None)),
                           _queue_of(getattr(request, "delivery_info", None)), "revoked")


def _worker_init(sender=None, **_):
    """Before the pool forks: this (the main) process's role."""
    _consumed[:] = sorted(sender.app.amqp.queues.consume_from)
    role = worker_role(_consumed)
    core.start_process(role)
    if not core.multiproc_dir():
        log.warning("%s: PROMETHEUS_MULTIPROC_DIR is not set: the pool's task metrics are not "
                    "served", role)


def _worker_ready(**_):
    """The pool has forked and the consumer is connected: the exporter starts now, so no
    thread of it exists while the pool forks (a lock one held at the fork would stay held in
    the child for ever)."""
    instruments.worker_up(_consumed, True)
    if not _serving:
        _serving.append(core.serve(worker_role(_consumed),
                                   _app.config if _app is not None else {}))


def _worker_shutdown(**_):
    instruments.worker_up(_consumed, False)


def _child_shutdown(pid=None, **_):
    """A pool child ends: its live gauges (database pool use) no longer count."""
    core.mark_dead(pid or os.getpid())


def _beat_init(**_):
    core.start_process("beat")
    core.serve("beat", _app.config if _app is not None else {})


HANDLERS = (
    (signals.before_task_publish, _stamp), (signals.after_task_publish, _sent),
    (signals.task_received, _received), (signals.task_prerun, _prerun),
    (signals.task_postrun, _postrun), (signals.task_success, _succeeded),
    (signals.task_failure, _failed), (signals.task_retry, _retried),
    (signals.task_rejected, _rejected), (signals.task_revoked, _revoked),
    (signals.worker_init, _worker_init), (signals.worker_ready, _worker_ready),
    (signals.worker_shutdown, _worker_shutdown),
    (signals.worker_process_shutdown, _child_shutdown), (signals.beat_init, _beat_init),
)


def connect(app: Flask) -> None:
    """Connect the handlers when METRICS_ENABLED (once per process; a later app only rebinds)."""
    global _app
    _app = app
    if not core.configure(app.config):
        for signal, handler in HANDLERS:
            signal.disconnect(handler)
        return
    for signal, handler in HANDLERS:
        signal.connect(handler, weak=False)
