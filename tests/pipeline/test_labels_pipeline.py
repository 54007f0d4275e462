"""Labels through the real pipeline: completion -> worker -> label job -> printing queue -> TCP."""
import uuid

import pytest

from tests.pipeline.conftest import wait_status
from tests.support.procs import wait_until

ROUTING = [{"step": "FCT", "name": "Functional test", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]


@pytest.fixture()
def line(factory, sim):
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FCT"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
    return {"product": product, "station": station, "op": factory.headers("operator")}


def complete(client, line, lot, serial):
    r = client.post("/api/v1/completions", headers={**line["op"], "Idempotency-Key":
                                                     uuid.uuid4().hex},
                    json={"lot_no": lot, "step": "FCT", "station": line["station"],
                          "unit_serial": serial, "measurements": {"voltage": 3.3}})
    assert r.status_code == 202, r.json
    return r.json["id"]


def label_state(client, line, cid):
    labels = client.get(f"/api/v1/completions/{cid}", headers=line["op"]).json["labels"]
    return labels[0]["state"] if labels else None


def test_accepted_completion_prints_exactly_one_label_with_its_serial(pipeline, client, factory,
                                                                      line, sim):
    lot = factory.lot(line["product"], quantity=2, serials=["SN-E2E-1", "SN-E2E-2"])
    cid = complete(client, line, lot, "SN-E2E-2")
    assert wait_status(client, line["op"], cid)["status"] == "accepted"
    wait_until(lambda: label_state(client, line, cid) == "printed", 30, 0.1,
               f"the label to print\n{pipeline.logs()}")
    assert sim.label_count == 1
    assert b"SN-E2E-2" in sim.labels()[0].zpl and b"SN-E2E-1" not in sim.labels()[0].zpl


def test_paper_out_then_refill_prints_once(pipeline, client, factory, line, sim):
    lot = factory.lot(line["product"], quantity=1, serials=["SN-PAPER-1"])
    sim.set_fault("paper_out")
    cid = complete(client, line, lot, "SN-PAPER-1")
    wait_until(lambda: label_state(client, line, cid) == "waiting_printer", 30, 0.1,
               f"the job to wait for the printer\n{pipeline.logs()}")
    job = client.get(f"/api/v1/completions/{cid}", headers=line["op"]).json["labels"][0]
    assert job["printer_reason"] == "paper_out" and sim.label_count == 0
    sim.clear_faults()
    wait_until(lambda: label_state(client, line, cid) == "printed", 60, 0.2,
               f"the label to print after the refill\n{pipeline.logs()}")
    assert sim.label_count == 1
