"""Firmware: streamed uploads, release and distribution to the flashing stations, revocation,
and the stations' proof (sha256 acknowledgement) that they hold the exact bytes.

Firmware ``draft -> released -> revoked``; a release whose stored object no longer hashes to the
recorded sha256 goes back to ``draft`` with ``release_error`` set. Assignments (one per firmware
and station) ``pending -> delivered -> verified | failed``; when a newer release of the product is
distributed the live ones become ``superseded``, and revoking the firmware makes them ``revoked``.
Release publishes ``firmware.distribute`` through the outbox; the task body is ``distribute``.
"""
from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from queues import queue_for
from storage import ObjectNotFound, StorageError

from ...extensions import db
from ...models import Firmware, FirmwareAssignment, Product, Station, utcnow
from ...problems import Conflict, FieldError, NotFound
from . import assignments
from ..audit import WORKER, Actor, record
from .incoming import HashingSpool, Incoming, TooLarge, measure  # noqa: F401 (API)
from ..outbox import done, enqueue
from ..plumbing import page
from ..products import UnknownProduct
from ..storage_sync import area_storage, hash_object

log = logging.getLogger(__name__)

DISTRIBUTE_TASK = "firmware.distribute"
DISTRIBUTE_QUEUE = queue_for(DISTRIBUTE_TASK)
# semver.org 2.0.0, the official regular expression.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


class VersionExists(Conflict, ValueError):
    """The product already has firmware with this version."""


class FirmwareNotFound(NotFound, LookupError):
    """No firmware has this id."""

    def __init__(self, firmware_id: int):
        super().__init__(f"unknown firmware {firmware_id}")


class FirmwareStateError(Conflict, ValueError):
    """The firmware's state does not allow this."""


class InvalidImage(FieldError, ValueError):
    """The upload is unusable (empty, checksum differs, bad version); ``field`` names why."""


def spool(limit: int | None) -> HashingSpool:
    """A ``HashingSpool`` in the firmware store's staging directory (or the temp dir)."""
    staging = _storage().staging_dir()  # None: a remote store, the spool is only a buffer
    return HashingSpool(limit, staging, sync_early=staging is not None)


def _storage():
    return area_storage("firmware")


def dedup_key(firmware_id: int) -> str:
    """The outbox key of a firmware's distribution message."""
    return f"firmware-release:{firmware_id}"


