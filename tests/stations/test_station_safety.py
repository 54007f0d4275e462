"""Complete acts only on the item the operator holds: a failed scan clears it, one press of
Complete is one completion (online and offline), and out-of-limits values are recorded only by a
deliberate confirming press, against the real server, worker and relay."""
from __future__ import annotations

import time

from PyQt5.QtCore import Qt

from stations.i18n import tr
from stations.ui.confirm import CONFIRM_GUARD_MS
from tests.stations.conftest import FCT_STEP, api_status, dead_server_url

ASSY = {"step": "ASSY", "name": "Assembly"}   # no measurements: nothing to re-type between presses
PACK = {"step": "PACK", "name": "Packing"}


def _scan(qtbot, window, code):
    with qtbot.waitSignal(window.lot_shown, timeout=10000) as shown:
        qtbot.keyClicks(window.scan_field, code)
        qtbot.keyClick(window.scan_field, Qt.Key_Return)
    return shown.args[0]


def _double_press(qtbot, window):
    qtbot.mouseClick(window.complete_button, Qt.LeftButton)
    qtbot.wait(150)
    qtbot.mouseClick(window.complete_button, Qt.LeftButton)


def _offline_station(factory, make_station, qtbot, tmp_path, routing, *lots):
    """A station that saw ``lots`` online once, restarted with the server unreachable."""
    _, user = factory.user("operator")
    product = factory.product(routing=routing)
    station = factory.station(steps=[routing[0]["step"]], printer_uri=None)
    made = [factory.lot(product, quantity=1) for _ in lots]
    data = tmp_path / "station-data"
    online = make_station(station, user, data_dir=data)
    for lot in made:
        assert _scan(qtbot, online, lot).lot["lot_no"] == lot
    online.shutdown()
    window = make_station(station, user, data_dir=data, server=dead_server_url())
    assert window.result_label.text() == tr("login.offline_ok")
    return window, made


def _assert_no_active_item(window):
    assert not window.complete_button.isEnabled()
    assert window.lookup is None
    assert window.lot_panel.lot_label.text() == tr("lot.none")
    assert window.form.fields == {}
    assert window.complete() is None
    assert window.ctx.queue.all() == []


