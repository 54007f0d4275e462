"""Request ids across Celery, and Celery's logging left to web/logs.py.

The usual shape (django-guid, asgi-correlation-id): ``before_task_publish`` puts the current
request id in every message's headers, whoever publishes (the web, beat, a worker publishing the
messages its task enqueued); the outbox relay names each message's own id instead, from its row
(``workers.broker.publisher``). ``task_prerun`` makes the id in the headers current for the
task's run, so its log lines and the messages it enqueues carry it; ``task_postrun`` restores
what was current before. Connected by ``workers.celery_app``.
"""
from __future__ import annotations

import logging

from celery.signals import (before_task_publish, celeryd_init, setup_logging, task_postrun,
                            task_prerun)

from web import logs

HEADER = "request_id"  # the message header (a task reads it as task.request.request_id)
_tokens: dict[str, object] = {}  # task id -> the token that restores the id before its run


@before_task_publish.connect
def stamp_request_id(headers=None, **_):
    """Put the current request id in the message's headers unless the publisher named one
    (the relay names its row's, even none)."""
    if headers is not None and HEADER not in headers:
        rid = logs.current_request_id()
        if rid:
            headers[HEADER] = rid


@task_prerun.connect
def bind_task_request_id(task_id=None, task=None, **_):
    """The message's request id is current while its task runs (an eager run keeps the
    caller's when the message has none)."""
    rid = task.request.get(HEADER) if task is not None else None
    _tokens[task_id] = logs.bind_request_id(rid or logs.current_request_id())


@task_postrun.connect
def unbind_task_request_id(task_id=None, **_):
    """Back to the id that was current before the task (none, in a worker's child)."""
    token = _tokens.pop(task_id, None)
    if token is not None:
        try:
            logs.reset_request_id(token)
        except (ValueError, RuntimeError):  # another context's token, or used: just clear
            logs.bind_request_id(None)


@setup_logging.connect
def keep_our_logging(loglevel=None, **_):
    """Celery configures no logging of its own: the root logger already has web.logs' handler
    (create_app ran first), and a connected receiver stops Celery adding its text handlers to
    the root and task loggers. The worker's or beat's ``-l`` still sets the level."""
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@celeryd_init.connect
def no_banner_in_json(instance=None, **_):
    """With JSON logs no startup banner on stdout (as ``celery -q``): a collector reads one JSON
    object a line, and the worker's own 'ready' line says it started. On a terminal (text) the
    banner stays."""
    if instance is not None and logs.current_format() == "json":
        instance.quiet = True
