"""A real station app process for the kill -9 test: log in, scan, complete, then wait to be killed.

Usage: python -m tests.stations.station_driver CONFIG_JSON
CONFIG_JSON: {"cfg": {...StationConfig...}, "user", "password",
              "work": [{"scan": "LOT or serial", "values": {...} | null}, ...]}
Prints ``QUEUED <seq> <key>`` after each completion is committed, then ``DONE``, then runs
the event loop until it is killed.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _wait(app, signal, timeout_ms=15000):
    """Run the event loop until ``signal`` fires; returns its arguments."""
    from PyQt5.QtCore import QEventLoop, QTimer
    loop, got = QEventLoop(), []

    def fire(*args):
        got.append(args)
        loop.quit()
    signal.connect(fire)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec_()
    signal.disconnect(fire)
    if not got:
        raise SystemExit(f"timed out waiting for {signal}")
    return got[0]


def _wait_until(app, predicate, timeout_s=15.0):
    """Process events until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {predicate}")
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    """Drive the app as an operator would, reporting each committed completion."""
    spec = json.loads(sys.argv[1])
    from PyQt5.QtWidgets import QApplication

    from stations.config import StationConfig
    from stations.i18n import set_language
    from stations.scanner import parse_barcode
    from stations.station import StationContext
    from stations.ui import MainWindow, setup_fonts
    app = QApplication([])
    setup_fonts(app)
    set_language(spec["cfg"].get("language", "ko"))
    window = MainWindow(StationContext(StationConfig(**spec["cfg"])))
    window.show()
    window.show_login()
    window.login(spec["user"], spec["password"])
    info = _wait(app, window.logged_in)[0]
    print("LOGIN", "offline" if info.get("offline") else "online", flush=True)
    for step in spec["work"]:
        window.handle_barcode(parse_barcode(step["scan"]))
        result = _wait(app, window.lot_shown)[0]
        if result.error:
            print("ERROR", result.error, flush=True)
            return 2
        if step.get("values") is None:
            continue
        for name, text in step["values"].items():
            window.form.fields[name].setText(text)
        entry = window.complete()
        if entry is None:  # out of limits: it warned; confirm once the button is usable again
            _wait_until(app, window.complete_button.isEnabled)
            entry = window.complete()
        print("QUEUED", entry.seq, entry.key, flush=True)
    print("DONE", window.net_label.text(), flush=True)
    return app.exec_()


if __name__ == "__main__":
    raise SystemExit(main())
