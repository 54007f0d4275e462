"""Whether metrics are on, this process's role, the multiprocess folder and the exporters.

A process takes a role when it starts serving (``start_process``): the web in gunicorn's
``post_worker_init``, a Celery worker in ``worker_init`` (worker or worker-io, by its queues),
beat in ``beat_init``, the relay in ``neurohub relay``. Processes without a role (the CLI's
one-off commands) count nothing into the database pool gauge.

Prometheus' multiprocess mode: ``prometheus_client`` decides at import whether values live in
memory or in files under ``PROMETHEUS_MULTIPROC_DIR``; in files, every process of one service
(gunicorn's workers, a Celery pool's children) writes its own, and the one process that serves
the metrics reads them all. Each service needs a folder of its own, emptied when it starts: two
services sharing one would each serve the other's series too.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

ROLES = ("web", "worker", "worker-io", "relay", "beat")
# One host (`neurohub up`, systemd): one port each. In compose every container uses 9200.
DEFAULT_PORTS = {"worker": 9201, "worker-io": 9202, "relay": 9203, "beat": 9204}
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _State:
    """Process-wide: metrics are process-wide by nature (one registry, one folder)."""

    enabled = True
    role: str | None = None


_state = _State()


def enabled() -> bool:
    """True unless METRICS_ENABLED=false turned metrics off in this process."""
    return _state.enabled


def role() -> str | None:
    """This process's role (web, worker, worker-io, relay, beat), or None before it has one."""
    return _state.role


def configure(cfg) -> bool:
    """Take METRICS_ENABLED from the app's configuration; returns it. A multiprocess folder
    that does not exist yet is made (a process writes into it at its first count)."""
    _state.enabled = bool(cfg.get("METRICS_ENABLED", True))
    if _state.enabled and multiproc_dir():
        prepare_dir(multiproc_dir(), clean=False)
    return _state.enabled


def start_process(role: str) -> None:
    """This process now serves as ``role``: its build_info series; its pool gauge counts; its
    log lines say so (until now they carried the role its command line suggested)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    from .. import logs  # one notion of a process's role, for its metrics and its logs
    logs.set_role(role)
    _state.role = role
    if _state.enabled:
        from . import instruments
        instruments.build_info(role)
        instruments.POOL.refresh()


def multiproc_dir() -> str | None:
    """The folder this process's metrics live in (None: in memory, single-process mode)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def prepare_dir(path: str | Path, clean: bool = True) -> Path:
    """Make the service's metrics folder, emptied of an earlier run's files when ``clean``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        for f in path.glob("*.db"):
            f.unlink(missing_ok=True)
    return path


def ensure_multiproc_dir(prefix: str) -> str | None:
    """Before ``prometheus_client`` is imported by the service's first process: the folder from
    PROMETHEUS_MULTIPROC_DIR made and emptied, or, when unset, a new temporary one set in the
    environment (the children inherit it). Returns the temporary folder it made, else None."""
    given = multiproc_dir()
    if given:
        prepare_dir(given)
        return None
    made = tempfile.mkdtemp(prefix=f"neurohub-metrics-{prefix}-")
    os.environ[MULTIPROC_ENV] = made
    return made


def worker_multiproc_dir(argv: list[str]) -> str | None:
    """For ``celery … worker`` (its main process, before the app is built): the pool's metrics
    folder ready, a temporary one when PROMETHEUS_MULTIPROC_DIR is unset (removed at exit)."""
    program = Path(argv[0]) if argv else Path()
    if not (program.name == "celery" or program.parts[-2:] == ("celery", "__main__.py")) or \
            "worker" not in argv[1:]:
        return None
    if os.environ.get("METRICS_ENABLED", "true").strip().lower() in ("0", "false", "no", "off"):
        return None
    made = ensure_multiproc_dir("worker")
    if made:
        owner = os.getpid()  # the forked pool children must not remove it when they exit
        atexit.register(lambda: os.getpid() == owner and remove_dir(made))
    return made


def remove_dir(path: str | None) -> None:
    """Remove a temporary metrics folder (``ensure_multiproc_dir``'s) when the service ends."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int) -> None:
    """A process of the service ended: its live gauges (pool use) stop counting."""
    if multiproc_dir():
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)


def exposition_registry():
    """What a scrape reads: every process's files in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry
    if not multiproc_dir():
        return REGISTRY
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exporter_port(role: str, cfg) -> int:
    """METRICS_PORT, or the role's default port on one host (0: no exporter)."""
    port = cfg.get("METRICS_PORT")
    return DEFAULT_PORTS.get(role, 0) if port is None else int(port)


def serve(role: str, cfg) -> int | None:
    """Start this process's HTTP exporter (a daemon thread); the port, or None when off.

    A port in use is logged, not fatal: the process does its work whether or not it is watched.
    """
    port = exporter_port(role, cfg)
    if not _state.enabled or port <= 0:
        return None
    from prometheus_client import ProcessCollector, start_http_server
    registry = exposition_registry()
    if multiproc_dir():
        ProcessCollector(registry=registry)  # the serving process's own CPU and memory
    host = cfg.get("METRICS_HOST") or "127.0.0.1"
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("%s: metrics exporter cannot listen on %s:%d (%s); this process's metrics "
                    "are not served", role, host, port, exc)
        return None
    log.info("%s: metrics on http://%s:%d/metrics", role, host, port)
    return port
