"""Render the Korean main screen on a real X server (Xvfb) and grab the screen's pixels.

Usage: DISPLAY=:N QT_QPA_PLATFORM=xcb python -m tests.stations.xvfb_shot OUT.png DATA_DIR
Prints one JSON line: {"family", "hangul", "platform", "size"}.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    """Show a window with a lot loaded, grab the X screen, report the font used."""
    out, data = sys.argv[1], sys.argv[2]
    from PyQt5.QtCore import QTimer
    from PyQt5.QtGui import QFontInfo
    from PyQt5.QtWidgets import QApplication

    from stations.config import StationConfig
    from stations.i18n import set_language
    from stations.station import Lookup, StationContext
    from stations.ui import MainWindow, setup_fonts, supports_hangul

    spec = {"step": "FCT", "name": "기능 검사", "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50}]}
    app = QApplication(sys.argv[:1])
    setup_fonts(app)
    set_language("ko")
    ctx = StationContext(StationConfig(server="http://127.0.0.1:9", station="ST-05",
                                       data_dir=data, scanner_mode="none"))
    ctx.station_record = {"code": "ST-05", "steps": ["FCT"], "printer_uri": None}
    window = MainWindow(ctx)
    window.resize(1280, 800)
    window.show()
    lot = {"lot_no": "LOT-20260101-0001", "product": "NH-100", "quantity": 10, "qty_good": 10,
           "step_passed": 3, "status": "in_process", "current_step": "FCT", "serials": []}
    window.show_lookup(Lookup(lot, {"code": "NH-100", "name": "뉴로허브 센서"}, spec))
    window.form.fields["voltage"].setText("3.31")
    window.form.fields["current_ma"].setText("55")
    result = {}

    def grab():
        screen = app.primaryScreen()
        shot = screen.grabWindow(0)   # the X server's framebuffer, not a widget render
        shot.save(out)
        font = window.complete_button.font()
        result.update(family=QFontInfo(font).family(), hangul=supports_hangul(font),
                      platform=app.platformName(), size=[shot.width(), shot.height()])
        app.quit()
    QTimer.singleShot(1500, grab)
    app.exec_()
    window.shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
