"""Real subprocesses for pipeline tests: Celery workers, the outbox relay, gunicorn, `neurohub up`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from web.procs import ChildProcess, stop_together

ROOT = Path(__file__).resolve().parents[2]


def _port_block() -> range:
    """This test process's own block of ports, below the kernel's ephemeral range.

    Port 0 hands out an ephemeral port, and the kernel hands out the same ones to every outgoing
    connection (PostgreSQL, Redis, HTTP clients): under three xdist workers one of them took a
    port between our pick and the server's bind, and `neurohub up` refused to start. Each xdist
    worker gets a block of its own, so two workers never pick the same port either.
    """
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    size = 1000
    start = max(low - size * (worker + 1), 10000 + size * worker)
    return range(start, start + size, 2)


_next_port: list[int] = []


def free_port() -> int:
    """A TCP port nobody listens on right now, and the one after it (a printer simulator's
    control port), from this process's block (see ``_port_block``)."""
    block = _port_block()
    if not _next_port:
        _next_port.append(block.start + 2 * (os.getpid() % len(block)))
    for _ in range(len(block)):
        port = _next_port[0]
        _next_port[0] = port + 2 if port + 2 < block.stop else block.start
        if all(_bindable(p) for p in (port, port + 1)):
            return port
    raise RuntimeError(f"no free port pair in {block}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def service_env(**overrides) -> dict:
    """Environment for a child process of the product (PYTHONPATH = repo root)."""
    # METRICS_PORT=0: no metrics exporter on the fixed one-host ports (tests run side by side);
    # the tests of metrics pass ports of their own.
    # WORKER_SELF_WATCH_SECONDS=0: no canaries of their own in the tests' queues and task
    # counts (tests/workers/test_self_watch.py turns it on).
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               METRICS_PORT="0", WORKER_SELF_WATCH_SECONDS="0")
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Proc(ChildProcess):
    """A child process in its own session, with its output in ``log_dir/NAME.log``."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path, cwd: Path = ROOT):
        super().__init__(name, argv, env, cwd=cwd, log_path=log_dir / f"{name}.log")

    def kill(self) -> None:
        """SIGKILL the whole process group at once (the crash we test against)."""
        self.kill_group()
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL what is left of its group (nothing if it had exited)."""
        if self.running():
            super().stop(timeout)


def stop_all(*procs: Proc, timeout: float = 20) -> None:
    """Stop the running ones together: SIGTERM to each, then wait (SIGKILL what is left)."""
    stop_together([p for p in procs if p.running()], timeout)


def celery_worker(env: dict, log_dir: Path, name: str = "worker", queues: str = "completions,default",
                  concurrency: int = 2, loglevel: str = "WARNING") -> Proc:
    """A real Celery worker process on the given queues."""
    return Proc(name, [sys.executable, "-m", "celery", "-A", "workers.main", "worker", "-Q", queues,
                       "-c", str(concurrency), "-n", f"{name}-{os.getpid()}@%h", "-l", loglevel,
                       "--without-gossip", "--without-mingle"], env, log_dir)


def relay(env: dict, log_dir: Path) -> Proc:
    """The outbox relay process."""
    return Proc("relay", [sys.executable, "-m", "web.cli", "relay"], env, log_dir)


def wait_until(predicate, timeout: float, interval: float = 0.1, message="condition"):
    """Poll until predicate() is truthy; fail with ``message`` after ``timeout`` seconds (a
    callable message is called then, so it can show a process's output at the time of failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {text}")
        time.sleep(interval)


def web_server(env: dict, log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    """gunicorn exactly as deployed (``neurohub up``'s command line) on a free port: (proc, url)."""
    from web.config import load_config
    from web.cli.supervisor import plan
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
    port, sim_port = free_port(), free_port()  # pairs: the simulator's port + 1 is free too
    env["PRINTER_SIM_PORT"] = str(sim_port)
    return env, port, sim_port


def seed_demo(base: str, env: dict, home: Path) -> dict:
    """`neurohub seed-demo` against a running `neurohub up`; the demo supervisor's auth header."""
    import requests
    seed = subprocess.run([sys.executable, "-m", "web.cli", "seed-demo"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=120)
    assert seed.returncode == 0, seed.stderr
    token = requests.post(f"{base}/api/v1/auth/token", json={
        "username": "supervisor", "password": "super-demo-pw"}, timeout=10).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def wait_ready(proc: Proc, base: str, timeout: float = 120) -> None:
    """Wait until ``base`` answers /readyz with 200; fail at once if ``proc`` exited, and with
    readyz's last answer and the process's output if the time runs out."""
    import requests
    last: list[str] = ["no answer yet"]

    def answered() -> bool:
        if proc.proc.poll() is not None:
            raise AssertionError(f"{proc.name} exited ({proc.proc.returncode}):\n{proc.output()}")
        try:
            r = requests.get(f"{base}/readyz", timeout=2)
        except requests.RequestException as exc:
            last[0] = repr(exc)
            return False
        last[0] = f"{r.status_code} {r.text}"
        return r.status_code == 200
    wait_until(answered, timeout, 0.5, lambda: f"readyz (last: {last[0]})\n{proc.output()}")


def ready(base: str) -> bool:
    """True when the web at ``base`` answers /readyz with 200."""
    import requests
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
