"""Firmware assignments: what each flashing station must hold, and its sha256 proof.

One assignment per firmware and station: ``pending -> delivered -> verified | failed``, ended as
``superseded`` (a newer release of the product was distributed) or ``revoked``. Every change is
audited. Creating them is ``firmware.distribute`` (in ``services.firmware``).
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ...extensions import db
from ...models import (LIVE_ASSIGNMENT_STATES, Firmware, FirmwareAssignment, Product,
                       RoutingRevision, Station, utcnow)
from ...problems import Conflict, NotFound
from ..audit import Actor, record
from ..stations import StationNotFound


class AssignmentNotFound(NotFound, LookupError):
    """The station (if it exists) has no firmware assignment with this id."""

    def __init__(self, code: str, assignment_id: int):
        super().__init__(f"station {code!r} has no firmware assignment {assignment_id}")


class AssignmentStateError(Conflict, ValueError):
    """The assignment is superseded or revoked: nothing may be acknowledged on it."""


def end_assignments(stmt, state: str, actor: Actor) -> int:
    """Move the live assignments selected by ``stmt`` to superseded / revoked; audited."""
    rows = list(db.session.scalars(stmt.where(
        FirmwareAssignment.state.in_(LIVE_ASSIGNMENT_STATES)).with_for_update(
        of=FirmwareAssignment)))
    now = utcnow()
    for a in rows:
        record(actor, f"firmware_assignment.{state}", "firmware_assignment", a.id,
               before={"state": a.state}, after={"state": state, "firmware_id": a.firmware_id,
                                                 "station_id": a.station_id})
        a.state, a.ended_at = state, now
    return len(rows)


def target_stations(product: Product) -> list[Station]:
    """Active stations serving a ``requires_firmware`` step of the product's current routing."""
    rev = db.session.scalar(select(RoutingRevision).where(
        RoutingRevision.product_id == product.id,
        RoutingRevision.revision == product.current_revision).options(
        selectinload(RoutingRevision.steps)))
    steps = {s.code for s in (rev.steps if rev else []) if s.requires_firmware}
    stations = db.session.scalars(select(Station).where(Station.active.is_(True))
                                  .order_by(Station.code))
    return [s for s in stations if steps & set(s.steps or [])]


def _station(code: str) -> Station:
    station = db.session.scalar(select(Station).where(Station.code == code))
    if station is None:
        raise StationNotFound(code)
    return station


def station_assignments(code: str) -> list[FirmwareAssignment]:
    """A station's live assignments of released firmware (what it must hold), newest first."""
    station = _station(code)
    return list(db.session.scalars(select(FirmwareAssignment).join(Firmware).where(
        FirmwareAssignment.station_id == station.id, Firmware.state == "released",
        FirmwareAssignment.state.in_(LIVE_ASSIGNMENT_STATES))
        .order_by(FirmwareAssignment.id.desc()).options(
        selectinload(FirmwareAssignment.firmware).selectinload(Firmware.product),
        selectinload(FirmwareAssignment.station))))


def mark_delivered(firmware_id: int, code: str, actor: Actor) -> None:
    """A station downloads its pending firmware: the assignment becomes ``delivered``."""
    a = db.session.scalar(select(FirmwareAssignment).join(Station).where(
        FirmwareAssignment.firmware_id == firmware_id, Station.code == code,
        FirmwareAssignment.state == "pending").with_for_update(of=FirmwareAssignment))
    if a is None:
        db.session.rollback()
        return
    a.state, a.delivered_at = "delivered", utcnow()
    record(actor, "firmware_assignment.delivered", "firmware_assignment", a.id,
           before={"state": "pending"}, after={"state": "delivered", "station": code})
    db.session.commit()


def ack(code: str, assignment_id: int, sha256: str, actor: Actor) -> FirmwareAssignment:
    """The station reports the sha256 of what it holds: ``verified`` if exact, else ``failed``."""
    station = db.session.scalar(select(Station).where(Station.code == code))
    a = station and db.session.scalar(select(FirmwareAssignment).where(
        FirmwareAssignment.id == assignment_id, FirmwareAssignment.station_id == station.id)
        .with_for_update().options(selectinload(FirmwareAssignment.firmware)))
    if a is None:
        db.session.rollback()
        raise AssignmentNotFound(code, assignment_id)
    if a.state not in LIVE_ASSIGNMENT_STATES:
        db.session.rollback()
        raise AssignmentStateError(f"assignment {assignment_id} is {a.state}")
    sha256 = sha256.lower()
    state = "verified" if sha256 == a.firmware.sha256 else "failed"
    if (a.state, a.acked_sha256) != (state, sha256):
        record(actor, f"firmware_assignment.{state}", "firmware_assignment", a.id,
               before={"state": a.state}, after={
                   "state": state, "station": code, "firmware_id": a.firmware_id,
                   "acked_sha256": sha256, "expected_sha256": a.firmware.sha256})
        a.state, a.acked_sha256, a.acked_at = state, sha256, utcnow()
    db.session.commit()
    return a


def iso(value) -> str | None:
    """A timestamp as ISO 8601, or None."""
    return value.isoformat() if value else None


def download_url(firmware_id: int, station: str | None = None) -> str:
    """Where a station downloads a firmware (the API answers 200 locally or 302 to S3)."""
    url = f"/api/v1/firmware/{firmware_id}/download"
    return f"{url}?station={station}" if station else url


def firmware_assignments(firmware_id: int) -> list[FirmwareAssignment]:
    """Every assignment of a firmware, by station code."""
    return list(db.session.scalars(select(FirmwareAssignment).join(Station).where(
        FirmwareAssignment.firmware_id == firmware_id).order_by(Station.code).options(
        selectinload(FirmwareAssignment.station), selectinload(FirmwareAssignment.firmware)
        .selectinload(Firmware.product))))


def assignment_dict(a: FirmwareAssignment) -> dict:
    """An assignment as a station (or an admin) sees it."""
    fw = a.firmware
    return {"id": a.id, "firmware_id": fw.id, "station": a.station.code,
            "product": fw.product.code, "version": fw.version, "sha256": fw.sha256,
            "size": fw.size, "state": a.state, "acked_sha256": a.acked_sha256,
            "created_at": a.created_at.isoformat(), "delivered_at": iso(a.delivered_at),
            "acked_at": iso(a.acked_at), "ended_at": iso(a.ended_at),
            "download_url": download_url(fw.id, a.station.code)}