def safe_filename(filename: str | None) -> str:
    """A file name safe for storage keys and headers: [A-Za-z0-9._-], no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", (filename or "").rsplit("/", 1)[-1]).lstrip("._-")
    return name[-100:] or "firmware.bin"


def check_upload(product_code: str, version: str, incoming: Incoming,
                 expected_sha256: str | None) -> int:
    """Every check of an upload that needs no storage; returns the product id.

    Ends its (read) transaction: on SQLite every transaction holds the write lock, and none may
    be held while the bytes are stored.
    """
    try:
        product_id = db.session.scalar(select(Product.id).where(Product.code == product_code))
        if product_id is None:
            raise UnknownProduct(product_code)
        if not SEMVER.match(version) or len(version) > 64:
            raise InvalidImage("version", f"{version!r} is not a semantic version (e.g. 1.4.2)")
        if db.session.scalar(select(Firmware.id).where(Firmware.product_id == product_id,
                                                       Firmware.version == version)):
            raise VersionExists(f"{product_code} already has firmware {version}")
    finally:
        db.session.rollback()
    if incoming.size == 0:
        raise InvalidImage("file", "the firmware image is empty")
    if expected_sha256 and expected_sha256.lower() != incoming.sha256:
        raise InvalidImage("sha256", f"the uploaded bytes hash to {incoming.sha256}, "
                                     f"not {expected_sha256.lower()}")
    return product_id


def upload(product_code: str, version: str, incoming: Incoming, actor: Actor, *,
           expected_sha256: str | None = None, notes: str | None = None) -> Firmware:
    """Store a checked image under a fresh key and record it as ``draft``; audited.

    Every check runs before a byte is stored; the object is written atomically by the adapter
    and removed again if the database refuses the row, so no orphan or partial object remains.
    """
    session = db.session
    product_id = check_upload(product_code, version, incoming, expected_sha256)
    store = _storage()
    key = f"{product_code}/{version}/{secrets.token_hex(4)}-{safe_filename(incoming.filename)}"
    if incoming.adoptable:  # our own spool: renamed into place (local) or sent as it is
        info = store.adopt(incoming.path, key, incoming.sha256)
    elif incoming.path:
        info = store.upload(incoming.path, key)
    else:
        info = store.put(key, incoming.stream)
    try:
        if (info.size, info.sha256) != (incoming.size, incoming.sha256):
            raise StorageError(f"the image changed while it was stored ({info.sha256})")
        fw = Firmware(product_id=product_id, version=version, storage_key=key,
                      filename=safe_filename(incoming.filename), sha256=incoming.sha256,
                      size=incoming.size, notes=notes, state="draft", created_by=actor.name)
        session.add(fw)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            raise VersionExists(f"{product_code} already has firmware {version}") from None
        record(actor, "firmware.uploaded", "firmware", fw.id, after={
            "product": product_code, "version": version, "sha256": fw.sha256, "size": fw.size,
            "storage_key": key})
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(key)
        raise
    return fw


def get_firmware(firmware_id: int, *, for_update: bool = False) -> Firmware:
    """The firmware with this id (its product loaded)."""
    stmt = select(Firmware).where(Firmware.id == firmware_id).options(
        selectinload(Firmware.product)).execution_options(populate_existing=True)
    fw = db.session.scalar(stmt.with_for_update(of=Firmware) if for_update else stmt)
    if fw is None:
        raise FirmwareNotFound(firmware_id)
    return fw


def by_storage_key(key: str) -> Firmware | None:
    """The firmware stored under this key, if any."""
    return db.session.scalar(select(Firmware).where(Firmware.storage_key == key))


def list_firmware(product: str | None, state: str | None, cursor: str | None, limit: int):
    """A page of firmware filtered by product code and state, newest first."""
    stmt = select(Firmware).options(selectinload(Firmware.product))
    if product:
        stmt = stmt.join(Product, Product.id == Firmware.product_id).where(Product.code == product)
    if state:
        stmt = stmt.where(Firmware.state == state)
    return page(db.session, stmt, Firmware.id, cursor, limit)


def release(firmware_id: int, actor: Actor) -> Firmware:
    """Release (or release again) a firmware: the io worker distributes it; audited."""
    fw = get_firmware(firmware_id, for_update=True)
    if fw.state == "revoked":
        db.session.rollback()
        raise FirmwareStateError(f"firmware {firmware_id} is revoked and cannot be released")
    before = {"state": fw.state}
    fw.state, fw.released_at, fw.released_by = "released", utcnow(), actor.name
    fw.release_error = fw.distributed_at = None
    done([dedup_key(fw.id)])  # a still-pending earlier message is replaced by this one
    enqueue(DISTRIBUTE_TASK, [fw.id], DISTRIBUTE_QUEUE, dedup_key(fw.id))
    record(actor, "firmware.released", "firmware", fw.id, before=before, after={
        "state": "released", "product": fw.product.code, "version": fw.version,
        "sha256": fw.sha256})
    db.session.commit()
    return fw


def revoke(firmware_id: int, reason: str, actor: Actor) -> Firmware:
    """Revoke a firmware: it can no longer be released, downloaded by stations or flashed."""
    fw = get_firmware(firmware_id, for_update=True)
    if fw.state == "revoked":
        db.session.rollback()
        raise FirmwareStateError(f"firmware {firmware_id} is already revoked")
    before = {"state": fw.state}
    fw.state, fw.revoked_at, fw.revoked_by, fw.revoke_reason = "revoked", utcnow(), \
        actor.name, reason
    ended = assignments.end_assignments(select(FirmwareAssignment).where(
        FirmwareAssignment.firmware_id == fw.id), "revoked", actor)
    done([dedup_key(fw.id)])
    record(actor, "firmware.revoked", "firmware", fw.id, before=before, after={
        "state": "revoked", "reason": reason, "assignments_revoked": ended})
    db.session.commit()
    return fw


def _fail_release(fw: Firmware, error: str) -> None:
    """The release did not go out: back to draft, the error recorded and audited."""
    log.error("firmware %s (%s %s) release failed: %s", fw.id, fw.product.code, fw.version, error)
    before = {"state": fw.state, "released_at": fw.released_at.isoformat()}
    fw.state, fw.release_error = "draft", error[:2000]
    fw.released_at = fw.released_by = None
    record(WORKER, "firmware.release_failed", "firmware", fw.id, before=before,
           after={"state": "draft", "error": error[:500]})


def distribute(firmware_id: int) -> str:
    """Check the stored bytes again and assign a released firmware to its stations.

    The object is re-read and hashed outside any transaction; then, under the firmware and
    product row locks, the release must still be the same one and the newest of its product.
    Redeliveries and duplicate messages change nothing.
    """
    session = db.session
    fw = session.get(Firmware, firmware_id)
    if fw is None or fw.state != "released" or fw.distributed_at is not None:
        done([dedup_key(firmware_id)])
        session.commit()
        return "skipped"
    released_at, key, expected = fw.released_at, fw.storage_key, (fw.size, fw.sha256)
    session.rollback()
    problem = _stored_problem(key, expected)
    fw = get_firmware(firmware_id, for_update=True)
    if fw.state != "released" or fw.released_at != released_at or fw.distributed_at:
        session.commit()  # revoked, released again or done meanwhile: nothing left to do here
        return "skipped"
    if problem:
        _fail_release(fw, problem)
        done([dedup_key(fw.id)])
        session.commit()
        return "failed"
    product = session.scalar(select(Product).where(Product.id == fw.product_id)
                             .with_for_update())
    if _newest_release(product) != fw.id:  # a later release of the product overtook this one
        done([dedup_key(fw.id)])
        session.commit()
        return "skipped"
    stations = assignments.target_stations(product)
    now = _assign_pending(fw, stations)
    superseded = assignments.end_assignments(select(FirmwareAssignment).join(Firmware).where(
        Firmware.product_id == product.id,
        (FirmwareAssignment.firmware_id != fw.id)
        | FirmwareAssignment.station_id.not_in([s.id for s in stations])), "superseded", WORKER)
    fw.distributed_at = now
    record(WORKER, "firmware.distributed", "firmware", fw.id, after={
        "stations": [s.code for s in stations], "superseded": superseded})
    done([dedup_key(fw.id)])
    session.commit()
    return f"distributed to {len(stations)} stations"


def _stored_problem(key: str, expected: tuple[int, str]) -> str | None:
    """Why the stored object is not the uploaded one (re-read and hashed), or None if it is."""
    try:
        got = hash_object(_storage(), key)  # other StorageErrors are transient: the task retries
    except ObjectNotFound:
        return f"the stored object {key!r} is missing"
    if got == expected:
        return None
    return (f"the stored object hashes to {got[1]} ({got[0]} bytes) but the upload was "
            f"{expected[1]} ({expected[0]} bytes)")


def _newest_release(product: Product) -> int | None:
    """The id of the product's most recently released firmware."""
    return db.session.scalar(select(Firmware.id).where(
        Firmware.product_id == product.id, Firmware.state == "released")
        .order_by(Firmware.released_at.desc(), Firmware.id.desc()).limit(1))


