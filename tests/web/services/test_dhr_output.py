"""The DHR's output is exactly what the first implementation made, for a lot with every shape.

``reference_build`` is a frozen copy of ``dhr.build`` as it was before it was made linear
(per-completion label filter, ORM audit rows): the oracle the faster code must match, key for
key and in the same order, as JSON and as CSV.
"""
from __future__ import annotations

import json
import uuid

from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

from tests.support.factories import post_completion
from web.extensions import db as _db
from web.models import AuditEvent, Completion, Firmware, LabelJob, Lot
from web.services import dhr
from web.services.completions.processing import judge_measurements, process_completion

ROUTING = [
    {"step": "MARK", "name": "Unit marking", "label_template": "unit"},
    {"step": "FCT", "name": "Functional test", "requires_firmware": False, "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50},
        {"name": "note", "unit": "", "required": False}]},
    {"step": "PACK", "name": "Packing", "label_template": "box"},
]


def _iso(t):
    return t.isoformat() if t else None


def reference_build(lot: Lot) -> dict:
    """``dhr.build`` as first written (quadratic label filter), with its helpers inlined."""
    completions = list(_db.session.scalars(
        select(Completion).where(Completion.lot_id == lot.id).order_by(Completion.id).options(
            selectinload(Completion.lot), selectinload(Completion.station),
            selectinload(Completion.operator))))
    jobs = list(_db.session.scalars(select(LabelJob).where(LabelJob.lot_id == lot.id)
                                    .order_by(LabelJob.id)))
    ids = {c.firmware_id for c in completions if c.firmware_id}
    firmware = {fw.id: {"id": fw.id, "version": fw.version, "sha256": fw.sha256,
                        "size": fw.size, "storage_key": fw.storage_key, "state": fw.state}
                for fw in (_db.session.scalars(select(Firmware).where(Firmware.id.in_(ids)))
                           if ids else [])}
    steps = []
    for step in sorted(lot.revision.steps, key=lambda s: s.seq):
        rows = []
        for c in (c for c in completions if c.step == step.code):
            d = {"id": c.id, "status": c.status, "reasons": c.reasons or [],
                 "lot_no": c.lot.lot_no, "step": c.step, "station": c.station.code,
                 "operator": c.operator.username, "unit_serial": c.unit_serial,
                 "measurements": c.measurements, "results": c.results,
                 "firmware_version": c.firmware_version, "firmware_sha256": c.firmware_sha256,
                 "qty_good": c.qty_good, "qty_scrap": c.qty_scrap, "error": c.error,
                 "received_at": c.received_at.isoformat(), "processed_at": _iso(c.processed_at),
                 "labels": [{"id": j.id, "state": j.state, "template": j.template_name,
                             "unit_serial": j.unit_serial, "printer_reason": j.printer_reason}
                            for j in jobs if j.completion_id == c.id]}
            d["measurements"] = c.results if c.results is not None else judge_measurements(
                step.measurements or [], c.measurements)[0]
            del d["results"]
            d["firmware"] = firmware.get(c.firmware_id)
            rows.append(d)
        steps.append({"step": step.code, "name": step.name, "seq": step.seq,
                      "requires_firmware": step.requires_firmware,
                      "label_template": step.label_template, "completions": rows})
    audit = _db.session.scalars(select(AuditEvent).where(AuditEvent.lot_id == lot.id)
                                .order_by(AuditEvent.id))
    lot_out = {"lot_no": lot.lot_no, "product": lot.product.code, "quantity": lot.quantity,
               "qty_good": lot.qty_good, "step_passed": lot.step_passed, "status": lot.status,
               "current_step": lot.current_step, "routing_revision": lot.revision.revision,
               "hold_reason": lot.hold_reason, "created_at": lot.created_at.isoformat()}
    return {"lot": lot_out | {"serials": [u.serial for u in lot.units]},
            "steps": steps,
            "labels": [{"id": j.id, "state": j.state, "template": j.template_name,
                        "template_version": j.template_version, "zpl_sha256": j.zpl_sha256,
                        "printer": j.printer_uri, "copies": j.copies, "reason": j.reason,
                        "reprint_reason": j.reprint_reason, "reprint_of": j.reprint_of,
                        "unit_serial": j.unit_serial, "completion_id": j.completion_id,
                        "attempts": j.attempts, "printer_reason": j.printer_reason,
                        "error": j.error, "created_at": j.created_at.isoformat(),
                        "sent_at": _iso(j.sent_at), "printed_at": _iso(j.printed_at)}
                       for j in jobs],
            "audit": [{"id": a.id, "at": a.at.isoformat(), "actor": a.actor, "action": a.action,
                       "entity_type": a.entity_type, "entity_id": a.entity_id,
                       "before": a.before, "after": a.after, "request_id": a.request_id}
                      for a in audit],
            "generated_at": "x"}


