"""Validating a received completion and moving its lot: the worker's half of the hot path.

Every caller locks the lot row first, then processes all of that lot's still-`received`
completions in arrival order, in one transaction (a backlog in several). So completions of one
lot are judged in the order they arrived even when two worker processes pick them up at once,
and a redelivered or republished message finds its completion already decided and does nothing.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sqlalchemy import and_, select, text
from sqlalchemy.orm import joinedload

from ...extensions import db
from ...logs import current_request_id, request_id_bound
from ...metrics import instruments as metrics
from ...models import (AuditEvent, Completion, Firmware, FirmwareAssignment, Lot, LotUnit, Printer,
                       RoutingStep, Station, utcnow)
from ..audit import WORKER, record
from ..labels.templates import Profile
from . import message_key
from ..labels import JobBatch, jobs_for_completion
from ..outbox import batched, done

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A routing step as the worker needs it (revisions never change, so it can be cached)."""

    code: str
    seq: int
    measurements: list
    requires_firmware: bool
    label_template: str | None


_STEPS: dict[int, tuple[StepSpec, ...]] = {}
# A literal, not a bound parameter: a prepared statement's generic plan can then still use the
# partial index ix_completions_pending (WHERE status = 'received').
PENDING = text("completions.status = 'received'")


def revision_steps(revision_id: int) -> tuple[StepSpec, ...]:
    """A routing revision's steps in order, read once per worker process."""
    steps = _STEPS.get(revision_id)
    if steps is None:
        steps = _STEPS[revision_id] = tuple(
            StepSpec(s.code, s.seq, list(s.measurements or []), s.requires_firmware,
                     s.label_template)
            for s in db.session.scalars(select(RoutingStep).where(
                RoutingStep.revision_id == revision_id).order_by(RoutingStep.seq)))
    return steps


MAX_BATCH = 500  # completions decided per transaction (a backlog goes in several)


def process_completion(completion_id: int, lot_id: int | None = None) -> str | None:
    """Decide the completion and every other pending one of its lot; returns its status.

    The lot's pending completions go in arrival order, also those that arrived after this
    message was published (the relay holds a lot's new messages while one is in flight, so
    they are this task's to take), in transactions of at most ``MAX_BATCH``.
    """
    session = db.session
    if lot_id is None:
        lot_id = session.scalar(select(Completion.lot_id).where(Completion.id == completion_id))
        if lot_id is None:
            session.rollback()
            log.warning("completion %s does not exist; nothing to do", completion_id)
            return None
    status = None
    while status is None:  # a full batch may have left this one for the next transaction
        decided, full = _decide_batch(lot_id)
        status = decided.get(completion_id)
        if not full:
            break
    if status is None:  # decided earlier (redelivery, republish) or another lot's completion
        status = session.scalar(select(Completion.status).where(Completion.id == completion_id))
        done([message_key(completion_id)])
        session.commit()
    return status


def decide_singly(completion_id: int, lot_id: int | None,
                  reraise: tuple[type[BaseException], ...] = ()) -> str | None:
    """After a batch of the lot failed: decide its pending completions one per transaction.

    Only a completion whose own decision raises is marked failed, not the batch's others (nor
    the one the message named, when another is the poison). Exceptions in ``reraise`` (time
    limits, a lost database) are not a completion's fault and propagate.
    """
    session = db.session
    session.rollback()
    if lot_id is None:
        lot_id = session.scalar(select(Completion.lot_id).where(Completion.id == completion_id))
    for _ in range(MAX_BATCH if lot_id is not None else 0):
        try:
            decided, _full = _decide_batch(lot_id, limit=1)
        except reraise:
            raise
        except Exception as exc:
            session.rollback()
            oldest = session.scalar(select(Completion.id).where(
                Completion.lot_id == lot_id, PENDING).order_by(Completion.id).limit(1))
            if oldest is None:
                break
            log.exception("completion %s cannot be processed", oldest)
            mark_failed(oldest, f"{type(exc).__name__}: {exc}")
            continue
        if not decided:
            break
    status = session.scalar(select(Completion.status).where(Completion.id == completion_id))
    session.commit()
    return status


