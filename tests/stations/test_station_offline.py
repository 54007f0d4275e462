"""Offline: server stopped, 5 units completed, the app killed (-9) and restarted, server back →
every completion arrives exactly once, in order, and a rejection that comes back is shown."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from PyQt5.QtCore import Qt

from stations.i18n import reason_text, tr
from stations.queue import CompletionQueue
from tests.stations.conftest import FCT_STEP, PASSWORD, api_status
from tests.support.procs import ROOT, service_env

GOOD = {"voltage": "3.30", "current_ma": "41"}


def _scan(qtbot, window, code):
    with qtbot.waitSignal(window.lot_shown, timeout=10000) as shown:
        qtbot.keyClicks(window.scan_field, code)
        qtbot.keyClick(window.scan_field, Qt.Key_Return)
    return shown.args[0]


def _read_until_done(proc, timeout=90):
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(("DONE", "ERROR")):
            return lines
    raise AssertionError(f"driver did not finish: {lines}\n{proc.stderr.read()[-3000:]}")


def test_offline_completions_survive_kill_and_arrive_once_in_order(stack, factory, make_station,
                                                                   qtbot, tmp_path):
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, {"step": "PACK", "name": "Packing"}])
    station = factory.station(steps=["FCT"], printer_uri=None)
    serials = [f"SN-OFF-{i:04d}" for i in range(1, 6)]
    lot = factory.lot(product, quantity=5, serials=serials)
    lot_b = factory.lot(product, quantity=1)
    data = tmp_path / "station-data"

    # 1. Online once: the operator logs in and both lots are seen (cached for offline work).
    w1 = make_station(station, user, data_dir=data)
    assert _scan(qtbot, w1, lot).lot["lot_no"] == lot
    assert _scan(qtbot, w1, lot_b).lot["lot_no"] == lot_b
    w1.shutdown()

    # 2. The server goes away; a real app process completes 5 units + 1 out-of-spec, is killed.
    stack.server.stop()
    cfg = dict(server=stack.url, station=station, scanner_mode="none", data_dir=str(data),
               request_timeout_s=2.0, label_poll_s=0.5, language="en")
    work = [{"scan": lot, "values": None}] + [{"scan": s, "values": GOOD} for s in serials]
    work += [{"scan": lot_b, "values": {"voltage": "3.9", "current_ma": "41"}}]
    spec = {"cfg": cfg, "user": user, "password": PASSWORD, "work": work}
    proc = subprocess.Popen([sys.executable, "-m", "tests.stations.station_driver",
                             json.dumps(spec)], cwd=ROOT, env=service_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = _read_until_done(proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)   # the crash: no shutdown code runs
        proc.wait(10)
    assert lines[0] == "LOGIN offline", lines
    queued = [ln.split() for ln in lines if ln.startswith("QUEUED")]
    assert len(queued) == 6, lines
    assert lines[-1] == "DONE " + tr("offline.queued", count=6), lines

    # Nothing reached the server, and the killed app's queue has all six, in order.
    q = CompletionQueue(data / "queue.sqlite3")
    entries = q.all()
    q.close()
    assert [(str(e.seq), e.key) for e in entries] == [(s, k) for _, s, k in queued]
    assert [e.state for e in entries] == ["pending"] * 6
    assert [e.body.get("unit_serial") for e in entries[:5]] == serials

    # 3. Restart the app on the same data folder, still offline: it says so and logs in offline.
    w2 = make_station(station, user, data_dir=data)
    qtbot.waitUntil(lambda: w2.net_label.text() == tr("offline.queued", count=6), timeout=10000)
    assert w2.result_label.text() == tr("login.offline_ok")
    shown = []
    w2.result_shown.connect(shown.append)

    # 4. The server comes back: the queue drains in order with the same keys.
    stack.server.start()
    qtbot.waitUntil(lambda: len(shown) == 6, timeout=60000)
    qtbot.waitUntil(lambda: w2.net_label.text() == tr("online"), timeout=10000)
    # Decisions of different lots may come back in any order; each is shown exactly once.
    assert sorted(e.seq for e in shown) == [int(s) for _, s, _ in queued]
    by_seq = {e.seq: e for e in shown}
    assert [by_seq[int(s)].state for _, s, _ in queued] == ["accepted"] * 5 + ["rejected"]
    # The rejection that came back after the drain is on screen, in the operator's language.
    rejected = by_seq[int(queued[-1][1])]
    assert rejected.reasons and rejected.reasons[0]["code"] == "out_of_spec"
    history = [w2.history.item(i).text() for i in range(w2.history.count())]
    line = next(h for h in history if lot_b in h)
    assert tr("complete.rejected", lot=lot_b, step="FCT", unit="") in line
    assert reason_text("out_of_spec", rejected.reasons[0]["detail"]) in line

    headers = factory.headers("supervisor")
    completions = api_status(stack, headers, f"/api/v1/lots/{lot}")["completions"]
    assert len(completions) == 5, "each completion exactly once"
    assert [c["unit_serial"] for c in completions] == serials, "in the order they were made"
    assert [c["id"] for c in completions] == sorted(c["id"] for c in completions)
    assert {c["status"] for c in completions} == {"accepted"}
    assert {c["operator"] for c in completions} == {user}
    lot_after = api_status(stack, headers, f"/api/v1/lots/{lot}")
    assert lot_after["current_step"] == "PACK"
    b = api_status(stack, headers, f"/api/v1/lots/{lot_b}")
    assert [c["status"] for c in b["completions"]] == ["rejected"] and b["status"] == "on_hold"

    # A later drain (or another restart) sends nothing again.
    w2.ctx.sync_worker.wake()
    qtbot.wait(500)
    assert len(api_status(stack, headers, f"/api/v1/lots/{lot}")["completions"]) == 5