def test_unknown_code_after_a_lot_clears_it_and_complete(stack, factory, make_station, qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, PACK])
    station = factory.station(steps=["FCT"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user)
    _scan(qtbot, w, lot)
    qtbot.keyClicks(w.form.fields["voltage"], "3.3")
    qtbot.keyClicks(w.form.fields["current_ma"], "40")
    assert w.complete_button.isEnabled()
    result = _scan(qtbot, w, "NO-SUCH-CODE-77")
    assert result.error[0] == "error.unknown_barcode"
    assert w.result_label.text() == tr("error.unknown_barcode", code="NO-SUCH-CODE-77")
    _assert_no_active_item(w)
    # The next good scan makes the lot active again.
    _scan(qtbot, w, lot)
    assert w.complete_button.isEnabled() and w.lot_panel.lot_label.text() == lot


def test_offline_lot_never_seen_clears_the_cached_lot_on_screen(stack, factory, make_station,
                                                               qtbot, tmp_path):
    w, (lot,) = _offline_station(factory, make_station, qtbot, tmp_path, [ASSY, PACK], 1)
    assert _scan(qtbot, w, lot).cached_at is not None
    assert w.complete_button.isEnabled()
    result = _scan(qtbot, w, "LOT-NEVER-SEEN-HERE")
    assert result.error == ("error.offline_not_cached", {"code": "LOT-NEVER-SEEN-HERE"})
    _assert_no_active_item(w)


def test_double_press_online_sends_one_completion_and_ends_accepted(stack, factory,
                                                                     make_station, qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=[ASSY, PACK])
    station = factory.station(steps=["ASSY"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user)
    _scan(qtbot, w, lot)
    assert w.complete_button.isEnabled()
    decided = []
    w.result_shown.connect(decided.append)
    _double_press(qtbot, w)
    assert not w.complete_button.isEnabled(), "disabled while the completion is sent"
    qtbot.waitUntil(lambda: bool(decided), timeout=20000)
    qtbot.wait(1500)   # a second completion would have been decided (rejected) by now
    assert [(e.seq, e.state) for e in decided] == [(1, "accepted")]
    assert [e.state for e in w.ctx.queue.all()] == ["accepted"]
    assert w.result_label.text() == tr("complete.accepted", lot=lot, step="ASSY", unit="")
    body = api_status(stack, factory.headers("supervisor"), f"/api/v1/lots/{lot}")
    assert [c["status"] for c in body["completions"]] == ["accepted"]
    # The refreshed lot is at PACK, which this station does not serve: Complete stays off.
    qtbot.waitUntil(lambda: w.lot_panel.values["lot.step"].text() == "PACK", timeout=10000)
    assert not w.complete_button.isEnabled()


def test_double_press_offline_queues_one_completion_and_a_rescan_keeps_it_off(
        stack, factory, make_station, qtbot, tmp_path):
    w, (lot,) = _offline_station(factory, make_station, qtbot, tmp_path, [ASSY, PACK], 1)
    _scan(qtbot, w, lot)
    assert w.complete_button.isEnabled()
    _double_press(qtbot, w)
    entries = w.ctx.queue.all()
    assert [(e.body["lot_no"], e.state) for e in entries] == [(lot, "pending")]
    assert not w.complete_button.isEnabled()
    assert w.result_label.text() == tr("complete.queued_offline", seq=entries[0].seq)
    # Scanning the same lot again (the cache still says ASSY) must not offer a second one.
    _scan(qtbot, w, lot)
    assert not w.complete_button.isEnabled()
    assert w.result_label.text() == tr("complete.in_flight", seq=entries[0].seq, lot=lot,
                                       step="ASSY", unit="")
    assert w.complete() is None and len(w.ctx.queue.all()) == 1


def _out_of_limits_form(factory, make_station, qtbot):
    """A station showing a one-unit FCT lot with voltage 3.9 V (limits 3.2 … 3.4)."""
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, PACK])
    station = factory.station(steps=["FCT"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user)
    _scan(qtbot, w, lot)
    qtbot.keyClicks(w.form.fields["voltage"], "3.9")
    qtbot.keyClicks(w.form.fields["current_ma"], "40")
    assert w.form.state("voltage") == "out" and w.complete_button.isEnabled()
    return w, lot


def _warned(window):
    assert window.ctx.queue.all() == [], "nothing may be recorded before a deliberate confirm"
    assert window.result_label.text() == tr("complete.out_of_limits_warning")
    assert window.complete_button.text() == tr("complete.button_confirm")


def test_double_click_on_out_of_limits_values_only_warns_and_a_deliberate_confirm_records_one(
        stack, factory, make_station, qtbot):
    w, lot = _out_of_limits_form(factory, make_station, qtbot)
    warned_at = time.monotonic()
    _double_press(qtbot, w)
    _warned(w)
    assert not w.complete_button.isEnabled(), "held for the pause after the warning"
    qtbot.mouseClick(w.complete_button, Qt.LeftButton)   # a third, impatient press: nothing
    _warned(w)
    assert w.complete() is None and w.ctx.queue.all() == [], "not by any path during the pause"
    headers = factory.headers("supervisor")
    body = api_status(stack, headers, f"/api/v1/lots/{lot}")
    assert body["completions"] == [] and body["status"] != "on_hold"

    qtbot.waitUntil(w.complete_button.isEnabled, timeout=5000)
    # Qt's coarse timers may fire up to 5 % early.
    assert time.monotonic() - warned_at >= 0.95 * CONFIRM_GUARD_MS / 1000
    _warned(w)
    decided = []
    w.result_shown.connect(decided.append)
    _double_press(qtbot, w)   # the confirming press, even if it is a double click, is one
    qtbot.waitUntil(lambda: bool(decided), timeout=20000)
    qtbot.wait(1500)          # a second completion would have been decided by now
    assert [(e.seq, e.state) for e in decided] == [(1, "rejected")]
    assert [r["code"] for r in decided[0].reasons] == ["out_of_spec"]
    assert len(w.ctx.queue.all()) == 1
    body = api_status(stack, headers, f"/api/v1/lots/{lot}")
    assert [c["status"] for c in body["completions"]] == ["rejected"]
    assert body["status"] == "on_hold"
    assert w.complete_button.text() == tr("complete.button")


def test_changing_a_value_after_the_warning_needs_a_new_warning(stack, factory, make_station,
                                                                 qtbot):
    w, _ = _out_of_limits_form(factory, make_station, qtbot)
    qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    _warned(w)
    qtbot.waitUntil(w.complete_button.isEnabled, timeout=5000)
    # The operator retypes the value (still out of limits): the confirmation was for 3.9.
    w.form.fields["voltage"].clear()
    qtbot.keyClicks(w.form.fields["voltage"], "3.8")
    assert w.complete_button.text() == tr("complete.button") and w.complete_button.isEnabled()
    qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    _warned(w)
    assert not w.complete_button.isEnabled()