def _assign_pending(fw: Firmware, stations: list[Station]) -> datetime:
    """A ``pending`` assignment of ``fw`` per station without one (a superseded one renewed).

    Returns the time stamped on them, which the distribution records as its own.
    """
    session = db.session
    mine = {a.station_id: a for a in session.scalars(select(FirmwareAssignment).where(
        FirmwareAssignment.firmware_id == fw.id).with_for_update())}
    now = utcnow()
    for st in stations:
        a = mine.get(st.id)
        if a is None:
            a = FirmwareAssignment(firmware_id=fw.id, station_id=st.id, state="pending",
                                   created_at=now)
            session.add(a)
            session.flush()
        elif a.state == "superseded":  # released again: the station must prove it again
            a.state, a.acked_sha256 = "pending", None
            a.created_at, a.delivered_at, a.acked_at, a.ended_at = now, None, None, None
        else:
            continue
        record(WORKER, "firmware_assignment.pending", "firmware_assignment", a.id,
               after={"state": "pending", "firmware_id": fw.id, "station": st.code})
    return now


def fail_release(firmware_id: int, error: str) -> None:
    """Record a distribution that cannot complete (e.g. storage unreachable after retries)."""
    fw = get_firmware(firmware_id, for_update=True)
    if fw.state == "released" and fw.distributed_at is None:
        _fail_release(fw, error)
        done([dedup_key(fw.id)])
    db.session.commit()


def provenance(firmware_ids) -> dict[int, dict]:
    """What the DHR shows of the firmware completions flashed, by id."""
    ids = {i for i in firmware_ids if i}
    rows = db.session.scalars(select(Firmware).where(Firmware.id.in_(ids))) if ids else []
    return {fw.id: {"id": fw.id, "version": fw.version, "sha256": fw.sha256, "size": fw.size,
                    "storage_key": fw.storage_key, "state": fw.state} for fw in rows}


def firmware_dict(fw: Firmware, rows: list[FirmwareAssignment] | None = None) -> dict:
    """A firmware as the API shows it (with its assignments when given)."""
    out = {"id": fw.id, "product": fw.product.code, "version": fw.version, "state": fw.state,
           "sha256": fw.sha256, "size": fw.size, "filename": fw.filename,
           "storage_key": fw.storage_key, "notes": fw.notes, "release_error": fw.release_error,
           "created_by": fw.created_by, "created_at": fw.created_at.isoformat(),
           "released_by": fw.released_by, "released_at": assignments.iso(fw.released_at),
           "distributed_at": assignments.iso(fw.distributed_at), "revoked_by": fw.revoked_by,
           "revoked_at": assignments.iso(fw.revoked_at), "revoke_reason": fw.revoke_reason,
           "download_url": assignments.download_url(fw.id)}
    if rows is not None:
        out["assignments"] = [assignments.assignment_dict(a) for a in rows]
    return out
