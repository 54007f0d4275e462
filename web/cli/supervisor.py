"""``neurohub up``: migrate, then run web + workers + beat + relay as supervised child processes.

Children get their own sessions (``web.procs``) so a terminal's Ctrl-C reaches only this
supervisor, which then stops every child (SIGTERM, then SIGKILL after a grace period) and exits.
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import sys
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ..procs import ChildProcess, stop_together
from ..watchdog import BUSY_DIR_ENV

GRACE_SECONDS = 15
RESTART_DELAY = 2.0


class Child(ChildProcess):
    """One supervised process; its output is the supervisor's own."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None,
                 metrics_dir: Path | None = None):
        super().__init__(name, argv, env or {})  # ``env``: added to the installation's
        self.restarts: list[float] = []
        self.metrics_dir = metrics_dir  # its own PROMETHEUS_MULTIPROC_DIR, emptied at each start
        if metrics_dir is not None:
            self.env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def start(self, env: dict) -> Child:
        """Start (or restart) the process in its own session, in ``env`` plus its own."""
        if self.metrics_dir is not None:
            from ..metrics.core import prepare_dir
            prepare_dir(self.metrics_dir)  # a restarted service's counters start again from 0
        super().start({**env, **self.env})
        click.echo(f"  started {self.name} (pid {self.proc.pid})")
        return self


# glibc gives every thread its own malloc arena; two keep a threaded web worker's RSS at what a
# single-threaded one uses (measured: ~127 MB -> ~113 MB per worker under load).
WEB_ENV = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}


def plan(cfg: dict, host: str, port: int, flower: bool, printer_sim: bool) -> list[Child]:
    """The processes of one installation, on whatever backends the config names."""
    py = sys.executable
    data = Path(cfg["NEUROHUB_DATA_DIR"])
    celery = [py, "-m", "celery", "-A", "workers.main"]
    # No mingle or gossip (worker-to-worker sync nothing here uses): with Redis a worker could
    # hang in "mingle: searching for neighbors" and ignore SIGTERM.
    quiet = ["--without-mingle", "--without-gossip"]
    # One metrics folder per service (web/metrics/core.py); their exporters' ports default by
    # role (METRICS_PORT: worker 9201, worker-io 9202, relay 9203, beat 9204).
    metrics = (lambda name: data / "metrics" / name) if cfg["METRICS_ENABLED"] else (
        lambda name: None)
    # Where each worker's pool children mark the task they run: the canary watch does not restart
    # a worker whose canary only waits behind a long task (web/watchdog.py).
    def busy(name: str) -> dict:
        return {BUSY_DIR_ENV: str(data / "run" / "busy" / name)}
    children = [
        Child("web", [py, "-m", "gunicorn", "-c", "python:web.gunicorn_conf",
                      "-w", str(cfg["WEB_WORKERS"]), "-k", "gthread",
                      "--threads", str(cfg["WEB_THREADS"]), "-b", f"{host}:{port}",
                      "--graceful-timeout", "10", "--access-logfile", "-", "web:create_app()"],
              env=WEB_ENV, metrics_dir=metrics("web")),
        Child("worker", celery + ["worker", "-Q", "completions,default", "-n", "fast@%h", *quiet,
                                  "-c", str(cfg["WORKER_CONCURRENCY"]), "-l", "INFO"],
              env=busy("worker"), metrics_dir=metrics("worker")),
        Child("worker-io", celery + ["worker", "-Q", "printing,io", "-n", "io@%h", *quiet,
                                     "-c", "1",
                                     "--prefetch-multiplier", "1", "-l", "INFO"],
              env=busy("worker-io"), metrics_dir=metrics("worker-io")),
        Child("beat", celery + ["beat", "-l", "INFO", "-s", str(data / "celerybeat-schedule")],
              metrics_dir=metrics("beat")),
        Child("relay", [py, "-m", "web.cli", "relay"], metrics_dir=metrics("relay")),
    ]
    if flower:
        children.append(Child("flower", celery + ["flower", "--address=127.0.0.1",
                                                  "--port=5555"]))
    if printer_sim:
        sim_port = cfg["PRINTER_SIM_PORT"]
        # Below the workers' priority: it stands in for a printer, whose rendering runs on the
        # printer's own CPU, not on the one the product serves stations from.
        children.append(Child("printer-sim", [py, "-m", "web.cli", "printer-sim", "--port",
                                              str(sim_port), "--control-port", str(sim_port + 1),
                                              "--dir", str(data / "printed-labels"),
                                              "--nice", "10"]))
    return children


class AlreadyRunning(RuntimeError):
    """Something this installation needs is taken: a port, the data folder, the one beat."""


