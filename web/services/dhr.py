"""The device history record: every step of a lot, who did it, where, when, values vs limits."""
from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import AuditEvent, Completion, Lot, utcnow
from .completions import completion_dict
from .firmware import provenance as firmware_provenance
from .labels import job_dict, lot_jobs
from .lots import lot_dict
from .plant_time import shown
from .processing import judge_measurements


def lot_completions(lot_id: int) -> list[Completion]:
    """A lot's completions in arrival order, with station and operator loaded."""
    return list(db.session.scalars(select(Completion).where(Completion.lot_id == lot_id)
                                   .order_by(Completion.id).options(
        selectinload(Completion.lot), selectinload(Completion.station),
        selectinload(Completion.operator))))


def build(lot: Lot) -> dict:
    """The DHR of one lot as a JSON-ready dict."""
    completions = lot_completions(lot.id)
    jobs = lot_jobs(lot.id)
    firmware = firmware_provenance(c.firmware_id for c in completions)
    steps = []
    for step in sorted(lot.revision.steps, key=lambda s: s.seq):
        rows = []
        for c in (c for c in completions if c.step == step.code):
            d = completion_dict(c, [j for j in jobs if j.completion_id == c.id])
            # Decided completions keep the judgement made at the time; pending ones are shown
            # against the pinned spec so the record is complete either way.
            d["measurements"] = c.results if c.results is not None else judge_measurements(
                step.measurements or [], c.measurements)[0]
            del d["results"]
            # Firmware provenance: the exact image (id, version, server sha256) a flash used.
            d["firmware"] = firmware.get(c.firmware_id)
            rows.append(d)
        steps.append({"step": step.code, "name": step.name, "seq": step.seq,
                      "requires_firmware": step.requires_firmware,
                      "label_template": step.label_template, "completions": rows})
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.lot_id == lot.id)
                               .order_by(AuditEvent.id))
    return {"lot": lot_dict(lot) | {"serials": [u.serial for u in lot.units]},
            "steps": steps,
            "labels": [{k: v for k, v in job_dict(j).items() if k != "data"} for j in jobs],
            "audit": [{"id": a.id, "at": a.at.isoformat(), "actor": a.actor, "action": a.action,
                       "entity_type": a.entity_type, "entity_id": a.entity_id,
                       "before": a.before, "after": a.after, "request_id": a.request_id}
                      for a in audit],
            "generated_at": utcnow().isoformat()}


CSV_COLUMNS = ["lot_no", "product", "step", "completion_id", "status", "unit_serial", "station",
               "operator", "received_at", "processed_at", "measurement", "value", "unit", "min",
               "max", "pass", "reasons", "firmware_version", "firmware_sha256"]


def to_csv(record: dict) -> str:
    """The DHR flattened to one row per measurement (or per completion without measurements).

    Times are the plant's wall clock with their offset: people read this file, not programs.
    """
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    lot = record["lot"]
    for step in record["steps"]:
        for c in step["completions"]:
            base = [lot["lot_no"], lot["product"], step["step"], c["id"], c["status"],
                    c["unit_serial"] or "", c["station"], c["operator"], shown(c["received_at"]),
                    shown(c["processed_at"])]
            tail = [";".join(r["code"] for r in c["reasons"]), c["firmware_version"] or "",
                    c["firmware_sha256"] or ""]
            for m in c["measurements"] or [None]:
                vals = ([m["name"], m["value"], m["unit"] or "", m["min"], m["max"], m["pass"]]
                        if m else ["", "", "", "", "", ""])
                w.writerow(base + ["" if v is None else v for v in vals] + tail)
    return out.getvalue()
