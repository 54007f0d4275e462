"""Shared by the layout tests (offscreen) and their Xvfb run: realistic long texts, the
scenes that show them, and the check that no label or button is cut off.

Usage on a real X server: DISPLAY=:N QT_QPA_PLATFORM=xcb python -m tests.stations.layout_check
LANG DATA_DIR — prints one JSON line: {"size": [w, h], "platform", "problems": {scene: [...]}}.
"""
from __future__ import annotations

import json
import sys
import time

from PyQt5.QtCore import QRect, Qt
from PyQt5.QtGui import QFontMetrics, QRegion
from PyQt5.QtWidgets import QAbstractButton, QLabel, QStyle

from stations.firmware import Assignment
from stations.i18n import tr
from stations.queue import Entry
from stations.station import Lookup
from stations.sync import SyncState

SIZE = (1024, 768)
PRODUCT = {"code": "NH-100-EXTENDED", "revision": 1,
           "name": "NeuroHub multichannel neural signal acquisition sensor module, rev. B"}
LOT = {"lot_no": "LOT-20260101-0001", "product": "NH-100-EXTENDED", "quantity": 1000,
       "qty_good": 998, "step_passed": 300, "status": "in_process", "serials": ["SN-2026-000123"]}
STEPS = ["SMT", "AOI", "FCT", "CAL", "LABEL", "PACK"]   # this station serves many steps
MEASURED = {"step": "CAL", "name": "Calibration", "measurements": [
    {"name": "supply_voltage_at_full_load", "unit": "V", "min": 3.2, "max": 3.4},
    {"name": "standby_current", "unit": "mA", "min": 30, "max": 50},
    {"name": "channel_noise_rms", "unit": "uV", "min": None, "max": 4.5}]}
FLASH = {"step": "FLASH", "name": "Flash firmware", "requires_firmware": True,
         "measurements": [{"name": "boot_time", "unit": "ms", "min": 0, "max": 900}]}
REJECTED = Entry(7, "k", "operator-kim-seo-yeon", {
    "lot_no": LOT["lot_no"], "step": "FLASH", "unit_serial": "SN-2026-000123"}, "rejected", 55,
    [{"code": "firmware_not_verified",
      "detail": "version 2.3.1-rc4 of NH-100-EXTENDED was never verified on ST-05"},
     {"code": "out_of_spec", "detail": "boot_time 1250 > 900"}], 1, None, 0.0)
SERVER_DOWN = ("HTTPConnectionPool(host='mes.plant.local', port=8000): Max retries exceeded "
               "with url: /api/v1/lots/LOT-20260101-0001 (Caused by NewConnectionError: "
               "Failed to establish a new connection: [Errno 111] Connection refused)")


def clipped(root) -> list[str]:
    """Every visible label or button of ``root`` whose text does not fully show."""
    problems = []
    for w in root.findChildren((QLabel, QAbstractButton)):
        text = w.text()
        if not text or not w.isVisibleTo(root):
            continue
        name = f"{type(w).__name__} {w.objectName() or '?'} {text[:50]!r}"
        fm, rect = QFontMetrics(w.font()), w.contentsRect()
        if isinstance(w, QLabel) and w.wordWrap():
            width = rect.width() - 2 * w.margin()
            need = fm.boundingRect(QRect(0, 0, width, 1 << 20),
                                   int(Qt.TextWordWrap) | int(w.alignment()), text)
            if need.width() > width or w.heightForWidth(w.width()) > w.height():
                problems.append(f"{name}: needs {need.width()}x{w.heightForWidth(w.width())}"
                                f", has {width}x{w.height()}")
        else:
            pad = 0
            if isinstance(w, QAbstractButton):
                pad = 2 * w.style().pixelMetric(QStyle.PM_ButtonMargin, None, w)
            need = max(fm.horizontalAdvance(line) for line in text.split("\n")) + pad
            if need > rect.width():
                problems.append(f"{name}: needs width {need}, has {rect.width()}")
            if fm.height() * len(text.split("\n")) > rect.height():
                problems.append(f"{name}: needs height {fm.height()}, has {rect.height()}")
        # Parents (a scroll area's viewport, the window) must not cut the widget either.
        if w.visibleRegion() != QRegion(w.rect()):
            problems.append(f"{name}: partly hidden ({w.visibleRegion().boundingRect()} "
                            f"of {w.rect()})")
    return problems


def status_bar_at_its_longest(w) -> None:
    """The longest realistic status bar: a queue waiting for another operator, printer faults."""
    w.show_sync_state(SyncState(online=False, pending=128, waiting_for="operator-kim-seo-yeon"))
    w.user_label.setText(tr("status.user", user="supervisor-park-ji-hoon"))
    w.printer_label.setText(tr("status.printer", state=", ".join(
        tr(f"printer.{c}") for c in ("paper_out", "ribbon_out", "head_open"))))
    w.scanner_label.setText(tr("scanner.disconnected"))


def measurement_scene(w) -> None:
    """A measured step this station does not serve, offline copy, three values typed."""
    w.ctx.station_record = dict(w.ctx.station_record, steps=["SMT", "AOI", "FCT", "LABEL",
                                                              "PACK", "FLASH"])
    w.show_lookup(Lookup(dict(LOT, current_step="CAL"), PRODUCT, MEASURED, "SN-2026-000123",
                         cached_at=time.time()))
    for name, value in zip(w.form.fields, ("3.9", "abc", "4.1")):
        w.form.fields[name].setText(value)
    status_bar_at_its_longest(w)


def flash_scene(w) -> None:
    """The FLASH step: firmware panel with a failed download, a two-reason rejection."""
    w.ctx.station_record = dict(w.ctx.station_record, steps=STEPS + ["FLASH"])
    w.show_lookup(Lookup(dict(LOT, current_step="FLASH"), PRODUCT, FLASH, "SN-2026-000123"))
    a = Assignment(3, 9, "NH-100-EXTENDED", "2.3.1-rc4", "ab" * 32, 1 << 20, "pending", "/x")
    w.firmware_panel._done([(a, None, ["corrupt"], "sha256 mismatch: the file was cut short")])
    w.show_decision(REJECTED)
    status_bar_at_its_longest(w)


SCENES = {"measurement": measurement_scene, "flash": flash_scene}


def main() -> int:
    """Show each scene maximised on the X screen and report what is cut off."""
    language, data = sys.argv[1], sys.argv[2]
    from PyQt5.QtCore import QEventLoop, QTimer
    from PyQt5.QtWidgets import QApplication

    from stations.config import StationConfig
    from stations.i18n import set_language
    from stations.station import StationContext
    from stations.ui import MainWindow, setup_fonts
    app = QApplication(sys.argv[:1])
    setup_fonts(app)
    set_language(language)
    ctx = StationContext(StationConfig(server="http://127.0.0.1:9", station="ST-05",
                                       scanner_mode="none", data_dir=data))
    ctx.station_record = {"code": "ST-05", "steps": STEPS, "printer_uri": None}
    window = MainWindow(ctx)
    window.ctx.sync_worker.stop()   # its reports would replace the status shown below
    screen = app.primaryScreen().geometry()
    window.setGeometry(screen)      # no window manager under Xvfb to maximise it
    window.show()

    def settle(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec_()
    result = {"platform": app.platformName(), "screen": [screen.width(), screen.height()],
              "problems": {}}
    for name, scene in SCENES.items():
        scene(window)
        settle(400)
        result["problems"][name] = clipped(window)
    result["size"] = [window.width(), window.height()]
    window.shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
