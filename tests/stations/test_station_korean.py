"""Korean UI renders with a font that has Hangul: offscreen grab and a real Xvfb screen grab."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QFontDatabase, QFontInfo, QImage, QRawFont

from stations.i18n import CATALOG, set_language
from stations.ui import supports_hangul
from tests.stations.conftest import FCT_STEP
from tests.support.procs import ROOT, service_env

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _distinct_colours(path, step=7) -> int:
    image = QImage(str(path))
    assert not image.isNull(), path
    return len({image.pixel(x, y) for x in range(0, image.width(), step)
                for y in range(0, image.height(), step)})


def test_korean_main_screen_renders_with_hangul_font(stack, factory, make_station, qtbot,
                                                     tmp_path):
    set_language("ko")
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, {"step": "PACK", "name": "포장"}])
    station = factory.station(steps=["FCT"], printer_uri=None)
    lot = factory.lot(product, quantity=4)
    w = make_station(station, user)
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    qtbot.keyClicks(w.form.fields["voltage"], "3.31")
    qtbot.keyClicks(w.form.fields["current_ma"], "55")
    assert w.complete_button.text() == "완공"
    assert w.lot_panel.titles["lot.step"].text() == "현재 공정"
    assert w.form.verdicts["current_ma"].text() == "규격 벗어남"
    path = tmp_path / "main-ko.png"
    assert w.grab().save(str(path))
    assert path.stat().st_size > 10_000 and _distinct_colours(path) > 20

    korean_families = QFontDatabase().families(QFontDatabase.Korean)
    for widget in (w.complete_button, w.lot_panel.titles["lot.step"], w.result_label,
                   w.net_label, w.form.verdicts["current_ma"], w.scan_field):
        font = widget.font()
        assert QFontInfo(font).family() in korean_families, QFontInfo(font).family()
        assert supports_hangul(font)
        # Every Hangul syllable of every Korean string has a real glyph (no boxes anywhere).
        raw = QRawFont.fromFont(font)
        text = "".join(CATALOG["ko"].values())
        missing = {c for c in set(HANGUL.findall(text)) if not raw.glyphIndexesForString(c)[0]}
        assert not missing, missing


def test_korean_screen_on_xvfb(tmp_path):
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is required (apt-get install xvfb)"
    display = next(n for n in range(91, 199) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                   and not os.path.exists(f"/tmp/.X{n}-lock"))
    server = subprocess.Popen([xvfb, f":{display}", "-screen", "0", "1280x800x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(f"/tmp/.X11-unix/X{display}"):
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        out = tmp_path / "xvfb-main-ko.png"
        env = service_env(DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb")
        run = subprocess.run([sys.executable, "-m", "tests.stations.xvfb_shot", str(out),
                              str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        report = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)
    assert report["platform"] == "xcb" and report["size"] == [1280, 800]
    assert report["hangul"] is True, report
    assert out.stat().st_size > 10_000 and _distinct_colours(out) > 20
