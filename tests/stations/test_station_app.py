"""The ``neurohub-station`` entry: StationApp start, settings applied live or by rebuild, CLI."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

from stations import config
from stations.app import StationApp, parse_args
from stations.config import StationConfig
from stations.i18n import language, tr
from tests.support.procs import ROOT, service_env


def test_station_app_start_settings_and_rebuild(stack, factory, hangul_app, qtbot, tmp_path):
    station = factory.station(steps=["FCT"])
    cfg = StationConfig(server=stack.url, station=station, scanner_mode="none", language="ko",
                        data_dir=str(tmp_path / "d"))
    path = tmp_path / "station.ini"
    app = StationApp(hangul_app, cfg, path)
    window = app.start()
    try:
        qtbot.waitUntil(lambda: window.login_dialog is not None and window.login_dialog.isVisible())
        assert language() == "ko" and window.complete_button.text() == "완공"
        dialog = app.open_settings()
        dialog.language.setCurrentIndex(dialog.language.findData("en"))
        dialog.save_button.click()
        assert app.window is window, "a language change is applied live"
        assert window.complete_button.text() == tr("complete.button") == "Complete"
        assert config.load(path, {})[0].language == "en"
        app.apply(dataclasses.replace(app.cfg, station="ST-OTHER"))
        assert app.window is not window and app.window.ctx.cfg.station == "ST-OTHER"
        assert window.ctx.queue._db._all == [], "the old window's databases were closed"
    finally:
        for w in {window, app.window}:
            w.shutdown()
            w.close()


def test_command_line_options_and_module_entry(tmp_path):
    args = parse_args(["--server", "http://x:1", "--station", "ST-02", "--lang", "en"])
    assert (args.server, args.station, args.lang) == ("http://x:1", "ST-02", "en")
    ini = tmp_path / "station.ini"
    config.save(StationConfig(server="http://127.0.0.1:9", station="ST-09", scanner_mode="none",
                              data_dir=str(tmp_path / "data")), ini)
    env = service_env(QT_QPA_PLATFORM="offscreen", NEUROHUB_STATION_CONFIG=str(ini))
    proc = subprocess.Popen([sys.executable, "-m", "stations.app"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        log = tmp_path / "data" / "station.log"
        while not log.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        time.sleep(1.0)
        assert proc.poll() is None, "the app should keep running (offline, at the login)"
        assert log.exists()
    finally:
        proc.terminate()
        proc.wait(10)