def reference_lot_detail(lot: Lot) -> dict:
    """``GET /lots/{lot_no}`` as first written: lot_dict with completion_dict of ORM rows."""
    out = {"lot_no": lot.lot_no, "product": lot.product.code, "quantity": lot.quantity,
           "qty_good": lot.qty_good, "step_passed": lot.step_passed, "status": lot.status,
           "current_step": lot.current_step, "routing_revision": lot.revision.revision,
           "hold_reason": lot.hold_reason, "created_at": lot.created_at.isoformat(),
           "serials": [u.serial for u in lot.units]}
    out["completions"] = [
        {"id": c.id, "status": c.status, "reasons": c.reasons or [], "lot_no": c.lot.lot_no,
         "step": c.step, "station": c.station.code, "operator": c.operator.username,
         "unit_serial": c.unit_serial, "measurements": c.measurements, "results": c.results,
         "firmware_version": c.firmware_version, "firmware_sha256": c.firmware_sha256,
         "qty_good": c.qty_good, "qty_scrap": c.qty_scrap, "error": c.error,
         "received_at": c.received_at.isoformat(), "processed_at": _iso(c.processed_at)}
        for c in _db.session.scalars(select(Completion).where(Completion.lot_id == lot.id)
                                     .order_by(Completion.id))]
    return out


def _decide(app, cid: int) -> str:
    with app.app_context():
        return process_completion(cid)


def _fixture_lot(app, client, factory, auth) -> str:
    """A serialised lot through MARK (unit labels, a reprint), FCT (a reject, a hold and a
    release, an unjudged extra value, a firmware record) and a PACK completion still pending."""
    op, sup = auth("operator"), auth("supervisor")
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["MARK", "FCT", "PACK"], printer_uri="sim://dhr")
    serials = [f"SN-{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]
    lot = factory.lot(product, 3, serials=serials)
    for s in serials:
        assert _decide(app, post_completion(client, op, lot, "MARK", station, unit_serial=s)) == "accepted"
    assert _decide(app, post_completion(client, op, lot, "MARK", station, unit_serial=serials[0])) \
        == "rejected"  # already passed MARK
    jobs = client.get("/api/v1/labels/jobs", headers=op, query_string={"lot_no": lot}).get_json()
    first = min(j["id"] for j in jobs["items"])
    assert client.post(f"/api/v1/labels/jobs/{first}/reprint", headers=sup,
                       json={"reason": "smudged – ünreadable"}).status_code == 201
    bad = post_completion(client, op, lot, "FCT", station, measurements={"voltage": 3.9, "current_ma": 40})
    assert _decide(app, bad) == "rejected"
    assert client.post(f"/api/v1/lots/{lot}/release", headers=sup,
                       json={"reason": "retest"}).status_code == 200
    good = post_completion(client, op, lot, "FCT", station, qty_good=3,
                 measurements={"voltage": 3.31, "current_ma": 42, "note": 1, "extra": 7.5})
    assert _decide(app, good) == "accepted"
    with app.app_context():
        product_id = _db.session.scalar(text("SELECT product_id FROM lots WHERE lot_no = :l"),
                                        {"l": lot})
        fw = Firmware(product_id=product_id, version="1.2.3", storage_key=f"fw/{lot}",
                      filename="fw.bin", sha256="ab" * 32, size=1234, state="released")
        _db.session.add(fw)
        _db.session.flush()
        _db.session.execute(text("UPDATE completions SET firmware_id = :f, firmware_version = "
                                 "'1.2.3', firmware_sha256 = :s WHERE id = :c"),
                            {"f": fw.id, "s": "ab" * 32, "c": good})
        _db.session.execute(text("UPDATE label_jobs SET state = 'printed', sent_at = now(), "
                                 "printed_at = now(), attempts = 1, printer_reason = 'ok' "
                                 "WHERE id = :j"), {"j": first})
        _db.session.commit()
    post_completion(client, op, lot, "PACK", station, measurements={"weight": 2})  # left pending
    return lot


def test_dhr_and_lot_detail_unchanged(app, client, factory, auth, db):
    lot_no = _fixture_lot(app, client, factory, auth)
    with app.app_context():
        lot = _db.session.scalar(select(Lot).where(Lot.lot_no == lot_no))
        want = reference_build(lot)
        _db.session.expire_all()
        got = dhr.build(lot) | {"generated_at": "x"}
    assert sum(len(s["completions"]) for s in want["steps"]) == 7
    assert len(want["labels"]) == 4 and len(want["audit"]) > 15
    assert json.dumps(got) == json.dumps(want)  # same keys in the same order, same values
    assert dhr.to_csv(got) == dhr.to_csv(want)
    resp = client.get(f"/api/v1/lots/{lot_no}/dhr", headers=auth("operator"))
    assert json.dumps(resp.get_json() | {"generated_at": "x"}) == json.dumps(want)
    resp = client.get(f"/api/v1/lots/{lot_no}", headers=auth("operator"))
    with app.app_context():
        lot = _db.session.scalar(select(Lot).where(Lot.lot_no == lot_no))
        detail = reference_lot_detail(lot)
    assert json.dumps(resp.get_json()) == json.dumps(detail)
    resp = client.get(f"/api/v1/lots/{lot_no}/dhr?format=csv", headers=auth("operator"))
    assert resp.get_data(as_text=True) == dhr.to_csv(want)

