"""The metric objects, and the recorders the code calls (each a no-op while metrics are off).

Labels are bounded: methods, routes (Flask's rule, never the path), steps, task and queue names,
reason codes, printer keys; never lot numbers, serials or ids.
"""
from __future__ import annotations

import os
import time
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram

from .core import _state, enabled  # noqa: F401  (enabled: for the callers)

# Request latency: a POST answers in ms; the DHR of a big lot takes a second.
HTTP_BUCKETS = (.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
# Received -> decided, task runtime and queue wait: tens of ms usually, minutes in a backlog.
PIPELINE_BUCKETS = (.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900)

HTTP_REQUESTS = Counter("neurohub_http_requests", "HTTP requests answered by the web",
                        ["method", "route", "status"])
HTTP_SECONDS = Histogram("neurohub_http_request_duration_seconds",
                         "Time from the request's first hook to its answer",
                         ["method", "route"], buckets=HTTP_BUCKETS)
COMPLETIONS_RECEIVED = Counter("neurohub_completions_received",
                               "Completions accepted for processing (202, not replays)", ["step"])
COMPLETIONS_DECIDED = Counter("neurohub_completions_decided",
                              "Completions decided by the worker (reason: the first reason code "
                              "of a rejection, empty when accepted)", ["step", "result", "reason"])
DECISION_SECONDS = Histogram("neurohub_completion_decision_seconds",
                             "Received (the POST) -> decided (the worker's commit)", ["step"],
                             buckets=PIPELINE_BUCKETS)
TASKS = Counter("neurohub_celery_tasks", "Celery task events by name, queue and state",
                ["name", "queue", "state"])
TASK_SECONDS = Histogram("neurohub_celery_task_runtime_seconds", "Task run time", ["name", "queue"],
                         buckets=PIPELINE_BUCKETS)
QUEUE_WAIT = Histogram("neurohub_celery_task_queue_wait_seconds",
                       "Publish -> the task starts in a worker", ["name", "queue"],
                       buckets=PIPELINE_BUCKETS)
WORKER_UP = Gauge("neurohub_celery_worker_up", "1 while a worker consuming the queue runs",
                  ["queue"], multiprocess_mode="max")
LABEL_PRINTS = Counter("neurohub_label_prints", "Label jobs by the outcome of a delivery attempt",
                       ["result"])
PRINTER_STATUS = Gauge("neurohub_printer_status", "1 for the printer's current status, else 0",
                       ["printer", "status"], multiprocess_mode="mostrecent")
DB_POOL = Gauge("neurohub_db_pool_connections", "Database connections of this service's pools",
                ["role", "state"], multiprocess_mode="livesum")
BUILD_INFO = Gauge("neurohub_build_info", "1, labelled with the version and the process role",
                   ["version", "role"], multiprocess_mode="max")

_CHILDREN: dict = {}  # (metric, label values) -> its child


def _child(metric, *values: str):
    """``metric.labels(*values)``, kept: the lookup costs as much as the write it precedes (a
    lock, a key check, a dict), and the hot path writes a handful per completion. A child
    made before a fork writes the forked process's own file (prometheus_client checks the pid)."""
    child = _CHILDREN.get((metric, values))
    if child is None:
        child = _CHILDREN[(metric, values)] = metric.labels(*values)
    return child


PRINTER_STATES = ("ok", "paper_out", "head_open", "offline")
LABEL_RESULTS = ("printed", "busy", "paper_out", "head_open", "offline", "error")
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def build_info(role: str) -> None:
    """neurohub_build_info{version,role} = 1 for this process."""
    try:
        version = metadata.version("neurohub-mes")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    BUILD_INFO.labels(version, role).set(1)


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request (route: the URL rule, or a fixed label when none matched)."""
    method = method if method in HTTP_METHODS else "other"
    _child(HTTP_REQUESTS, method, route, str(status)).inc()
    _child(HTTP_SECONDS, method, route).observe(seconds)


def completion_received(step: str) -> None:
    """A completion stored as received (the POST's 202)."""
    if _state.enabled:
        _child(COMPLETIONS_RECEIVED, step).inc()


def completions_decided(decisions: list[tuple[str, str, str, float]]) -> None:
    """Committed decisions: (step, result, reason, received_at as a unix time) each."""
    if not _state.enabled or not decisions:
        return
    now = time.time()
    for step, result, reason, received in decisions:
        _child(COMPLETIONS_DECIDED, step, result, reason).inc()
        _child(DECISION_SECONDS, step).observe(max(now - received, 0.0))


def task_event(name: str, queue: str, state: str) -> None:
    """A Celery task event: sent, received, started, succeeded, failed, retried ..."""
    _child(TASKS, name, queue, state).inc()


def task_runtime(name: str, queue: str, seconds: float) -> None:
    """How long a task ran."""
    _child(TASK_SECONDS, name, queue).observe(seconds)


def queue_wait(name: str, queue: str, seconds: float) -> None:
    """How long a task waited between its publish and its start."""
    _child(QUEUE_WAIT, name, queue).observe(max(seconds, 0.0))


def worker_up(queues, up: bool) -> None:
    """A worker consuming ``queues`` started (1) or is stopping (0)."""
    for q in queues:
        WORKER_UP.labels(q).set(1 if up else 0)


def printer_key(uri: str) -> str:
    """The printer's label value: host:port of a tcp:// URI, the rest of any other (bounded)."""
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0][:64] or uri[:64]


def printer_state(status: str, reasons: list[str]) -> str:
    """ok | paper_out | head_open | offline from what a delivery learnt of the printer.

    A printer that answered but cannot print for another reason (paused, ribbon out, buffer
    full) counts as offline: it prints nothing until a person looks at it.
    """
    if status == "ready":
        return "ok"
    for reason in ("paper_out", "head_open"):
        if reason in reasons:
            return reason
    return "offline"


def printer_status(uri: str, status: str, reasons: list[str]) -> str:
    """Set the printer's status series (1 for the current one, 0 for the others)."""
    state = printer_state(status, reasons)
    if _state.enabled:
        key = printer_key(uri)
        for s in PRINTER_STATES:
            PRINTER_STATUS.labels(key, s).set(1 if s == state else 0)
    return state


def label_prints(result: str, n: int = 1) -> None:
    """``n`` label jobs had this outcome (printed, busy, paper_out, head_open, offline, error)."""
    if _state.enabled and n:
        LABEL_PRINTS.labels(result if result in LABEL_RESULTS else "error").inc(n)


class PoolWatch:
    """Keeps neurohub_db_pool_connections up to date from the pool's checkout/checkin events.

    Only changed values are written (a write is a file write in multiprocess mode); nothing
    while this process has no role. At a checkin the pool has not counted the connection back
    yet, so the values are corrected by one.
    """

    def __init__(self):
        self.last: dict[tuple[str, str], int] = {}
        self.pid = 0  # a forked child writes a file of its own: it starts with nothing written
        self.engines: list = []

    def attach(self, engine) -> None:
        """Listen to ``engine``'s pool (its listeners survive ``engine.dispose()``)."""
        from sqlalchemy import event
        event.listen(engine, "checkout", lambda *_: self.update(engine.pool, 0))
        event.listen(engine, "checkin", lambda *_: self.update(engine.pool, 1))
        self.engines = [*self.engines[-3:], engine]  # the app's; tests build a few apps

    def refresh(self) -> None:
        """Write the current counts now (a process taking its role holds connections already:
        beat's lock is one, taken before beat starts and kept for its life)."""
        if self.engines:
            self.update(self.engines[-1].pool, 0)

    def update(self, pool, returning: int) -> None:
        """Write the pool's checked-out, idle and overflow counts for this process's role."""
        role = _state.role
        if role is None or not _state.enabled or not hasattr(pool, "checkedout"):
            return
        if self.pid != os.getpid():
            self.pid, self.last = os.getpid(), {}
        values = {"checked_out": max(pool.checkedout() - returning, 0),
                  "idle": pool.checkedin() + returning,
                  "overflow": max(pool.overflow(), 0)}
        for state, value in values.items():
            if self.last.get((role, state)) != value:
                self.last[(role, state)] = value
                _child(DB_POOL, role, state).set(value)


POOL = PoolWatch()
