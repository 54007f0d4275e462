"""The embedded default: `neurohub up` with an empty environment runs the whole product on one PC.

One `neurohub up` serves the module (starting it takes seconds): a second `up` and a hand-started
beat are refused while it runs, then it serves a completion end to end and stops on Ctrl-C.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.procs import (Proc, embedded_env, free_port, ready, seed_demo, wait_ready,
                                 wait_until)

# Both tests on one xdist worker, in this order (ONE_WORKER_MODULES in tests/conftest.py).
pytestmark = pytest.mark.slow


@dataclass
class Up:
    """The module's running `neurohub up`."""

    proc: Proc
    env: dict
    home: Path
    port: int
    sim_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    home = tmp_path_factory.mktemp("embedded")
    env, port, sim_port = embedded_env(home)  # the embedded default: SQLite database and broker
    proc = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, home,
                cwd=home).start()
    running = Up(proc, env, home, port, sim_port)
    try:
        wait_ready(proc, running.base)
        yield running
    finally:
        proc.stop()


def _neurohub(args, env, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "web.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_a_second_up_or_beat_exits_at_once_and_starts_nothing(up):
    started = time.monotonic()
    second = _neurohub(["up", "--port", str(up.port)], up.env, up.home)
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stderr.strip() == (f"port {up.port} is in use (is neurohub up already "
                                     "running?)"), second.stderr
    assert "is up" not in second.stdout and "started" not in second.stdout
    # Another web port, the same data folder: the folder's lock refuses it.
    other = _neurohub(["up", "--port", str(free_port()), "--no-printer-sim"], up.env, up.home)
    assert other.returncode == 1, other.stdout + other.stderr
    assert "neurohub up is already running on the data folder" in other.stderr
    assert "started" not in other.stdout
    assert time.monotonic() - started < 30  # at once: nothing was started or waited for
    # A beat started by hand alongside exits before it sends anything: never a second beat.
    beat = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.main", "beat",
                           "-s", str(up.home / "hand-beat-schedule")], env=up.env,
                          cwd=up.home, capture_output=True, text=True, timeout=60)
    assert beat.returncode == 1, beat.stdout + beat.stderr
    assert "another celery beat is already running against this database" in beat.stderr
    assert up.proc.proc.poll() is None
    beats = [p for p in up.proc.tree() if "beat" in p.cmdline()]
    assert len(beats) == 1, [p.cmdline() for p in beats]
    assert ready(up.base)


def test_neurohub_up_with_empty_environment_serves_processes_and_stops(up):
    """Runs last: it stops the module's `up`."""
    env, home, sim_port, base, proc = up.env, up.home, up.sim_port, up.base, up.proc
    children = [p.pid for p in proc.tree()[1:]]
    assert len(children) >= 5, proc.output()  # web, two workers, beat, relay (+ pool children)
    # The printer simulator stands in for a printer's own CPU: it yields to the product.
    tops = {("printer-sim" if "printer-sim" in p.cmdline() else
             "web" if "gunicorn" in " ".join(p.cmdline()) else p.name()): p.nice()
            for p in psutil.Process(proc.proc.pid).children()}
    assert tops["printer-sim"] >= 10 and tops["web"] == 0, tops
    # On SQLite the workers hold the write lock the web waits for: no lower priority for them
    # (BACKGROUND_NICE applies on PostgreSQL, tests/pipeline/test_pipeline.py).
    workers = [p for p in proc.tree()[1:] if "celery" in " ".join(p.cmdline())]
    assert workers and {p.nice() for p in workers} == {0}, [(p.cmdline(), p.nice())
                                                          for p in workers]
    data = home / "var"
    assert (data / "neurohub.sqlite3").exists() and (data / "broker.sqlite3").exists()
    auth = seed_demo(base, env, home)
    lot = requests.post(f"{base}/api/v1/lots", json={"product": "NH-100", "quantity": 4},
                        headers=auth, timeout=10).json()
    r = requests.post(f"{base}/api/v1/completions", headers={
        **auth, "Idempotency-Key": uuid.uuid4().hex}, json={
        "lot_no": lot["lot_no"], "step": "SMT", "station": "ST-01"}, timeout=10)
    assert r.status_code == 202, r.text
    cid = r.json()["id"]

    def decided():
        body = requests.get(f"{base}/api/v1/completions/{cid}", headers=auth,
                            timeout=10).json()
        return body if body["status"] != "received" else None
    done = wait_until(decided, 60, 0.2, lambda: f"processing\n{proc.output()}")
    assert done["status"] == "accepted"
    lot_now = requests.get(f"{base}/api/v1/lots/{lot['lot_no']}", headers=auth,
                           timeout=10).json()
    assert lot_now["current_step"] == "FLASH"
    # SMT names the lot traveler template: one label reaches the simulator, stored on disk.
    sim = f"http://127.0.0.1:{sim_port + 1}/status"
    wait_until(lambda: requests.get(sim, timeout=5).json()["label_count"] == 1, 60, 0.3,
               f"the lot label at the simulator\n{proc.output()}")
    stored = sorted((data / "printed-labels").glob("*.zpl"))
    assert len(stored) == 1 and lot["lot_no"].encode() in stored[0].read_bytes()
    # Metrics on the embedded default: the web's own, and SQLite's and the embedded broker's
    # state read at scrape time; each service writes in its own folder of the data folder.
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert 'neurohub_completions_received_total{step="SMT"} 1.0' in metrics
    assert 'neurohub_celery_queue_length{queue="completions"}' in metrics
    assert "neurohub_outbox_oldest_age_seconds" in metrics
    assert {p.name for p in (data / "metrics").iterdir()} == {
        "web", "worker", "worker-io", "beat", "relay"}
    # Ctrl-C: the supervisor stops every child and exits cleanly.
    os.kill(proc.proc.pid, signal.SIGINT)
    assert proc.proc.wait(60) == 0, proc.output()
    alive = [pid for pid in children if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], proc.output()
    assert "all stopped" in proc.output()
