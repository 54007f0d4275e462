"""Scan → lot → measurements → Complete → accepted, against the real server, worker and relay."""
from __future__ import annotations

import requests
from PyQt5.QtCore import Qt

from stations.i18n import reason_text, tr
from tests.stations.conftest import FCT_STEP, api_status
from tests.support.procs import wait_until

PACK = {"step": "PACK", "name": "Packing"}


def _setup(factory, quantity=2, serials=None, steps=("FCT",), routing=None, printer_uri=None):
    _, user = factory.user("operator")
    product = factory.product(routing=routing or [FCT_STEP, PACK])
    station = factory.station(steps=list(steps), printer_uri=printer_uri)
    lot = factory.lot(product, quantity=quantity, serials=serials)
    return user, product, station, lot


def _fill(qtbot, window, voltage="3.3", current="40"):
    qtbot.keyClicks(window.form.fields["voltage"], voltage)
    qtbot.keyClicks(window.form.fields["current_ma"], current)


def _complete(qtbot, window, timeout=20000):
    with qtbot.waitSignal(window.result_shown, timeout=timeout) as result:
        qtbot.mouseClick(window.complete_button, Qt.LeftButton)
    return result.args[0]


def test_wedge_scan_loads_lot_form_and_completion_is_accepted(stack, factory, make_station, qtbot):
    user, product, station, lot = _setup(factory)
    w = make_station(station, user, scanner_mode="wedge", wedge_max_gap_ms=80)
    with qtbot.waitSignal(w.lot_shown, timeout=5000) as shown:
        qtbot.keyClicks(w.scan_field, lot)               # as fast as a scanner types
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert w.ctx.scanner.delivered == 1, "the wedge detector should have taken this as a scan"
    assert w.scan_field.text() == ""
    assert shown.args[0].lot["lot_no"] == lot
    assert w.lot_panel.lot_label.text() == lot
    assert w.lot_panel.values["lot.step"].text() == "FCT"
    assert w.lot_panel.values["lot.serves"].text() == tr("lot.serves.yes", step="FCT")
    assert list(w.form.fields) == ["voltage", "current_ma"]
    assert w.complete_button.isEnabled()

    qtbot.keyClicks(w.form.fields["voltage"], "3.9")
    assert w.form.state("voltage") == "out"
    w.form.fields["voltage"].clear()
    qtbot.keyClicks(w.form.fields["voltage"], "abc")
    assert w.form.state("voltage") == "bad"
    w.form.fields["voltage"].clear()
    qtbot.keyClicks(w.form.fields["voltage"], "3.3")
    assert w.form.state("voltage") == "ok"
    qtbot.keyClicks(w.form.fields["current_ma"], "40")

    entry = _complete(qtbot, w)
    assert entry.state == "accepted", entry
    assert w.result_label.text().startswith(tr("complete.accepted", lot=lot, step="FCT", unit=""))
    body = api_status(stack, factory.headers("supervisor"), f"/api/v1/lots/{lot}")
    assert [(c["status"], c["measurements"]) for c in body["completions"]] == [
        ("accepted", {"voltage": 3.3, "current_ma": 40.0})]
    assert body["current_step"] == "PACK"


def test_slow_typing_is_not_a_scan_but_manual_entry_still_works(stack, factory, make_station,
                                                                 qtbot):
    user, _, station, lot = _setup(factory)
    w = make_station(station, user, scanner_mode="wedge", wedge_max_gap_ms=80)
    with qtbot.waitSignal(w.lot_shown, timeout=10000) as shown:
        qtbot.keyClicks(w.scan_field, lot, delay=150)    # a person typing
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert w.ctx.scanner.delivered == 0
    assert shown.args[0].lot["lot_no"] == lot


def test_scan_into_a_measurement_field_selects_the_unit_and_leaves_the_value(
        stack, factory, make_station, qtbot):
    serials = ["SN-A-0001", "SN-A-0002"]
    user, _, station, lot = _setup(factory, quantity=2, serials=serials)
    w = make_station(station, user, scanner_mode="wedge", wedge_max_gap_ms=80)
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    field = w.form.fields["voltage"]
    field.setFocus()
    qtbot.keyClicks(field, "3.3", delay=150)  # the operator typed a value, then scans a unit
    with qtbot.waitSignal(w.lot_shown, timeout=5000) as shown:
        qtbot.keyClicks(field, serials[1])
        qtbot.keyClick(field, Qt.Key_Return)
    assert shown.args[0].unit == serials[1]
    assert field.text() == "3.3", "the scanned characters must not stay in the value"
    assert w.lot_panel.values["lot.unit"].text() == serials[1]


