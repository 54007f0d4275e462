"""The device history record: every step of a lot, who did it, where, when, values vs limits.

A lot's record grows with the lot only (hundreds of completions, thousands of audit rows), so
it is read as plain rows (no ORM objects), each column once, and assembled in linear time:
label jobs grouped by completion, completions by step. JSON columns come as text and each query's
documents are decoded in one call (one call per value cost more than the parsing); the record is
serialised by pydantic-core, several times faster than ``json.dumps`` for a megabyte of it.
"""
from __future__ import annotations

import csv
import io
from typing import NamedTuple

from pydantic_core import from_json, to_json
from sqlalchemy import Text, case, cast, null, select

from ..extensions import db
from ..models import AuditEvent, Completion, LabelJob, Lot, Station, User, utcnow
from .firmware import provenance as firmware_provenance
from .lots import lot_dict, lot_serials
from .plant_time import plant_zone, shown
from .completions.processing import judge_measurements


def _iso(t) -> str | None:
    return t.isoformat() if t else None


def _core(stmt):
    """Run a column SELECT on the session's connection: Core rows, without the ORM's per-row
    loading layer that ``session.execute`` puts in front of them (a third of the time here)."""
    return db.session.connection().execute(stmt)


def _text(column):
    """A JSON column as its text (decoded later by ``_decoded``, many at once)."""
    return cast(column, Text)


def _decoded(rows, *positions: int) -> list[list]:
    """The rows as lists, the JSON text at ``positions`` decoded: one parse per query.

    ``rows.all()`` is one fetchall; iterating the result fetched row by row (a driver call per
    row: 27 of the biggest lot's 82 ms, measured with cProfile on the 1M-completion history).
    """
    rows = [list(r) for r in rows.all()]
    docs = from_json("[" + ",".join(r[i] or "null" for r in rows for i in positions) + "]")
    it = iter(docs)
    for r in rows:
        for i in positions:
            r[i] = next(it)
    return rows


class _Row(NamedTuple):
    """One completion as the DHR and the lot detail read it."""

    id: int
    status: str
    reasons: list | None
    step: str
    station: str
    operator: str
    unit_serial: str | None
    measurements: dict | None
    results: list | None
    firmware_version: str | None
    firmware_sha256: str | None
    firmware_id: int | None
    qty_good: int | None
    qty_scrap: int | None
    error: str | None
    received_at: object
    processed_at: object


def _completion_rows(lot_id: int, *, measurements_if_pending: bool = False) -> list[_Row]:
    """A lot's completions in arrival order, with station code and operator name (one query).

    With ``measurements_if_pending`` the raw values come only for undecided completions (the
    DHR shows the judged results of the others, so their values need no decoding).
    """
    meas = (case((Completion.results.is_(None), _text(Completion.measurements)), else_=null())
            if measurements_if_pending else _text(Completion.measurements))
    rows = _core(
        select(Completion.id, Completion.status, _text(Completion.reasons), Completion.step,
               Station.code, User.username, Completion.unit_serial, meas,
               _text(Completion.results), Completion.firmware_version,
               Completion.firmware_sha256, Completion.firmware_id, Completion.qty_good,
               Completion.qty_scrap, Completion.error, Completion.received_at,
               Completion.processed_at)
        .join(Station, Station.id == Completion.station_id)
        .join(User, User.id == Completion.operator_id)
        .where(Completion.lot_id == lot_id).order_by(Completion.id))
    return [_Row(*r) for r in _decoded(rows, 2, 7, 8)]


def _completion_out(c, lot_no: str) -> dict:
    """completions.completion_dict of one row (same keys, same order)."""
    return {"id": c.id, "status": c.status, "reasons": c.reasons or [], "lot_no": lot_no,
            "step": c.step, "station": c.station, "operator": c.operator,
            "unit_serial": c.unit_serial, "measurements": c.measurements, "results": c.results,
            "firmware_version": c.firmware_version, "firmware_sha256": c.firmware_sha256,
            "qty_good": c.qty_good, "qty_scrap": c.qty_scrap, "error": c.error,
            "received_at": c.received_at.isoformat(), "processed_at": _iso(c.processed_at)}


def lot_completions(lot: Lot) -> list[dict]:
    """A lot's completions in arrival order, as the API shows them (without labels)."""
    return [_completion_out(c, lot.lot_no) for c in _completion_rows(lot.id)]


_LABEL_COLS = (LabelJob.id, LabelJob.state, LabelJob.template_name, LabelJob.template_version,
               LabelJob.zpl_sha256, LabelJob.printer_uri, LabelJob.copies, LabelJob.reason,
               LabelJob.reprint_reason, LabelJob.reprint_of, LabelJob.unit_serial,
               LabelJob.completion_id, LabelJob.attempts, LabelJob.printer_reason,
               LabelJob.error, LabelJob.created_at, LabelJob.sent_at, LabelJob.printed_at)


