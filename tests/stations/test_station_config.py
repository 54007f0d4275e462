"""Configuration: INI + environment overrides, validation, and the first-run settings dialog."""
from __future__ import annotations

from PyQt5.QtCore import Qt

from stations import config
from stations.config import StationConfig
from stations.i18n import tr
from stations.ui import SettingsDialog

INI = """[station]
server = http://mes.local:8000
station = ST-03
scanner_mode = serial
scanner_port = /dev/ttyACM0
scanner_baud = 115200
scanner_terminator = \\r\\n
language = en
heartbeat_s = 30
"""


def test_ini_then_environment_overrides(tmp_path):
    path = tmp_path / "station.ini"
    path.write_text(INI)
    env = {"NEUROHUB_STATION": "ST-04", "NEUROHUB_LANG": "ko", "NEUROHUB_SCANNER_BAUD": "9600",
           "NEUROHUB_PRINTER": "tcp://10.0.0.9:9100", "NEUROHUB_SERVER": ""}
    cfg, sources = config.load(path, env)
    assert (cfg.server, cfg.station, cfg.language) == ("http://mes.local:8000", "ST-04", "ko")
    assert cfg.scanner_baud == 9600 and isinstance(cfg.scanner_baud, int)
    assert cfg.terminator == b"\r\n" and cfg.printer_uri == "tcp://10.0.0.9:9100"
    assert sources["station"] == "NEUROHUB_STATION" and sources["server"] == str(path)
    assert cfg.is_complete()


def test_bad_number_keeps_default_and_says_where(tmp_path):
    path = tmp_path / "station.ini"
    path.write_text("[station]\nscanner_baud = fast\n")
    cfg, sources = config.load(path, {})
    assert cfg.scanner_baud == 9600 and "bad value 'fast'" in sources["scanner_baud"]


def test_nothing_configured_needs_the_first_run_dialog(tmp_path):
    cfg, _ = config.load(tmp_path / "missing.ini", {})
    fields = {f for f, _ in cfg.problems()}
    assert not cfg.is_complete() and {"server", "station"} <= fields
    bad = StationConfig(server="mes.local", station="ST-1", scanner_mode="serial",
                        printer_uri="station://")
    assert {f for f, _ in bad.problems()} == {"server", "scanner_port", "printer_uri"}


def test_save_roundtrip(tmp_path):
    cfg = StationConfig(server="http://a:1", station="ST-07", gs_substitute="|", language="en",
                        data_dir=str(tmp_path / "d"))
    path = config.save(cfg, tmp_path / "x" / "station.ini")
    loaded, _ = config.load(path, {})
    assert loaded == cfg


def test_settings_dialog_validates_and_saves(qtbot, tmp_path):
    dialog = SettingsDialog(StationConfig(data_dir=str(tmp_path)))
    qtbot.addWidget(dialog)
    saved = []
    dialog.saved.connect(saved.append)
    qtbot.mouseClick(dialog.save_button, Qt.LeftButton)
    assert saved == [] and tr("settings.invalid", problems="").rstrip() in dialog.message.text()
    qtbot.keyClicks(dialog.edits["server"], "http://127.0.0.1:8000")
    qtbot.keyClicks(dialog.edits["station"], "ST-05")
    dialog.language.setCurrentIndex(dialog.language.findData("en"))
    qtbot.mouseClick(dialog.save_button, Qt.LeftButton)
    assert len(saved) == 1
    cfg = saved[0]
    assert (cfg.server, cfg.station, cfg.language, cfg.scanner_mode) == (
        "http://127.0.0.1:8000", "ST-05", "en", "wedge")
    assert cfg.is_complete()
