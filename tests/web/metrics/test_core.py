"""web/metrics/core.py and instruments.py: roles and ports, the multiprocess folders `neurohub up`
gives its children, the exporter, the printer mapping and the database pool gauge."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.support.procs import free_port
from web.cli.supervisor import Child, plan
from web.config import load_config
from web import logs
from web.metrics import core, instruments

from .helpers import samples


def test_exporter_ports_default_by_role_and_metrics_port_wins():
    assert [core.exporter_port(r, {}) for r in ("worker", "worker-io", "relay", "beat")] == \
        [9201, 9202, 9203, 9204]
    assert core.exporter_port("worker", {"METRICS_PORT": 9200}) == 9200
    assert core.exporter_port("relay", {"METRICS_PORT": 0}) == 0
    with pytest.raises(ValueError):
        core.start_process("flower")


def test_the_exporter_serves_this_process_and_survives_a_taken_port(caplog):
    port = free_port()
    assert core.serve("relay", {"METRICS_PORT": port}) == port
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "process_cpu_seconds_total" in body  # the client's defaults come with it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert core.serve("beat", {"METRICS_PORT": busy}) is None
    assert f"cannot listen on 127.0.0.1:{busy}" in caplog.text
    assert core.serve("beat", {"METRICS_PORT": 0}) is None


def test_neurohub_up_gives_each_service_its_own_metrics_folder(tmp_path):
    cfg = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path)})
    dirs = {c.name: c.env.get("PROMETHEUS_MULTIPROC_DIR")
            for c in plan(cfg, "127.0.0.1", 8000, flower=True, printer_sim=True)}
    data = tmp_path.resolve()
    assert dirs == {"web": str(data / "metrics/web"), "worker": str(data / "metrics/worker"),
                    "worker-io": str(data / "metrics/worker-io"),
                    "beat": str(data / "metrics/beat"), "relay": str(data / "metrics/relay"),
                    "flower": None, "printer-sim": None}
    off = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path), "METRICS_ENABLED": "false"})
    assert not [c for c in plan(off, "127.0.0.1", 8000, False, False)
                if "PROMETHEUS_MULTIPROC_DIR" in c.env]


def test_a_restarted_child_starts_with_an_empty_metrics_folder(tmp_path):
    folder = tmp_path / "metrics" / "worker"
    folder.mkdir(parents=True)
    (folder / "counter_4242.db").write_bytes(b"an earlier run's counts")
    child = Child("worker", ["true"], metrics_dir=folder)
    child.start({"PATH": "/usr/bin:/bin"})
    child.proc.wait(10)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_celery_worker_without_a_folder_gets_a_temporary_one(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert core.worker_multiproc_dir(["/venv/bin/celery", "-A", "workers.main", "beat"]) is None
    assert core.worker_multiproc_dir(["pytest", "worker"]) is None
    made = core.worker_multiproc_dir(["/venv/bin/celery", "-A", "workers.main", "worker"])
    try:
        assert made and Path(made).is_dir()
        assert core.multiproc_dir() == made  # the pool's children inherit it
    finally:
        core.remove_dir(made)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # set by the code, not by monkeypatch
    given = tmp_path / "given"
    given.mkdir()
    (given / "gauge_livesum_1.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert core.worker_multiproc_dir(["/x/celery/__main__.py", "worker"]) is None
    assert list(given.iterdir()) == []  # emptied: a new start counts from 0


@pytest.mark.parametrize("status, reasons, state", [
    ("ready", [], "ok"), ("not_ready", ["paper_out"], "paper_out"),
    ("not_ready", ["head_open", "paper_out"], "paper_out"), ("not_ready", ["head_open"], "head_open"),
    ("not_ready", ["paused"], "offline"), ("offline", ["PrinterOffline"], "offline")])
def test_printer_states(status, reasons, state):
    assert instruments.printer_state(status, reasons) == state


def test_printer_status_sets_one_state_and_keys_by_host_and_port():
    assert instruments.printer_key("tcp://10.1.2.3:9100") == "10.1.2.3:9100"
    assert instruments.printer_key("station://ST-07") == "ST-07"
    instruments.printer_status("tcp://10.9.9.9:9100", "not_ready", ["paper_out"])
    got = {s: REGISTRY.get_sample_value("neurohub_printer_status",
                                        {"printer": "10.9.9.9:9100", "status": s})
           for s in instruments.PRINTER_STATES}
    assert got == {"ok": 0, "paper_out": 1, "head_open": 0, "offline": 0}


def test_the_pool_gauge_follows_checkouts_once_the_process_has_a_role(app, db):
    role, log_role = core.role(), logs.role()
    core.start_process("web")
    try:
        assert logs.role() == "web"  # the log lines name the role the metrics carry
        def checked_out():
            return REGISTRY.get_sample_value("neurohub_db_pool_connections",
                                             {"role": "web", "state": "checked_out"})
        db.session.remove()
        with db.engine.connect() as one, db.engine.connect() as two:
            one.execute(text("SELECT 1"))
            two.execute(text("SELECT 1"))
            busy = checked_out()
        assert busy >= 2 and checked_out() == busy - 2
        assert REGISTRY.get_sample_value("neurohub_db_pool_connections",
                                         {"role": "web", "state": "idle"}) >= 2
        found = samples(app.test_client().get("/metrics").get_data(as_text=True))
        info = {dict(labels)["role"]: v for (name, labels), v in found.items()
                if name == "neurohub_build_info"}
        assert info["web"] == 1
    finally:
        core._state.role = role
        logs.set_role(log_role)
