"""Station app benchmark: scan → lot shown, Complete → accepted shown, RSS over 1,000 completions.

Runs the real MainWindow (offscreen) against a real server, over HTTP only (a benchmark: it
lives in bench/, so it never ships to operator PCs with the ``stations`` package)::

    # against a running server (e.g. `neurohub up`; an admin account also works as operator)
    python bench/bench_station.py --server http://127.0.0.1:8000 \
        --user admin --password admin-demo-pw
    # or let it start `neurohub up` itself in a temp folder (embedded SQLite unless
    # DATABASE_URL / REDIS_URL are set in the environment, then PostgreSQL + Redis)
    python bench/bench_station.py --spawn

Options: ``--completions N`` (default 1000), ``--scans N`` (default 50), ``--screenshot PNG``
(the Korean main screen with the lot loaded), ``--json`` (one JSON line of results).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the station app and the process wrapper, from this checkout
from web.procs import ChildProcess  # noqa: E402

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(workdir: str) -> tuple[ChildProcess, str, str, str]:
    """Run `neurohub db upgrade`, make an admin, start `neurohub up`: (proc, url, user, pw)."""
    port = _free_port()
    env = dict(os.environ, NEUROHUB_DATA_DIR=workdir, API_PORT=str(port),
               PRINTER_SIM_PORT=str(_free_port()), LOG_LEVEL="WARNING",
               LOGIN_RATE_LIMIT="1000 per minute", LOGIN_IP_RATE_LIMIT="1000 per minute")
    cli = [shutil.which("neurohub") or sys.executable, *([] if shutil.which("neurohub")
                                                         else ["-m", "web.cli"])]
    subprocess.run(cli + ["db", "upgrade"], env=env, check=True, capture_output=True)
    user, password = f"bench-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    subprocess.run(cli + ["create-user", user, "--role", "admin", "--password", password],
                   env=env, check=True, capture_output=True)
    proc = ChildProcess("up", cli + ["up"], env, log_path=Path(workdir) / "up.log").start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url, user, password
        except requests.RequestException:
            time.sleep(0.3)
    proc.stop(30, group=True)
    raise SystemExit(f"neurohub up did not answer on {url}; see {workdir}/up.log")


def prepare(url: str, user: str, password: str, units: int) -> tuple[str, str, list[str]]:
    """Create a product (FCT with 2 measurements), a station and a lot of ``units`` serials."""
    s = requests.Session()
    token = s.post(url + "/api/v1/auth/token", json={"username": user, "password": password},
                   timeout=10).json()["access_token"]
    s.headers["Authorization"] = f"Bearer {token}"
    tag = uuid.uuid4().hex[:6].upper()
    product, station = f"BENCH-{tag}", f"BST-{tag}"
    routing = [{"step": "FCT", "name": "Functional test", "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50}]},
        {"step": "PACK", "name": "Packing"}]
    for path, body in (("/api/v1/products", {"code": product, "name": "뉴로허브 벤치 센서",
                                              "routing": routing}),
                       ("/api/v1/stations", {"code": station, "name": "Bench FCT",
                                              "steps": ["FCT"]})):
        resp = s.post(url + path, json=body, timeout=10)
        resp.raise_for_status()
    serials = [f"SN-{tag}-{i:05d}" for i in range(units)]
    lot = s.post(url + "/api/v1/lots", json={"product": product, "quantity": units,
                                             "serials": serials}, timeout=60)
    lot.raise_for_status()
    return station, lot.json()["lot_no"], serials


def _wait(signal, timeout_ms: int = 30000, accept=lambda *a: True):
    """Run the Qt event loop until ``signal`` fires with arguments ``accept`` likes."""
    from stations.qt import QtCore
    loop, got = QtCore.QEventLoop(), []

    def fire(*args):
        """Stop waiting when the signal carries what we wait for."""
        if accept(*args):
            got.append(args)
            loop.quit()
    signal.connect(fire)
    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(timeout_ms)
    loop.exec_()
    signal.disconnect(fire)
    if not got:
        raise TimeoutError(f"no {signal} within {timeout_ms} ms")
    return got[0]


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "median": round(statistics.median(ordered), 1),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "max": round(ordered[-1], 1)}


def run(url: str, user: str, password: str, completions: int, scans: int,
        screenshot: str | None) -> dict:
    """Drive the real window; returns the measured figures."""
    from stations.config import StationConfig
    from stations.i18n import set_language
    from stations.qt import QApplication
    from stations.scanner import parse_barcode
    from stations.station import StationContext
    from stations.ui import MainWindow, setup_fonts

    station, lot, serials = prepare(url, user, password, max(completions, 1))
    app = QApplication.instance() or QApplication([])
    setup_fonts(app)
    set_language("ko")
    data = tempfile.mkdtemp(prefix="bench-station-")
    ctx = StationContext(StationConfig(server=url, station=station, scanner_mode="none",
                                       data_dir=data, language="ko"))
    window = MainWindow(ctx)
    window.resize(1280, 800)
    window.show()
    window.show_login()
    window.login(user, password)
    _wait(window.logged_in)

    def scan(code: str, unit: str | None = None) -> float:
        """Scan ``code`` and wait until the window shows it (with ``unit``); ms."""
        started = time.perf_counter()
        window.handle_barcode(parse_barcode(code))
        _wait(window.lot_shown, accept=lambda r: r.unit == unit)
        return (time.perf_counter() - started) * 1000

    try:
        scan(lot)  # warm-up: the routing gets cached like on a real shift
        scan_ms = [scan(lot) for _ in range(scans)]
        complete_ms, unit_scan_ms, rss = [], [], [(0, round(rss_mb(), 1))]
        states: dict[str, int] = {}
        for i, serial in enumerate(serials[:completions], start=1):
            unit_scan_ms.append(scan(serial, unit=serial))
            if screenshot and i == min(4, completions):  # a few results on screen by now
                window.form.fields["voltage"].setText("3.31")
                window.form.fields["current_ma"].setText("55")  # shows an out-of-limits value
                app.processEvents()
                window.grab().save(screenshot)
            window.form.fields["voltage"].setText("3.30")
            window.form.fields["current_ma"].setText("40")
            started = time.perf_counter()
            entry = window.complete()
            done = _wait(window.result_shown, 60000, lambda e: e.seq == entry.seq)[0]
            complete_ms.append((time.perf_counter() - started) * 1000)
            states[done.state] = states.get(done.state, 0) + 1
            if i % 100 == 0:
                app.processEvents()
                rss.append((i, round(rss_mb(), 1)))
        scan_after_ms = [scan(lot) for _ in range(min(scans, 20))]
    finally:  # also on a timeout: stop the worker threads before Qt objects go away
        window.shutdown()
        window.close()
        shutil.rmtree(data, ignore_errors=True)
    return {"server": url, "scan_to_lot_ms": _stats(scan_ms),
            "unit_scan_to_shown_ms": _stats(unit_scan_ms) if unit_scan_ms else None,
            "scan_to_lot_after_ms": _stats(scan_after_ms),
            "complete_to_accepted_ms": _stats(complete_ms) if complete_ms else None,
            "decisions": states, "rss_mb_by_completions": rss}


def main(argv: list[str] | None = None) -> int:
    """Parse options, start or use a server, run, print the figures."""
    p = argparse.ArgumentParser(prog="python bench/bench_station.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="admin-demo-pw")
    p.add_argument("--spawn", action="store_true", help="start `neurohub up` in a temp folder")
    p.add_argument("--completions", type=int, default=1000)
    p.add_argument("--scans", type=int, default=50)
    p.add_argument("--screenshot")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    # SIGTERM (e.g. `timeout`) must still run the finally below, or `neurohub up` is orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    proc = workdir = None
    if args.spawn:
        workdir = tempfile.mkdtemp(prefix="bench-server-")
        proc, url, user, password = spawn_server(workdir)
    elif args.server:
        url, user, password = args.server.rstrip("/"), args.user, args.password
    else:
        p.error("give --server URL or --spawn")
    try:
        result = run(url, user, password, args.completions, args.scans, args.screenshot)
    finally:
        if proc is not None:
            proc.stop(30, group=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
