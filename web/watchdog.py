"""Worker liveness by canary: ``neurohub up`` restarts a worker whose queue stops flowing, and
``neurohub worker-check`` lets systemd or a compose healthcheck do the same.

A worker can be alive and still decide nothing: a pool child killed while it held the pool's
queue lock leaves the other children and the main process waiting forever (billiard's pool on
the embedded broker). Only a task that makes the round trip through the queue proves it works,
so the watch sends a canary (``workers.canary``, which records its arrival) through one queue
of each worker and restarts the worker when it has not arrived in time.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

log = logging.getLogger(__name__)
PROBE_INTERVAL = 5.0  # seconds between canaries through one worker's queue
STOP_GRACE = 5.0
STARTUP_GRACE = 10.0  # seconds after a worker's start before its first canary
BUSY_DIR_ENV = "WORKER_BUSY_DIR"  # where a worker's pool children say they run a task
BUSY_MARGIN = 5.0  # seconds past a task's hard time limit before its marker no longer counts


# -- busy markers: a canary that waits behind a long task is not a wedged worker ----------------

def mark_busy(folder: str | Path, hard_limit: float) -> None:
    """A pool child starts a task: ``<folder>/<pid>`` holds when its hard time limit ends it."""
    marker, deadline = Path(folder) / str(os.getpid()), time.time() + hard_limit + BUSY_MARGIN
    try:
        marker.write_text(f"{deadline:.3f}")
    except FileNotFoundError:  # the worker's first task: no mkdir on every task after it
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{deadline:.3f}")


def mark_idle(folder: str | Path) -> None:
    """The pool child's task ended (done, failed or retried)."""
    (Path(folder) / str(os.getpid())).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
        return True
    except (ProcessLookupError, PermissionError):  # gone, or the number is someone else's now
        return False


def busy(folder: str | Path | None) -> bool:
    """True while one of the worker's pool children runs a task within its hard time limit.

    A marker whose process is gone (killed, time limit hit) is removed; one past its deadline
    no longer counts, so a task stuck beyond its limit does not hide a wedged worker.
    """
    if folder is None or not Path(folder).is_dir():
        return False
    now, found = time.time(), False
    for marker in Path(folder).iterdir():
        try:
            pid, deadline = int(marker.name), float(marker.read_text())
        except (ValueError, OSError):
            continue
        if not _alive(pid):
            marker.unlink(missing_ok=True)
        elif deadline > now:
            found = True
    return found


def clear_busy(folder: str | Path | None) -> None:
    """A (re)started worker has no task running: drop its previous incarnation's markers."""
    if folder is not None and Path(folder).is_dir():
        for marker in Path(folder).iterdir():
            marker.unlink(missing_ok=True)


@dataclass
class _Probe:
    """The canary in flight through one worker's queue."""

    queue: str
    sent_at: datetime | None = None  # database time of the send (None: none in flight)
    sent_mono: float = 0.0
    next_at: float = 0.0  # monotonic time of the next send
    generation: int = 0  # bumped on every (re)start of the worker


class CanaryWatch:
    """Sends canaries through each watched worker's queue; says which worker is stale.

    The sending and reading run in a thread of their own, and the verdict is taken from the
    time alone: on the embedded default a wedged worker can hold the SQLite files' locks, and
    then the watch's own send or read blocks too, which must not keep the worker from being
    restarted. A send or read that fails (database or broker down) is no verdict: that outage
    is not the worker's fault.
    """

    def __init__(self, celery_app, queues: dict[str, str], timeout: float,
                 interval: float = PROBE_INTERVAL, busy_dirs: dict[str, Path] | None = None):
        self.celery_app, self.timeout, self.interval = celery_app, timeout, interval
        self.probes = {name: _Probe(queue) for name, queue in queues.items()}
        self.busy_dirs = busy_dirs or {}  # worker -> its pool children's busy markers
        self.pids: dict[str, int] = {}  # the worker process each probe is judging
        self.next_poll = 0.0
        self._lock = threading.Lock()

    def started(self, name: str) -> None:
        """The worker was (re)started: judge it only on canaries sent from now on."""
        with self._lock:
            probe = self.probes.get(name)
            clear_busy(self.busy_dirs.get(name))
            if probe is not None:
                # A (re)started worker gets time to connect before its first canary is sent.
                probe.sent_at = None
                probe.next_at = time.monotonic() + max(self.interval, STARTUP_GRACE)
                probe.generation += 1

    def stale(self) -> list[str]:
        """The workers whose canary has been in flight longer than the timeout while none of
        their pool children ran a task (a canary behind a long backup is only waiting)."""
        now = time.monotonic()
        with self._lock:
            late = [name for name, p in self.probes.items()
                    if p.sent_at is not None and now - p.sent_mono > self.timeout]
        return [name for name in late if not busy(self.busy_dirs.get(name))]

    def run(self, app) -> None:
        """The thread's loop: send due canaries and notice the ones that arrived."""
        with app.app_context():
            while True:
                for probe in self.probes.values():
                    self._tick(probe)
                time.sleep(1.0)

    def start(self, app) -> None:
        """Run the watch in a daemon thread (it dies with ``neurohub up``)."""
        threading.Thread(target=self.run, args=(app,), name="canary-watch", daemon=True).start()

    def _tick(self, probe: _Probe) -> None:
        from .models import utcnow
        with self._lock:
            sent, generation = probe.sent_at, probe.generation
            due = sent is None and time.monotonic() >= probe.next_at
            if due:
                probe.sent_at, probe.sent_mono = utcnow(), time.monotonic()
                probe.next_at = probe.sent_mono + self.interval
                sent = probe.sent_at
        try:
            if due:
                # Its own slot (the send time), so the canary body never skips it as run.
                self.celery_app.send_task(
                    "workers.canary", args=[probe.queue, sent.isoformat()], exchange="",
                    routing_key=probe.queue, expires=2 * self.timeout)
                return
            if sent is None:
                return
            arrived = _last_success(probe.queue)
        except Exception as exc:  # database or broker down: no verdict on the worker
            log.warning("canary watch (%s): %s: %s", probe.queue, type(exc).__name__, exc)
            arrived, sent = None, None
        with self._lock:
            if probe.generation == generation and (
                    sent is None or (arrived is not None and arrived >= sent)):
                probe.sent_at = None  # arrived (this or any later canary), or no verdict