def _decide_batch(lot_id: int, limit: int | None = None) -> tuple[dict[int, str], bool]:
    """One transaction: the lot's oldest pending completions; (their statuses, batch full)."""
    session = db.session
    limit = limit or MAX_BATCH
    # FOR NO KEY UPDATE: workers take turns on the lot, but new completions' foreign-key
    # checks against it (the hot POST path) are not blocked.
    # The product comes in the same round trip: labels need its code and name.
    lot = session.scalar(select(Lot).options(joinedload(Lot.product, innerjoin=True))
                         .where(Lot.id == lot_id).with_for_update(key_share=True, of=Lot))
    pending = list(session.scalars(
        select(Completion).where(Completion.lot_id == lot_id, PENDING)
        .order_by(Completion.id).limit(limit).with_for_update()))
    if not pending:  # already decided (redelivery, republish, or an earlier batch took it)
        session.rollback()
        return {}, False
    # Their messages go with this transaction's effect; deleted now, before anything is dirty,
    # the DELETE costs no extra flush. Each was posted under its own request id.
    deleted, current = done([message_key(c.id) for c in pending]), current_request_id()
    rids = {c.id: deleted.get(message_key(c.id)) or current for c in pending}
    steps = revision_steps(lot.routing_revision_id)
    stations = _stations({c.station_id for c in pending})
    units = _Units(lot, pending)
    jobs = JobBatch()
    # Decisions are written in one flush at the end, not before every query in the loop; the
    # reads in the loop that depend on earlier decisions of the batch account for them. The
    # batch's audit events and outbox messages go in as one INSERT each.
    with batched(AuditEvent):
        with session.no_autoflush:
            for c in pending:
                station, profile = stations[c.station_id]
                with request_id_bound(rids[c.id]):  # its label jobs' messages carry it on
                    _decide(c, lot, station, profile, steps, units, jobs)
        jobs.queue()
    decided = {c.id: c.status for c in pending}
    outcomes = _outcomes(pending)  # read before the commit expires the objects
    session.commit()
    for cid, status in decided.items():
        log.info("completion %s decided: %s", cid, status, extra={"request_id": rids[cid]})
    metrics.completions_decided(outcomes)  # counted once committed, never for a rolled-back try
    return decided, len(pending) == limit


def _outcomes(pending: list[Completion]) -> list[tuple[str, str, str, float]]:
    """(step, result, first reason code, received at) of each decided completion, for metrics."""
    if not metrics.enabled():
        return []
    return [(c.step, c.status, c.reasons[0]["code"] if c.reasons else "",
             c.received_at.timestamp()) for c in pending]


def _stations(ids: set[int]) -> dict[int, tuple[Station, Profile]]:
    """The completing stations with their printer's profile, in one query."""
    rows = db.session.execute(
        select(Station, Printer.dpi, Printer.width_dots, Printer.length_dots, Printer.darkness)
        .outerjoin(Printer, Printer.uri == Station.printer_key).where(Station.id.in_(ids))).all()
    return {st.id: (st, Profile() if dpi is None else Profile(dpi, width, length, darkness))
            for st, dpi, width, length, darkness in rows}


def _reason(code: str, detail: str) -> dict:
    return {"code": code, "detail": detail}


def judge_measurements(specs: list[dict], values: dict) -> tuple[list[dict], list[dict]]:
    """Judge values against the step's specs; returns (results, reasons). The server decides."""
    results, reasons = [], []
    for spec in specs:
        name, lo, hi = spec["name"], spec.get("min"), spec.get("max")
        value = values.get(name)
        if value is None:
            if spec.get("required", True):
                reasons.append(_reason("measurement_missing", f"{name} is required"))
            results.append({"name": name, "value": None, "unit": spec.get("unit", ""),
                            "min": lo, "max": hi, "pass": False if spec.get("required", True)
                            else None})
            continue
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and (lo is None or value >= lo)
              and (hi is None or value <= hi))
        if not ok:
            reasons.append(_reason("out_of_spec", f"{name}={value} outside "
                                   f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
                                   f" {spec.get('unit', '')}".rstrip()))
        results.append({"name": name, "value": value, "unit": spec.get("unit", ""), "min": lo,
                        "max": hi, "pass": ok})
    known = {s["name"] for s in specs}
    for name in sorted(set(values) - known):  # kept in the record, judged by no spec
        results.append({"name": name, "value": values[name], "unit": None, "min": None,
                        "max": None, "pass": None})
    return results, reasons


