"""station.log: a line supervisor's trail of scanner, scan, completion, queue and login events."""
from __future__ import annotations

import logging
import logging.handlers
import re
import sys

from sqlalchemy import select

from stations.app import setup_logging
from web.models import AuditEvent
from tests.stations.conftest import FCT_STEP, PASSWORD, dead_server_url

ASSY = {"step": "ASSY", "name": "Assembly"}


def test_station_log_records_the_session(stack, factory, db, pty_scanner, make_station, qtbot,
                                         tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)   # setup_logging installs its own
    _, user = factory.user("operator")
    product = factory.product(routing=[ASSY, FCT_STEP])
    station = factory.station(steps=["ASSY"], printer_uri=None)
    lot = factory.lot(product, quantity=1)
    data = tmp_path / "station-data"
    data.mkdir()
    handler = setup_logging(data)
    try:
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert handler.maxBytes > 0 and handler.backupCount > 0
        w = make_station(station, user, data_dir=data, scanner_mode="serial",
                         scanner_port=pty_scanner.path)
        assert w.ctx.scanner.connected.wait(5)
        with qtbot.waitSignal(w.lot_shown, timeout=10000):
            pty_scanner.scan(lot.encode())
        with qtbot.waitSignal(w.lot_shown, timeout=10000):
            pty_scanner.scan(b"NO-SUCH-LOT-5")
        with qtbot.waitSignal(w.lot_shown, timeout=10000):
            pty_scanner.scan(lot.encode())
        with qtbot.waitSignal(w.result_shown, timeout=20000):
            w.complete_button.click()
        w.logout("logout")
        w.shutdown()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (data / "station.log").read_text(encoding="utf-8")
    expected = [
        rf"INFO .* stations\.station: operator {user} logged in",
        rf"INFO .* stations\.scanner: scanner connected on {re.escape(pty_scanner.path)}",
        rf"INFO .* stations\.scanner: scanner read '{lot}'",
        rf"INFO .* stations\.station: scan '{lot}': lot {lot} at ASSY",
        r"WARNING .* stations\.station: scan 'NO-SUCH-LOT-5' not usable: error\.unknown_barcode",
        rf"INFO .* stations\.station: completion #1 queued: lot {lot} step ASSY by {user}",
        rf"INFO .* stations\.sync: completion #1 sent: server id \d+, "
        rf"request {station}:[0-9a-f-]{{36}}",
        rf"INFO .* stations\.sync: completion #1 accepted: lot {lot} step ASSY",
        rf"INFO .* stations\.ui\.main_window: operator {user} logged out \(logout\)",
    ]
    missing = [p for p in expected if not re.search(p, text)]
    assert not missing, f"missing {missing} in:\n{text}"
    assert PASSWORD not in text
    # The station's request id is the server's: the audit row of the POST carries it.
    sent = re.search(r"completion #1 sent: server id (\d+), request (\S+)", text)
    rids = set(db.session.scalars(select(AuditEvent.request_id).where(
        AuditEvent.entity_type == "completion", AuditEvent.entity_id == sent.group(1))))
    assert sent.group(2) in rids, rids


def test_scanner_unplug_and_server_loss_are_logged(stack, pty_scanner, make_station, qtbot,
                                                   tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    data = tmp_path / "station-data"
    data.mkdir()
    handler = setup_logging(data)
    try:
        w = make_station("ST-LOG", login=False, data_dir=data, scanner_mode="serial",
                         scanner_port=pty_scanner.path, server=dead_server_url())
        assert w.ctx.scanner.connected.wait(5)
        qtbot.waitUntil(lambda: w.ctx.syncer.state.online is False, timeout=5000)
        pty_scanner.close()                                   # the cable is pulled
        qtbot.waitUntil(lambda: not w.ctx.scanner.connected.is_set(), timeout=5000)
        w.shutdown()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (data / "station.log").read_text(encoding="utf-8")
    assert re.search(r"WARNING .* stations\.sync: server unreachable: ", text), text
    assert re.search(rf"WARNING .* stations\.scanner: scanner on "
                     rf"{re.escape(pty_scanner.path)} disconnected", text), text
