"""The routing table: the worker queues and which task goes to which, as plain data.

The one definition the workers' Celery settings, beat's canaries, the outbox and the readiness
probe all read. Celery's router sends a task to its route's queue (an unrouted one to the default
queue) whatever queue its sender names, so the outbox stores ``queue_for(task)``: its rows and
queue depths name the queue the message really lands on. No app code is imported here.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from functools import cache

DEFAULT_QUEUE = "default"  # Celery's task_default_queue: where an unrouted task goes
QUEUES = ("completions", "printing", "io", DEFAULT_QUEUE)

# Task name prefix -> queue: printing and slow I/O never starve completions.
ROUTES = {
    "completions.*": {"queue": "completions"},
    "labels.*": {"queue": "printing"},
    "backups.*": {"queue": "io"},
    "firmware.*": {"queue": "io"},
    "storage.*": {"queue": "io"},
}


@cache
def queue_for(task: str) -> str:
    """The queue Celery's router sends ``task`` to: its route's, else the default queue."""
    for pattern, route in ROUTES.items():
        if fnmatchcase(task, pattern):
            return route["queue"]
    return DEFAULT_QUEUE

# The queues `neurohub up`, systemd and compose give the I/O worker (labels, backups, firmware).
IO_QUEUES = frozenset(("printing", "io"))


def worker_role(queues) -> str:
    """worker-io for a worker of the printing/io queues only, else worker (logs and metrics)."""
    queues = set(queues)
    return "worker-io" if queues and queues <= IO_QUEUES else "worker"
