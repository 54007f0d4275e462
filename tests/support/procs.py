"""Real subprocesses for pipeline tests: Celery workers, the outbox relay, gunicorn, `neurohub up`."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(**overrides) -> dict:
    """Environment for a child process of the product (PYTHONPATH = repo root)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Proc:
    """A child process in its own session, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path, cwd: Path = ROOT):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        """Start the process (again)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def tree(self) -> list[psutil.Process]:
        """The process and all its descendants."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole process group at once (the crash we test against)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL what is left."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def output(self) -> str:
        """What the process logged (for failure messages)."""
        return self.log_path.read_text(errors="replace")[-4000:]


def stop_all(*procs: Proc, timeout: float = 20) -> None:
    """Stop several processes together: SIGTERM to each, then wait (SIGKILL what is left)."""
    running = [p for p in procs if p.proc is not None and p.proc.poll() is None]
    for p in running:
        p.proc.terminate()
    deadline = time.monotonic() + timeout
    for p in running:
        try:
            p.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        p.kill()  # the rest of its process group, if any is left


def celery_worker(env: dict, log_dir: Path, name: str = "worker", queues: str = "completions,default",
                  concurrency: int = 2, loglevel: str = "WARNING") -> Proc:
    """A real Celery worker process on the given queues."""
    return Proc(name, [sys.executable, "-m", "celery", "-A", "workers.main", "worker", "-Q", queues,
                       "-c", str(concurrency), "-n", f"{name}-{os.getpid()}@%h", "-l", loglevel,
                       "--without-gossip", "--without-mingle"], env, log_dir)


def relay(env: dict, log_dir: Path) -> Proc:
    """The outbox relay process."""
    return Proc("relay", [sys.executable, "-m", "web.cli", "relay"], env, log_dir)


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def web_server(env: dict, log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    """gunicorn exactly as deployed (``neurohub up``'s command line) on a free port: (proc, url)."""
    from web.config import load_config
    from web.supervisor import plan
    port = port or free_port()
    cfg = load_config(environ=env)
    web = next(c for c in plan(cfg, "127.0.0.1", port, flower=False, printer_sim=False)
               if c.name == "web")
    return Proc("web", web.argv, {**env, **web.env}, log_dir), f"http://127.0.0.1:{port}"


def embedded_env(home: Path) -> tuple[dict, int, int]:
    """`neurohub up` on the embedded default (nothing configured): its environment, a free web
    port and a free printer-simulator port (whose HTTP control listens on that port + 1)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8"}  # nothing else: no database, broker or secret configured
    port, sim_port = free_port(), free_port()
    while sim_port + 1 == port:
        sim_port = free_port()
    env["PRINTER_SIM_PORT"] = str(sim_port)
    return env, port, sim_port


def ready(base: str) -> bool:
    """True when the web at ``base`` answers /readyz with 200."""
    import requests
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
