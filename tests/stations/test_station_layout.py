"""No text is cut off at 1024 x 768, in Korean and English, with long realistic texts: every
visible label and button of the main window and the dialogs shows its whole text."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from stations.config import StationConfig
from stations.i18n import set_language, tr
from stations.station import Lookup, StationContext
from stations.ui import MainWindow
from stations.ui.dialogs import SettingsDialog
from tests.stations.conftest import dead_server_url
from tests.stations.layout_check import (LOT, MEASURED, PRODUCT, SCENES, SERVER_DOWN, SIZE,
                                         STEPS, clipped)
from tests.support.procs import ROOT, service_env

@pytest.fixture()
def window(hangul_app, qtbot, tmp_path):
    windows = []

    def make(language: str) -> MainWindow:
        set_language(language)
        ctx = StationContext(StationConfig(server=dead_server_url(), station="ST-05",
                                           scanner_mode="none", data_dir=str(tmp_path / "d")))
        ctx.station_record = {"code": "ST-05", "steps": STEPS, "printer_uri": None}
        w = MainWindow(ctx)
        windows.append(w)
        w.resize(*SIZE)
        w.show()
        qtbot.waitExposed(w)
        # The worker's first state (offline) arrives, then it stops: the states shown below
        # stay on screen instead of being replaced by its next report.
        qtbot.waitUntil(lambda: w.net_label.text() == tr("offline.queued", count=0))
        w.ctx.sync_worker.stop()
        return w

    yield make
    for w in windows:
        w.shutdown()
        w.close()


def _settle(qtbot):
    """Let the layouts (and the fitted message font) settle."""
    qtbot.wait(120)


@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("language", ["en", "ko"])
def test_scenes_nothing_clipped(window, qtbot, language, scene):
    w = window(language)
    SCENES[scene](w)
    _settle(qtbot)
    if scene == "measurement":
        assert w.lot_panel.values["lot.serves"].text().startswith(
            tr("lot.serves.no", step="CAL", steps="")[:8])
    else:
        assert w.firmware_panel.isVisible()
    assert (w.width(), w.height()) == SIZE
    problems = clipped(w)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_long_messages_nothing_clipped(window, qtbot, language):
    w = window(language)
    w.show_lookup(Lookup(dict(LOT, current_step="CAL"), PRODUCT, MEASURED))
    messages = [tr("error.server", detail=SERVER_DOWN),
                tr("complete.out_of_limits_warning"),
                tr("error.offline_not_cached", code="]d20109506000134352211234567890ABCDEF"),
                tr("error.firmware_missing", product=PRODUCT["code"]),
                tr("complete.in_flight", seq=1234, lot=LOT["lot_no"], step="CAL",
                   unit=" SN-2026-000123")]
    for text in messages:
        w.show_message(text, "#b00020")
        _settle(qtbot)
        problems = clipped(w)
        assert not problems, text + "\n" + "\n".join(problems)
    w.complete_button.setText(tr("complete.button_confirm"))
    _settle(qtbot)
    problems = clipped(w)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_dialogs_nothing_clipped(window, qtbot, language):
    w = window(language)
    login = w.show_login(tr("login.offline_unknown"))
    qtbot.waitExposed(login)
    _settle(qtbot)
    problems = clipped(login)
    assert not problems, "\n".join(problems)
    login.failed(tr("error.login_expired"))
    problems = clipped(login)
    assert not problems, "\n".join(problems)
    login.reject()
    settings = SettingsDialog(w.ctx.cfg, w)
    settings.show()
    qtbot.waitExposed(settings)
    for name, value in (("server", "ftp://mes.plant.local"), ("station", ""),
                        ("scanner_port", ""), ("printer_uri", "lpt://1")):
        settings.edits[name].setText(value)
    settings.mode.setCurrentIndex(settings.mode.findData("serial"))
    settings.save_button.click()
    assert settings.isVisible() and settings.message.text().startswith(
        tr("settings.invalid", problems="")[:4])
    _settle(qtbot)
    assert settings.width() <= SIZE[0] and settings.height() <= SIZE[1]
    problems = clipped(settings)
    assert not problems, "\n".join(problems)
    settings.close()


def test_scenes_on_a_real_1024x768_x_screen(tmp_path):
    """The same scenes on Xvfb (xcb platform, the window as big as the screen), both languages."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is required (apt-get install xvfb)"
    display = next(n for n in range(201, 299) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                   and not os.path.exists(f"/tmp/.X{n}-lock"))
    server = subprocess.Popen([xvfb, f":{display}", "-screen", "0", "1024x768x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(f"/tmp/.X11-unix/X{display}"):
            assert server.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.1)
        env = service_env(DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb")
        for language in ("en", "ko"):
            run = subprocess.run([sys.executable, "-m", "tests.stations.layout_check", language,
                                  str(tmp_path / language)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr[-3000:]
            report = json.loads(run.stdout.strip().splitlines()[-1])
            assert report["platform"] == "xcb" and report["screen"] == list(SIZE), report
            assert report["size"] == list(SIZE), report
            assert report["problems"] == {name: [] for name in SCENES}, (language, report)
    finally:
        server.terminate()
        server.wait(10)
