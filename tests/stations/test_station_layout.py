"""No text is cut off at 1024 x 768, in Korean and English, with long realistic texts: every
visible label and button of the main window and the dialogs shows its whole text."""
from __future__ import annotations

import time

import pytest
from PyQt5.QtCore import QRect, Qt
from PyQt5.QtGui import QFontMetrics, QRegion
from PyQt5.QtWidgets import QAbstractButton, QLabel, QStyle

from stations.config import StationConfig
from stations.firmware import Assignment
from stations.i18n import set_language, tr
from stations.queue import Entry
from stations.station import Lookup, StationContext
from stations.sync import SyncState
from stations.ui import MainWindow
from stations.ui.dialogs import SettingsDialog
from tests.stations.conftest import dead_server_url

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


def _status_bar_at_its_longest(w):
    w.show_sync_state(SyncState(online=False, pending=128, waiting_for="operator-kim-seo-yeon"))
    w.user_label.setText(tr("status.user", user="supervisor-park-ji-hoon"))
    w.printer_label.setText(tr("status.printer", state=", ".join(
        tr(f"printer.{c}") for c in ("paper_out", "ribbon_out", "head_open"))))
    w.scanner_label.setText(tr("scanner.disconnected"))


@pytest.mark.parametrize("language", ["en", "ko"])
def test_measurement_step_at_another_station_nothing_clipped(window, qtbot, language):
    w = window(language)
    lot = dict(LOT, current_step="CAL")
    w.ctx.station_record = dict(w.ctx.station_record, steps=["SMT", "AOI", "FCT", "LABEL",
                                                              "PACK", "FLASH"])
    w.show_lookup(Lookup(lot, PRODUCT, MEASURED, "SN-2026-000123", cached_at=time.time()))
    assert w.lot_panel.values["lot.serves"].text().startswith(
        tr("lot.serves.no", step="CAL", steps="")[:8])
    for name, value in zip(w.form.fields, ("3.9", "abc", "4.1")):
        w.form.fields[name].setText(value)
    _status_bar_at_its_longest(w)
    _settle(qtbot)
    assert (w.width(), w.height()) == SIZE
    problems = clipped(w)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_flash_step_with_firmware_and_a_rejection_nothing_clipped(window, qtbot, language):
    w = window(language)
    lot = dict(LOT, current_step="FLASH")
    w.ctx.station_record = dict(w.ctx.station_record, steps=STEPS + ["FLASH"])
    w.show_lookup(Lookup(lot, PRODUCT, FLASH, "SN-2026-000123"))
    a = Assignment(3, 9, "NH-100-EXTENDED", "2.3.1-rc4", "ab" * 32, 1 << 20, "pending", "/x")
    w.firmware_panel._done([(a, None, ["corrupt"], "sha256 mismatch: the file was cut short")])
    assert w.firmware_panel.isVisible()
    w.show_decision(REJECTED)
    _status_bar_at_its_longest(w)
    _settle(qtbot)
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
    w.complete_button.setText(tr("complete.button_anyway"))
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
