"""station:// labels: pulled from the server, printed on the local printer exactly once, acked;
printer status from ~HS shown (paper out keeps the job until the printer is ready)."""
from __future__ import annotations

import pytest
from PyQt5.QtCore import Qt

from printers import PrinterSimulator
from stations.i18n import printer_text, tr
from tests.stations.conftest import api_status

ROUTING = [{"step": "SMT", "name": "SMT assembly", "label_template": "lot"},
           {"step": "PACK", "name": "Packing"}]


@pytest.fixture()
def simulator():
    """A Zebra-like TCP printer simulator on a free port."""
    sim = PrinterSimulator(render=False).start()
    yield sim
    sim.stop()


def _jobs(stack, factory, lot):
    return api_status(stack, factory.headers("supervisor"),
                      f"/api/v1/labels/jobs?lot_no={lot}")["items"]


def test_station_label_printed_once_after_paper_out(stack, factory, make_station, qtbot,
                                                    simulator):
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["SMT"], printer_uri="station://")
    lot = factory.lot(product, quantity=3)
    simulator.set_fault("paper_out")
    w = make_station(station, user, printer_uri=f"tcp://127.0.0.1:{simulator.port}")
    qtbot.waitUntil(lambda: printer_text("paper_out") in w.printer_label.text(), timeout=10000)

    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    assert w.form.specs == []
    with qtbot.waitSignal(w.result_shown, timeout=20000) as result:
        qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    assert result.args[0].state == "accepted"

    # The job is pulled (server: sent) but held locally while the paper is out: nothing printed.
    qtbot.waitUntil(lambda: [j["state"] for j in _jobs(stack, factory, lot)] == ["sent"],
                    timeout=15000)
    qtbot.waitUntil(lambda: len(w.ctx.queue.labels(("pulled",))) == 1, timeout=5000)
    qtbot.wait(1000)
    assert simulator.label_count == 0

    simulator.clear_faults()
    qtbot.waitUntil(lambda: simulator.label_count == 1, timeout=15000)
    qtbot.waitUntil(lambda: [j["state"] for j in _jobs(stack, factory, lot)] == ["printed"],
                    timeout=15000)
    qtbot.waitUntil(lambda: w.printer_label.text() == tr("status.printer",
                                                         state=tr("printer.ready")),
                    timeout=15000)
    label = simulator.labels()[0]
    assert lot.encode() in label.zpl
    # More pulls find nothing; the journal says acked; the simulator still has one label.
    qtbot.wait(1500)
    assert simulator.label_count == 1
    assert w.ctx.api.next_label() is None
    assert [r["state"] for r in w.ctx.queue.labels(("acked",))] == ["acked"]
    assert w.ctx.labels.sent_count == 1


def test_interrupted_print_is_reported_not_reprinted(stack, factory, make_station, qtbot,
                                                     simulator, tmp_path):
    _, user = factory.user("operator")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["SMT"], printer_uri="station://")
    lot = factory.lot(product, quantity=1)
    w = make_station(station, user, printer_uri="", data_dir=tmp_path / "a")  # no printer yet
    with qtbot.waitSignal(w.lot_shown, timeout=5000):
        qtbot.keyClicks(w.scan_field, lot)
        qtbot.keyClick(w.scan_field, Qt.Key_Return)
    with qtbot.waitSignal(w.result_shown, timeout=20000):
        qtbot.mouseClick(w.complete_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: [j["state"] for j in _jobs(stack, factory, lot)] == ["queued"],
                    timeout=15000)
    assert printer_text("not_configured") in w.printer_label.text()
    # Simulate a crash in the middle of sending: the job was pulled and marked "sending".
    job = w.ctx.api.next_label()
    w.ctx.queue.label_pulled(job["id"], job["zpl"])
    w.ctx.queue.label_state(job["id"], "sending")
    w.shutdown()
    w2 = make_station(station, user, printer_uri=f"tcp://127.0.0.1:{simulator.port}",
                      data_dir=tmp_path / "a")
    qtbot.waitUntil(lambda: [j["state"] for j in _jobs(stack, factory, lot)] == ["failed"],
                    timeout=15000)
    assert simulator.label_count == 0, "an unconfirmed print is never repeated by the app"
    assert "not confirmed" in _jobs(stack, factory, lot)[0]["printer_reason"]
    assert w2.ctx.labels.sent_count == 0
