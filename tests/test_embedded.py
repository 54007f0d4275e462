"""The embedded default: `neurohub up` with an empty environment runs the whole product on one PC."""
import os
import signal
import subprocess
import sys
import uuid

import psutil
import pytest
import requests

from tests.support.procs import ROOT, Proc, free_port, wait_until


def _ready(base):
    try:
        return requests.get(f"{base}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_neurohub_up_with_empty_environment_serves_processes_and_stops(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8"}  # nothing else: no database, broker or secret configured
    port, sim_port = free_port(), free_port()
    while sim_port + 1 == port:
        sim_port = free_port()
    env["PRINTER_SIM_PORT"] = str(sim_port)  # the control endpoint listens on sim_port + 1
    up = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, tmp_path,
              cwd=tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base), 90, 0.5, f"readyz\n{up.output()}")
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
