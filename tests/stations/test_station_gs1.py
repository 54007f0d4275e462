"""GS1 codes with a serial (21) but no lot (10) name a unit: scanned on a serial scanner (pty),
they resolve to the unit's lot on screen or in the cache, never to a lot named after the code."""
from __future__ import annotations

from stations.i18n import tr
from stations.scanner import parse_barcode
from tests.stations.conftest import FCT_STEP

GTIN = "09506000134352"


def _gs1_unit(serial: str) -> bytes:
    """GS1 DataMatrix (AIM ]d2): (01) GTIN, (21) serial; no lot."""
    return f"]d201{GTIN}21{serial}".encode()


def test_gs1_serial_without_lot_parses_as_a_serial():
    b = parse_barcode(_gs1_unit("SN0002").decode())
    assert (b.gs1.get("01"), b.serial, b.lot_no) == (GTIN, "SN0002", None)


def test_gs1_serial_without_lot_finds_the_unit_on_a_pty_scanner(stack, factory, pty_scanner,
                                                                make_station, qtbot):
    _, user = factory.user("operator")
    product = factory.product(routing=[FCT_STEP, {"step": "PACK", "name": "Packing"}])
    station = factory.station(steps=["FCT"], printer_uri=None)
    serials = ["SN0001", "SN0002"]
    lot = factory.lot(product, quantity=2, serials=serials)
    other = factory.lot(product, quantity=1)
    w = make_station(station, user, scanner_mode="serial", scanner_port=pty_scanner.path)
    assert w.ctx.scanner.connected.wait(5)

    def scan(data: bytes):
        with qtbot.waitSignal(w.lot_shown, timeout=10000) as shown:
            pty_scanner.scan(data)
        return shown.args[0]

    assert scan(lot.encode()).lot["lot_no"] == lot
    # The unit of the lot on screen.
    result = scan(_gs1_unit(serials[1]))
    assert result.error is None, result.error
    assert (result.lot["lot_no"], result.unit) == (lot, serials[1])
    assert w.lot_panel.values["lot.unit"].text() == serials[1]
    assert w.complete_button.isEnabled()
    # Another lot on screen: the unit's lot comes from what this station has seen.
    assert scan(other.encode()).lot["lot_no"] == other
    result = scan(_gs1_unit(serials[0]))
    assert (result.error, result.lot["lot_no"], result.unit) == (None, lot, serials[0])
    # A serial of no lot known here: said so, and nothing stays active.
    result = scan(_gs1_unit("SN-NOWHERE-9"))
    assert result.error == ("error.unknown_serial", {"serial": "SN-NOWHERE-9"})
    assert w.result_label.text() == tr("error.unknown_serial", serial="SN-NOWHERE-9")
    assert not w.complete_button.isEnabled()