def _labels(lot_id: int) -> list:
    """A lot's label jobs, oldest first, without their data and ZPL (not part of the DHR)."""
    return _core(select(*_LABEL_COLS).where(LabelJob.lot_id == lot_id)
                 .order_by(LabelJob.id)).all()


def _audit(lot_id: int, *, before_id: int | None = None, limit: int | None = None) -> list[dict]:
    """The lot's audit trail, oldest first; or, with ``limit``, a page of it newest first
    (older than ``before_id``)."""
    stmt = (select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action,
                   AuditEvent.entity_type, AuditEvent.entity_id, _text(AuditEvent.before),
                   _text(AuditEvent.after), AuditEvent.request_id)
            .where(AuditEvent.lot_id == lot_id))
    if limit is None:
        stmt = stmt.order_by(AuditEvent.id)
    else:
        if before_id is not None:
            stmt = stmt.where(AuditEvent.id < before_id)
        stmt = stmt.order_by(AuditEvent.id.desc()).limit(limit)
    rows = _core(stmt)
    return [{"id": i, "at": at.isoformat(), "actor": actor, "action": action,
             "entity_type": etype, "entity_id": eid, "before": before, "after": after,
             "request_id": rid}
            for i, at, actor, action, etype, eid, before, after, rid in _decoded(rows, 6, 7)]


def audit_page(lot_id: int, before_id: int | None, limit: int) -> tuple[list[dict], int | None]:
    """A page of the lot's audit trail, newest first, and the id to ask for the next (older)
    page with (None at the first event): a big lot has thousands, a page shows them by the
    hundred (ix_audit_lot_id_id, backwards)."""
    rows = _audit(lot_id, before_id=before_id, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


def build(lot: Lot, *, audit: bool = True) -> dict:
    """The DHR of one lot as a JSON-ready dict (without its audit trail when ``audit`` is false:
    the CSV and the console's lot page, which shows it page by page, have no use for it)."""
    completions = _completion_rows(lot.id, measurements_if_pending=True)
    jobs = _labels(lot.id)
    by_completion: dict[int, list[dict]] = {}
    for j in jobs:
        if j.completion_id is not None:
            by_completion.setdefault(j.completion_id, []).append(
                {"id": j.id, "state": j.state, "template": j.template_name,
                 "unit_serial": j.unit_serial, "printer_reason": j.printer_reason})
    firmware = firmware_provenance(c.firmware_id for c in completions)
    by_step: dict[str, list] = {}
    for c in completions:
        by_step.setdefault(c.step, []).append(c)
    steps = []
    for step in sorted(lot.revision.steps, key=lambda s: s.seq):
        rows = []
        for c in by_step.get(step.code, ()):
            d = _completion_out(c, lot.lot_no)
            d["labels"] = by_completion.get(c.id, [])
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
    labels = [{"id": j.id, "state": j.state, "template": j.template_name,
               "template_version": j.template_version, "zpl_sha256": j.zpl_sha256,
               "printer": j.printer_uri, "copies": j.copies, "reason": j.reason,
               "reprint_reason": j.reprint_reason, "reprint_of": j.reprint_of,
               "unit_serial": j.unit_serial, "completion_id": j.completion_id,
               "attempts": j.attempts, "printer_reason": j.printer_reason, "error": j.error,
               "created_at": j.created_at.isoformat(), "sent_at": _iso(j.sent_at),
               "printed_at": _iso(j.printed_at)} for j in jobs]
    record = {"lot": lot_dict(lot) | {"serials": lot_serials(lot.id)},
              "steps": steps, "labels": labels}
    if audit:
        record["audit"] = _audit(lot.id)
    record["generated_at"] = utcnow().isoformat()
    return record


def to_json_bytes(record: dict) -> bytes:
    """The record as Flask's JSON would give it (the same JSON value; UTF-8, not \\u escapes)."""
    return to_json(record) + b"\n"


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
    lot, zone = record["lot"], plant_zone()
    for step in record["steps"]:
        for c in step["completions"]:
            base = [lot["lot_no"], lot["product"], step["step"], c["id"], c["status"],
                    c["unit_serial"] or "", c["station"], c["operator"],
                    shown(c["received_at"], zone=zone), shown(c["processed_at"], zone=zone)]
            tail = [";".join(r["code"] for r in c["reasons"]), c["firmware_version"] or "",
                    c["firmware_sha256"] or ""]
            for m in c["measurements"] or [None]:
                vals = ([m["name"], m["value"], m["unit"] or "", m["min"], m["max"], m["pass"]]
                        if m else ["", "", "", "", "", ""])
                w.writerow(base + ["" if v is None else v for v in vals] + tail)
    return out.getvalue()