def check_firmware(step, c: Completion, lot: Lot, station: Station
                   ) -> tuple[list[dict], Firmware | None]:
    """Firmware rule for steps that flash devices; returns (reasons, the firmware to record).

    The firmware must be released for the lot's product and verified (sha256 acknowledged) on
    the completing station; a sha256 the station sends must be that firmware's. The row locks
    (shared) order this decision against a concurrent revoke or acknowledgement.
    """
    if not step.requires_firmware:
        return [], None
    if not c.firmware_version:
        return [_reason("firmware_required", f"step {step.code} requires firmware_version")], None
    fw = db.session.scalar(select(Firmware).where(
        Firmware.product_id == lot.product_id, Firmware.version == c.firmware_version)
        .with_for_update(read=True))
    if fw is None or fw.state != "released":
        state = "unknown for this product" if fw is None else fw.state
        return [_reason("firmware_not_released",
                        f"firmware {c.firmware_version!r} is {state}, not released")], None
    reasons = []
    if c.firmware_sha256 and c.firmware_sha256 != fw.sha256:
        reasons.append(_reason("firmware_mismatch", f"sha256 {c.firmware_sha256} is not "
                               f"firmware {fw.version}'s {fw.sha256}"))
    verified = db.session.scalar(select(FirmwareAssignment.id).where(
        FirmwareAssignment.firmware_id == fw.id, FirmwareAssignment.station_id == station.id,
        FirmwareAssignment.state == "verified").with_for_update(read=True))
    if verified is None:
        reasons.append(_reason("firmware_not_verified", f"station {station.code} has no "
                               f"verified copy of firmware {fw.version}"))
    return reasons, fw


def _quantities(c: Completion, lot: Lot, reasons: list[dict]) -> tuple[int, int]:
    remaining = lot.qty_good - lot.step_passed
    if c.unit_serial:
        good = 1 if c.qty_good is None else c.qty_good
        scrap = 0 if c.qty_scrap is None else c.qty_scrap
        if good + scrap != 1:
            reasons.append(_reason("quantity_exceeds_lot",
                                   "a unit completion counts exactly one unit"))
    else:
        scrap = c.qty_scrap or 0
        good = remaining - scrap if c.qty_good is None else c.qty_good
    if good < 0 or good + scrap == 0 or good + scrap > remaining:
        reasons.append(_reason("quantity_exceeds_lot",
                               f"good {good} + scrap {scrap} but {remaining} remain at this step"))
    return good, scrap


class _Units:
    """The batch's unit serials, read in one query: the unit and the steps it already passed."""

    def __init__(self, lot: Lot, pending: list[Completion]):
        self.lot = lot
        serials = {c.unit_serial for c in pending if c.unit_serial}
        self.units: dict[str, LotUnit] = {}
        self.passed: set[tuple[str, str]] = set()
        if not serials:
            return
        # One round trip: each unit, joined to the steps it has already passed in this lot.
        rows = db.session.execute(
            select(LotUnit, Completion.step).outerjoin(Completion, and_(
                Completion.unit_serial == LotUnit.serial, Completion.lot_id == lot.id,
                Completion.status == "accepted")).where(LotUnit.serial.in_(serials))).all()
        for unit, step in rows:
            self.units[unit.serial] = unit
            if step is not None:
                self.passed.add((unit.serial, step))

    def check(self, c: Completion, reasons: list[dict]) -> LotUnit | None:
        """The completion's unit, adding the reasons it cannot count."""
        if not c.unit_serial:
            return None
        unit = self.units.get(c.unit_serial)
        if unit is None or unit.lot_id != self.lot.id:
            reasons.append(_reason("unknown_unit", f"unit {c.unit_serial!r} is not in this lot"))
            return None
        if unit.status != "ok":
            reasons.append(_reason("unit_scrapped", f"unit {c.unit_serial!r} was scrapped"))
        if (c.unit_serial, c.step) in self.passed:
            reasons.append(_reason("unit_already_completed",
                                   f"unit {c.unit_serial!r} already passed {c.step}"))
        return unit

    def accepted(self, c: Completion) -> None:
        """A completion of the batch was accepted: its unit has now passed its step."""
        if c.unit_serial:
            self.passed.add((c.unit_serial, c.step))


