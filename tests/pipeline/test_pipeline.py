"""The completion pipeline end to end: HTTP -> outbox -> relay -> Redis -> Celery worker -> lot."""
import os
import uuid

from tests.pipeline.conftest import wait_status
from tests.support.procs import wait_until

GOOD = {"voltage": 3.31, "current_ma": 41.2}


def post(client, headers, body, key=None):
    return client.post("/api/v1/completions", json=body,
                       headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})


def test_completion_is_accepted_and_lot_advances(pipeline, client, auth, factory):
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=3)
    op = auth("operator")
    r = post(client, op, {"lot_no": lot, "step": "SMT", "station": st})
    assert r.status_code == 202, r.json
    body = wait_status(client, op, r.json["id"])
    assert body["status"] == "accepted", pipeline.logs()
    lot_now = client.get(f"/api/v1/lots/{lot}", headers=op).json
    assert (lot_now["status"], lot_now["current_step"]) == ("in_process", "FCT")


def test_out_of_spec_is_rejected_and_holds_the_lot(pipeline, client, auth, factory):
    smt, fct = factory.station(steps=["SMT"]), factory.station(steps=["FCT"])
    lot = factory.lot(quantity=1)
    op = auth("operator")
    first = post(client, op, {"lot_no": lot, "step": "SMT", "station": smt}).json["id"]
    bad = post(client, op, {"lot_no": lot, "step": "FCT", "station": fct,
                            "measurements": {"voltage": 3.9, "current_ma": 41.2}}).json["id"]
    assert wait_status(client, op, first)["status"] == "accepted"
    body = wait_status(client, op, bad)
    assert body["status"] == "rejected"
    assert [r["code"] for r in body["reasons"]] == ["out_of_spec"]
    assert [m["pass"] for m in body["results"]] == [False, True]
    lot_now = client.get(f"/api/v1/lots/{lot}", headers=op).json
    assert (lot_now["status"], lot_now["current_step"]) == ("on_hold", "FCT")


def test_a_lot_runs_its_whole_routing_in_order(pipeline, client, auth, factory):
    stations = {s: factory.station(steps=[s]) for s in ("SMT", "FCT", "PACK")}
    lot = factory.lot(quantity=2)
    op = auth("operator")
    ids = []
    for step in ("SMT", "FCT", "PACK"):  # posted back to back: the worker must keep the order
        for _ in range(2):
            body = {"lot_no": lot, "step": step, "station": stations[step], "qty_good": 1}
            if step == "FCT":
                body["measurements"] = GOOD
            ids.append(post(client, op, body).json["id"])
    statuses = [wait_status(client, op, i)["status"] for i in ids]
    assert statuses == ["accepted"] * 6, pipeline.logs()
    lot_now = client.get(f"/api/v1/lots/{lot}", headers=op).json
    assert (lot_now["status"], lot_now["current_step"]) == ("completed", None)


def test_workers_and_the_relay_run_at_background_cpu_priority(pipeline):
    base = os.nice(0)  # the web keeps this process's priority (the test client's here)
    worker = pipeline.worker.tree()
    assert len(worker) >= 2, "the worker and its pool children"
    assert {p.nice() for p in worker} == {base + 5}  # BACKGROUND_NICE, children included
    # the relay renices itself when its loop starts, which may be just after the worker's ping
    wait_until(lambda: {p.nice() for p in pipeline.relay.tree()} == {base + 5}, 30, 0.1,
               "the relay at background priority")