def test_serial_scanner_loop_gs1_unit_and_completion_accepted(stack, factory, make_station, qtbot):
    serials = ["SN-B-0001", "SN-B-0002"]
    user, _, station, lot = _setup(factory, quantity=2, serials=serials)
    w = make_station(station, user, scanner_mode="serial", scanner_port="loop://",
                     gs_substitute="|")
    scanner = w.ctx.scanner
    assert scanner.connected.wait(5)
    with qtbot.waitSignal(w.lot_shown, timeout=5000) as shown:
        scanner.serial.write(lot.encode() + b"\r")
    assert shown.args[0].lot["lot_no"] == lot and shown.args[0].unit is None
    # GS1 DataMatrix (AIM ]d2): (10) lot, GS, (21) serial; the GS byte survives serial.
    with qtbot.waitSignal(w.lot_shown, timeout=5000) as shown:
        scanner.serial.write(b"]d210" + lot.encode() + b"\x1d21" + serials[0].encode() + b"\r")
    assert shown.args[0].lot["lot_no"] == lot and shown.args[0].unit == serials[0]
    _fill(qtbot, w)
    entry = _complete(qtbot, w)
    assert entry.state == "accepted" and entry.body["unit_serial"] == serials[0]
    body = api_status(stack, factory.headers("supervisor"), f"/api/v1/lots/{lot}")
    assert [(c["unit_serial"], c["status"]) for c in body["completions"]] == [
        (serials[0], "accepted")]


def test_rejection_reasons_shown_in_korean(stack, factory, make_station, qtbot):
    from stations.i18n import set_language
    set_language("ko")
    user, _, station, lot = _setup(factory)
    w = make_station(station, user)
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    _fill(qtbot, w, voltage="3.9")
    qtbot.mouseClick(w.complete_button, Qt.LeftButton)     # first press only warns
    assert w.ctx.queue.all() == []
    assert w.result_label.text() == tr("complete.out_of_limits_warning")
    assert w.complete_button.text() == tr("complete.button_confirm")
    qtbot.waitUntil(w.complete_button.isEnabled, timeout=5000)  # the pause after the warning
    entry = _complete(qtbot, w)                            # the confirming press records it
    assert entry.state == "rejected"
    assert [r["code"] for r in entry.reasons] == ["out_of_spec"]
    text = w.result_label.text()
    assert "완공 거부" in text and reason_text("out_of_spec", entry.reasons[0]["detail"]) in text
    assert "규격" in text


def test_bad_input_messages_and_nothing_sent(stack, factory, make_station, qtbot):
    user, _, station, lot = _setup(factory, steps=("SMT",))   # this station does not serve FCT
    w = make_station(station, user)
    with qtbot.waitSignal(w.lot_shown, timeout=5000) as shown:
        qtbot.keyClicks(w.scan_field, "NO-SUCH-LOT-42")
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert shown.args[0].error[0] == "error.unknown_barcode"
    assert w.result_label.text() == tr("error.unknown_barcode", code="NO-SUCH-LOT-42")
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert not w.complete_button.isEnabled()
    assert w.result_label.text() == tr("error.wrong_station", step="FCT")
    assert "does not serve FCT" in w.lot_panel.values["lot.serves"].text()
    assert w.complete() is None and w.ctx.queue.all() == []
    # Non-numeric value at a station that serves the step: refused locally with a message.
    w.ctx.station_record = dict(w.ctx.station_record, steps=["FCT"])
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    _fill(qtbot, w, voltage="3,3x")
    assert w.complete() is None
    assert tr("error.not_number", name="voltage", value="3,3x") in w.result_label.text()
    assert w.ctx.queue.all() == []


def test_heartbeat_reaches_the_server(stack, factory, make_station, qtbot):
    user, _, station, _ = _setup(factory)
    w = make_station(station, user)
    wait_until(lambda: w.ctx.syncer.heartbeats >= 1, 10, message="a heartbeat")
    items = requests.get(stack.url + "/api/v1/stations", headers=factory.headers("operator"),
                         timeout=5).json()["items"]
    record = next(s for s in items if s["code"] == station)
    assert record["last_heartbeat_at"] is not None
    # It reports its offline queue (empty), which the server's /metrics shows per station.
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    assert f'neurohub_station_offline_queue_depth{{station="{station}"}} 0.0' in metrics
    assert w.ctx.syncer.heartbeat_s == 30.0
    qtbot.waitUntil(lambda: w.net_label.text() == tr("online"), timeout=5000)