def _decide(c: Completion, lot: Lot, station: Station, profile: Profile,
            ordered: tuple[StepSpec, ...], units: _Units, jobs: JobBatch) -> None:
    """Judge one completion and apply its effect to the locked lot."""
    steps = {s.code: s for s in ordered}
    step = steps[c.step]
    reasons: list[dict] = []
    results, measurement_reasons = judge_measurements(step.measurements or [], c.measurements)
    if lot.status not in ("created", "in_process"):
        reasons.append(_reason("lot_not_active", f"lot is {lot.status}"))
    elif c.step != lot.current_step:
        reasons.append(_reason("wrong_step", f"lot is at {lot.current_step}, not {c.step}"))
    if c.step not in (station.steps or []):
        reasons.append(_reason("station_not_for_step",
                               f"station {station.code} does not serve {c.step}"))
    unit = units.check(c, reasons)
    reasons.extend(measurement_reasons)
    firmware_reasons, firmware = check_firmware(step, c, lot, station)
    reasons.extend(firmware_reasons)
    good = scrap = 0
    if not any(r["code"] in ("lot_not_active", "wrong_step") for r in reasons):
        good, scrap = _quantities(c, lot, reasons)  # remaining counts only at the lot's step
    c.results = results
    c.processed_at = utcnow()
    c.reasons = reasons
    if reasons:
        c.status = "rejected"
        record(WORKER, "completion.rejected", "completion", c.id, lot_id=lot.id,
               after={"reasons": [r["code"] for r in reasons]})
        if any(r["code"] == "out_of_spec" for r in reasons) and lot.status in ("created",
                                                                              "in_process"):
            before = {"status": lot.status, "step": lot.current_step}
            lot.status, lot.hold_reason = "on_hold", f"out_of_spec in completion {c.id}"
            record(WORKER, "lot.hold", "lot", lot.lot_no, lot_id=lot.id, before=before,
                   after={"status": "on_hold", "step": lot.current_step,
                          "reason": lot.hold_reason})
        return
    c.status = "accepted"
    if firmware is not None:  # the exact bytes flashed: the server's record, not the client's
        c.firmware_id, c.firmware_sha256 = firmware.id, firmware.sha256
    record(WORKER, "completion.accepted", "completion", c.id, lot_id=lot.id,
           after={"step": c.step, "qty_good": good, "qty_scrap": scrap})
    units.accepted(c)
    # Before _advance: the labels show the units as they passed.
    jobs_for_completion(c, lot, station, step, good, profile, jobs,
                        routing=tuple(s.code for s in ordered))
    _advance(lot, good, scrap, unit, ordered)


def _advance(lot: Lot, good: int, scrap: int, unit: LotUnit | None,
             ordered: tuple[StepSpec, ...]) -> None:
    """Count the completion into the lot; move to the next step when every unit has passed."""
    before = {"status": lot.status, "step": lot.current_step, "qty_good": lot.qty_good}
    lot.status = "in_process"
    lot.qty_good -= scrap
    lot.step_passed += good
    if unit is not None and scrap:
        unit.status = "scrapped"
    if lot.qty_good == 0:
        lot.status, lot.current_step = "scrapped", None
        action = "lot.scrapped"
    elif lot.step_passed >= lot.qty_good:
        nxt = next((s for s in ordered if s.seq > lot.current_seq), None)
        lot.step_passed = 0
        if nxt is None:
            lot.status, lot.current_seq, lot.current_step = "completed", None, None
            action = "lot.completed"
        else:
            lot.current_seq, lot.current_step = nxt.seq, nxt.code
            action = "lot.advanced"
    else:
        if before["status"] != lot.status:
            record(WORKER, "lot.started", "lot", lot.lot_no, lot_id=lot.id, before=before,
                   after={"status": lot.status, "step": lot.current_step})
        return
    record(WORKER, action, "lot", lot.lot_no, lot_id=lot.id, before=before,
           after={"status": lot.status, "step": lot.current_step, "qty_good": lot.qty_good})


def mark_failed(completion_id: int, error: str) -> None:
    """Record a completion that cannot be processed (a poison message) instead of looping."""
    session = db.session
    session.rollback()
    c = session.get(Completion, completion_id, with_for_update=True)
    outcomes = []
    if c is not None and c.status == "received":
        c.status, c.error, c.processed_at = "failed", error[:2000], utcnow()
        record(WORKER, "completion.failed", "completion", c.id, lot_id=c.lot_id,
               after={"error": error[:200]})
        done([message_key(c.id)])
        outcomes = [(c.step, "failed", "error", c.received_at.timestamp())]
    session.commit()
    metrics.completions_decided(outcomes)
