"""Worker liveness by canary: `neurohub up` restarts a wedged worker; `worker-check` for
systemd/compose; a stale completions canary makes /readyz not ready."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import psutil
import pytest
import requests

from tests.support.procs import Proc, embedded_env, seed_demo, wait_ready, wait_until
from web.models import PeriodicRun, utcnow


def _canary_at(db, queue: str, seconds_ago: float) -> None:
    when = utcnow() - timedelta(seconds=seconds_ago)
    db.session.merge(PeriodicRun(name=f"workers.canary:{queue}", slot=when, state="done",
                                 started_at=when, finished_at=when, last_success_at=when,
                                 runs=1, skipped=0))
    db.session.commit()


def test_readyz_is_503_while_the_completions_canary_is_stale(app, client, db):
    stale = app.config["CANARY_STALE_SECONDS"] + 60
    _canary_at(db, "default", stale)  # another queue's stale canary: still ready
    _canary_at(db, "completions", 5)
    assert client.get("/readyz").status_code == 200
    _canary_at(db, "completions", stale)
    # From this host, as the container healthcheck and `neurohub up` ask: the detail too.
    r = client.get("/readyz", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    body = r.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["completions_worker"].startswith("stale")
    assert body["detail"]["canary"]["completions"]["status"] == "stale"


def test_worker_check_exits_non_zero_when_a_queue_canary_is_stale(app, db):
    runner = app.test_cli_runner()
    _canary_at(db, "completions", 10)
    _canary_at(db, "default", 10)
    ok = runner.invoke(args=["worker-check", "--queue", "completions", "--queue", "default"])
    assert ok.exit_code == 0, ok.output
    assert "completions: ok" in ok.output
    _canary_at(db, "default", app.config["CANARY_STALE_SECONDS"] + 1)
    bad = runner.invoke(args=["worker-check", "--queue", "completions", "--queue", "default"])
    assert bad.exit_code == 1 and "default: stale" in bad.output
    tight = runner.invoke(args=["worker-check", "--queue", "completions", "--max-age", "5"])
    assert tight.exit_code == 1
    never = runner.invoke(args=["worker-check", "--queue", "printing"])
    assert never.exit_code == 1 and "no canary yet" in never.output


def _syscall(pid: int) -> str:
    """The number of the system call a process is blocked in (0 is read on x86-64 Linux)."""
    with open(f"/proc/{pid}/syscall") as fh:
        return fh.read().split()[0]


CANARY_TIMEOUT = 8


@pytest.mark.slow
def test_a_killed_idle_pool_child_is_recovered_by_neurohub_up(tmp_path):
    env, port, sim_port = embedded_env(tmp_path)  # the embedded default: SQLite database and broker
    # The watch's timeout, shorter than the 20 s default only so the test waits less: what is
    # tested is that nobody has to act, and the 60 s bound below holds for the default too.
    # Likewise the relay's redispatch (30 s by default) of the completion the killed child's
    # worker had taken: it is what brings that completion back once the worker is restarted.
    env.update(WORKER_CANARY_TIMEOUT=str(CANARY_TIMEOUT), OUTBOX_REDISPATCH_SECONDS="10")
    up = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, tmp_path,
              cwd=tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(up, base)
        auth = seed_demo(base, env, tmp_path)

        def complete() -> int:
            lot = requests.post(f"{base}/api/v1/lots", json={"product": "NH-100",
                                                            "quantity": 4},
                                headers=auth, timeout=10).json()
            r = requests.post(f"{base}/api/v1/completions", headers={
                **auth, "Idempotency-Key": uuid.uuid4().hex}, json={
                "lot_no": lot["lot_no"], "step": "SMT", "station": "ST-01"}, timeout=10)
            assert r.status_code == 202, r.text
            return r.json()["id"]

        def accepted(cid):
            return lambda: requests.get(f"{base}/api/v1/completions/{cid}", headers=auth,
                                        timeout=10).json()["status"] == "accepted"
        wait_until(accepted(complete()), 60, 0.2, lambda: f"a first completion\n{up.output()}")
        time.sleep(2)  # every pool child idle, blocked reading the pool's task queue
        worker = next(p for p in psutil.Process(up.proc.pid).children()
                      if "fast@%h" in p.cmdline())
        # The idle child that waits in read() on the pool's task pipe holds the pipe's lock
        # (the others wait for that lock): killing it is what wedged the worker.
        reader = [p for p in worker.children() if _syscall(p.pid) == "0"]
        assert len(reader) == 1, ([(p.pid, _syscall(p.pid)) for p in worker.children()],
                                  up.output())
        os.kill(reader[0].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        cid = complete()
        wait_until(accepted(cid), 60, 0.5, f"completion {cid} after a pool child was killed "
                                           f"\n{up.output()}")
        assert time.monotonic() - killed_at < 60
        assert (f"worker: no canary came through its queue in {CANARY_TIMEOUT}s"
                in up.log_path.read_text())
    finally:
        if up.proc.poll() is None:
            os.kill(up.proc.pid, signal.SIGINT)
            try:
                up.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        up.stop()


def test_a_late_canary_behind_a_running_task_is_no_wedged_worker(tmp_path):
    from web.watchdog import CanaryWatch, mark_busy, mark_idle
    folder = tmp_path / "busy" / "worker-io"
    watch = CanaryWatch(None, {"worker-io": "printing"}, timeout=1.0,
                        busy_dirs={"worker-io": folder})
    probe = watch.probes["worker-io"]
    probe.sent_at, probe.sent_mono = utcnow(), time.monotonic() - 5  # its canary 5 s late
    assert watch.stale() == ["worker-io"]
    mark_busy(folder, 3300)  # a pool child (here: this process) runs a nightly backup
    assert watch.stale() == []  # the canary waits behind it: no restart mid-backup
    mark_idle(folder)
    assert watch.stale() == ["worker-io"]
    # A task past its hard time limit hides nothing: its marker no longer counts.
    (folder / str(os.getpid())).write_text(f"{time.time() - 1:.3f}")
    assert watch.stale() == ["worker-io"]
    # A marker whose process is gone (killed, or ended by its time limit) is dropped.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (folder / str(gone.pid)).write_text(f"{time.time() + 3600:.3f}")
    assert watch.stale() == ["worker-io"] and not (folder / str(gone.pid)).exists()
    # A (re)started worker runs nothing yet: its earlier markers go.
    mark_busy(folder, 60)
    watch.started("worker-io")
    assert list(folder.iterdir()) == [] and watch.stale() == []  # and its probe starts afresh


def test_neurohub_up_gives_each_worker_a_busy_folder_of_its_own(tmp_path):
    from web.cli.supervisor import plan
    from web.config import load_config
    from web.watchdog import BUSY_DIR_ENV
    cfg = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path)})
    children = {c.name: c for c in plan(cfg, "127.0.0.1", 8000, False, False)}
    folders = {name: c.env.get(BUSY_DIR_ENV) for name, c in children.items()}
    assert folders["worker"] == str(tmp_path / "run" / "busy" / "worker")
    assert folders["worker-io"] == str(tmp_path / "run" / "busy" / "worker-io")
    assert {n for n, f in folders.items() if f} == {"worker", "worker-io"}
