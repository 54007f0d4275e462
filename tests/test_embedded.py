"""The embedded default: `neurohub up` with an empty environment runs the whole product on one PC."""
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import requests

from tests.support.procs import ROOT, Proc, embedded_env, free_port, ready, wait_until


@pytest.mark.slow
def test_neurohub_up_with_empty_environment_serves_processes_and_stops(tmp_path):
    env, port, sim_port = embedded_env(tmp_path)  # the embedded default: SQLite database and broker
    up = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, tmp_path,
              cwd=tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready(base), 90, 0.5, f"readyz\n{up.output()}")
        children = [p.pid for p in up.tree()[1:]]
        assert len(children) >= 5, up.output()  # web, two workers, beat, relay (+ pool children)
        data = tmp_path / "var"
        assert (data / "neurohub.sqlite3").exists() and (data / "broker.sqlite3").exists()
        seed = subprocess.run([sys.executable, "-m", "web.cli", "seed-demo"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert seed.returncode == 0, seed.stderr
        token = requests.post(f"{base}/api/v1/auth/token", json={
            "username": "supervisor", "password": "super-demo-pw"}, timeout=10).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
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
        assert wait_until(decided, 60, 0.2, f"processing\n{up.output()}")["status"] == "accepted"
        lot_now = requests.get(f"{base}/api/v1/lots/{lot['lot_no']}", headers=auth,
                               timeout=10).json()
        assert lot_now["current_step"] == "FLASH"
        # SMT names the lot traveler template: one label reaches the simulator, stored on disk.
        sim = f"http://127.0.0.1:{sim_port + 1}/status"
        wait_until(lambda: requests.get(sim, timeout=5).json()["label_count"] == 1, 60, 0.3,
                   f"the lot label at the simulator\n{up.output()}")
        stored = sorted((data / "printed-labels").glob("*.zpl"))
        assert len(stored) == 1 and lot["lot_no"].encode() in stored[0].read_bytes()
        # Ctrl-C: the supervisor stops every child and exits cleanly.
        os.kill(up.proc.pid, signal.SIGINT)
        assert up.proc.wait(60) == 0, up.output()
        alive = [pid for pid in children if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert alive == [], up.output()
        assert "all stopped" in up.output()
    finally:
        up.stop()


def _neurohub(args, env, cwd, timeout=60):
    return subprocess.run([sys.executable, "-m", "web.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_second_up_or_beat_exits_at_once_and_starts_nothing(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8", "PRINTER_SIM_PORT": str(free_port())}
    port = free_port()
    up = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, tmp_path,
              cwd=tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready(base), 90, 0.5, f"readyz\n{up.output()}")
        started = time.monotonic()
        second = _neurohub(["up", "--port", str(port)], env, tmp_path)
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stderr.strip() == (f"port {port} is in use (is neurohub up already "
                                         "running?)"), second.stderr
        assert "is up" not in second.stdout and "started" not in second.stdout
        # Another web port, the same data folder: the folder's lock refuses it.
        other = _neurohub(["up", "--port", str(free_port()), "--no-printer-sim"], env, tmp_path)
        assert other.returncode == 1, other.stdout + other.stderr
        assert "neurohub up is already running on the data folder" in other.stderr
        assert "started" not in other.stdout
        assert time.monotonic() - started < 30  # at once: nothing was started or waited for
        # A beat started by hand alongside exits before it sends anything: never a second beat.
        beat = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.main", "beat",
                               "-s", str(tmp_path / "hand-beat-schedule")], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert beat.returncode == 1, beat.stdout + beat.stderr
        assert "another celery beat is already running against this database" in beat.stderr
        assert up.proc.poll() is None
        beats = [p for p in up.tree() if "beat" in p.cmdline()]
        assert len(beats) == 1, [p.cmdline() for p in beats]
        assert ready(base)
    finally:
        up.stop()