def _last_success(queue: str) -> datetime | None:
    """When a canary last came through ``queue``, read without taking any lock."""
    from sqlalchemy import select

    from .extensions import db
    from .models import PeriodicRun
    from .services.periodic import canary_name
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.scalar(select(PeriodicRun.last_success_at).where(
            PeriodicRun.name == canary_name(queue)))


def worker_queues(children) -> dict[str, str]:
    """Child name -> the queue its canary goes through, for every Celery worker child."""
    out = {}
    for c in children:
        if "worker" in c.argv and "-Q" in c.argv:
            out[c.name] = c.argv[c.argv.index("-Q") + 1].split(",")[0]
    return out


def make_watch(children) -> CanaryWatch | None:
    """The watch of ``neurohub up``'s workers (None when WORKER_CANARY_TIMEOUT is 0)."""
    timeout = float(current_app.config["WORKER_CANARY_TIMEOUT"])
    if timeout <= 0:
        return None
    busy_dirs = {c.name: Path(c.env[BUSY_DIR_ENV]) for c in children if BUSY_DIR_ENV in c.env}
    watch = CanaryWatch(current_app.extensions["celery"], worker_queues(children), timeout,
                        busy_dirs=busy_dirs)
    watch.start(current_app._get_current_object())
    return watch


def restart_stale(watch: CanaryWatch | None, children, env: dict) -> None:
    """Restart every worker child whose canary is overdue; called from ``neurohub up``'s loop."""
    if watch is None or time.monotonic() < watch.next_poll:
        return
    watch.next_poll = time.monotonic() + 1.0
    for c in children:  # restarted by the supervisor since the last poll: a fresh start
        if c.name in watch.probes and c.proc is not None and watch.pids.get(c.name) != c.proc.pid:
            watch.pids[c.name] = c.proc.pid
            watch.started(c.name)
    stale = set(watch.stale())
    # One at a time: a wedged worker can hold up the others' canaries too (on the embedded
    # default they share the SQLite files), so after a restart every worker is judged afresh.
    for c in children:
        if c.name not in stale or c.proc is None or c.proc.poll() is not None:
            continue
        click.echo(f"  {c.name}: no canary came through its queue in {watch.timeout:.0f}s; "
                   f"restarting it")
        c.stop(STOP_GRACE)  # then SIGKILL of its session: a wedged pool ignores SIGTERM
        c.start(env)
        for name in watch.probes:
            watch.started(name)
        break


@click.command("worker-check")
@click.option("--queue", "queues", multiple=True, required=True,
              help="a queue the worker consumes (repeatable)")
@click.option("--max-age", type=float, default=None,
              help="seconds a canary may be old (default CANARY_STALE_SECONDS)")
@with_appcontext
def worker_check_cmd(queues, max_age):
    """Exit 1 unless a canary came through every given queue recently (for healthchecks)."""
    from .services.periodic import canary_status
    max_age = max_age if max_age is not None else current_app.config["CANARY_STALE_SECONDS"]
    failed = False
    for queue in queues:
        status = canary_status(queue, max_age)
        age = status.get("age_seconds")
        click.echo(f"{queue}: {status['status']}" + (f" ({age:.0f}s ago)" if age is not None
                                                     else " (no canary yet)"))
        failed |= status["status"] != "ok"
    raise SystemExit(1 if failed else 0)