_up_lock = None  # the open, flock'd file of this `neurohub up` (closed when the process ends)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def check_before_start(cfg: dict, host: str, port: int, flower: bool, printer_sim: bool) -> None:
    """Refuse to start a second installation: ports free, the data folder's lock, no beat yet.

    Runs before anything starts or migrates, so a second ``neurohub up`` exits at once with the
    reason instead of starting a second set of workers and beat against the same database.
    """
    global _up_lock
    ports = [("web", host, port)]
    if printer_sim:
        sim = cfg["PRINTER_SIM_PORT"]
        ports += [("printer-sim", "127.0.0.1", sim), ("printer-sim control", "127.0.0.1", sim + 1)]
    if flower:
        ports.append(("flower", "127.0.0.1", 5555))
    for _name, h, p in ports:
        if _port_in_use(h, p):
            raise AlreadyRunning(f"port {p} is in use (is neurohub up already running?)")
    data = Path(cfg["NEUROHUB_DATA_DIR"])
    data.mkdir(parents=True, exist_ok=True)
    path = data / "neurohub-up.lock"
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise AlreadyRunning(f"neurohub up is already running on the data folder {data} "
                             f"(pid {holder}, lock {path})") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _up_lock = fh
    from ..services.beat_leader import ANOTHER_BEAT, other_beat_running
    if other_beat_running():
        raise AlreadyRunning(ANOTHER_BEAT)


def _stop(children: list[Child]) -> None:
    # Each child's whole session is killed at the end: what it left behind (prefork pools) too.
    stop_together(children, GRACE_SECONDS, overdue=lambda c: click.echo(
        f"  {c.name} did not stop in {GRACE_SECONDS}s; killing it"),
        stopped=lambda c: click.echo(f"  stopped {c.name}"))


@click.command("up")
@click.option("--host", default=None, help="address to serve on (API_HOST)")
@click.option("--port", type=int, default=None, help="port to serve on (API_PORT)")
@click.option("--flower", is_flag=True, help="also start Flower on 127.0.0.1:5555")
@click.option("--printer-sim/--no-printer-sim", default=None,
              help="run the label printer simulator (default: on for the embedded default)")
@with_appcontext
def up_cmd(host, port, flower, printer_sim):
    """Apply migrations and run web, workers, beat and the outbox relay until Ctrl-C."""
    from flask_migrate import upgrade
    cfg = dict(current_app.config)
    host, port = host or cfg["API_HOST"], port or cfg["API_PORT"]
    if printer_sim is None:
        printer_sim = cfg["EMBEDDED"]
    try:
        check_before_start(cfg, host, port, flower, printer_sim)
    except AlreadyRunning as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(f"database: {_redact(cfg['DATABASE_URL'])}")
    click.echo(f"broker:   {_redact(cfg['CELERY_BROKER_URL'])}")
    upgrade()
    click.echo("migrations applied")
    env = dict(os.environ, NEUROHUB_DATA_DIR=cfg["NEUROHUB_DATA_DIR"])
    if float(cfg["WORKER_CANARY_TIMEOUT"]) > 0:
        env["WORKER_SELF_WATCH_SECONDS"] = "0"  # its watch restarts them (web/watchdog.py)
    children = plan(cfg, host, port, flower, printer_sim)
    stopping: list[int] = []

    def _on_signal(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    for c in children:
        c.start(env)
    base = f"http://{host}:{port}"
    click.echo(f"NeuroHub MES is up: {base}/api/docs  (API {base}/api/v1, health {base}/readyz)")
    if flower:
        click.echo("Flower: http://127.0.0.1:5555")
    if printer_sim:
        click.echo(f"Printer simulator: tcp://127.0.0.1:{cfg['PRINTER_SIM_PORT']} (labels in "
                   f"{cfg['NEUROHUB_DATA_DIR']}/printed-labels, control "
                   f"http://127.0.0.1:{cfg['PRINTER_SIM_PORT'] + 1}/status)")
    click.echo("Press Ctrl-C to stop.")
    from ..watchdog import make_watch, restart_stale
    watch = make_watch(children)  # restarts a worker whose queue's canary stops coming through
    while not stopping:
        time.sleep(0.2)
        restart_stale(watch, children, env)
        for c in children:
            if c.proc.poll() is None or stopping:
                continue
            now = time.monotonic()
            c.restarts = [t for t in c.restarts if now - t < 60] + [now]
            if len(c.restarts) > 5:
                click.echo(f"  {c.name} keeps exiting (code {c.proc.returncode}); shutting down")
                stopping.append(-1)
                break
            click.echo(f"  {c.name} exited with {c.proc.returncode}; restarting")
            time.sleep(RESTART_DELAY)
            c.start(env)
    click.echo("stopping...")
    _stop(children)
    click.echo("all stopped")
    if stopping and stopping[0] == -1:
        raise SystemExit(1)


def _redact(url: str) -> str:
    """Hide a password in a connection URL for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url
