"""Receiving process completions: the hot path.

On PostgreSQL one statement does everything in one round trip: it claims the Idempotency-Key
(an advisory lock detects a concurrent retry still in flight), resolves the lot, station and
step, and inserts the completion, its outbox message and its audit row. On the embedded SQLite
database the same steps run as one short write transaction.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Completion, Lot, RoutingStep, Station
from .audit import Actor, record
from .outbox import COMPLETION_QUEUE, COMPLETION_TASK, enqueue


# Advisory-lock namespace (first int of the two-int form) for in-flight Idempotency-Keys.
IDEMPOTENCY_LOCK_NS = 7301


class InFlight(RuntimeError):
    """A request with the same Idempotency-Key is being processed right now."""


class KeyReused(ValueError):
    """The Idempotency-Key was used before with a different request."""


class UnknownReference(LookupError):
    """A code in the request (lot, station, step) does not exist."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class CompletionNotFound(LookupError):
    """No completion has this id."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer to a submission: the completion id, and whether it is a replay."""

    id: int
    replayed: bool


def request_hash(actor_id: int | None, body: dict) -> str:
    """Fingerprint of who sent what: same key + different fingerprint = key reuse."""
    canon = json.dumps([actor_id, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


# psycopg placeholders: the statement goes to the driver as it is (see submit).
_PG_SUBMIT = """
WITH lk AS (SELECT pg_try_advisory_xact_lock(%(lock_ns)s, hashtext(%(key)s)) AS ok),
prev AS (SELECT id, request_hash FROM completions WHERE idempotency_key = %(key)s),
l AS (SELECT id, routing_revision_id FROM lots WHERE lot_no = %(lot_no)s),
s AS (SELECT id FROM stations WHERE code = %(station)s AND active),
st AS (SELECT rs.id FROM routing_steps rs JOIN l ON rs.revision_id = l.routing_revision_id
       WHERE rs.code = %(step)s),
ins AS (
  INSERT INTO completions (idempotency_key, request_hash, lot_id, step, station_id, operator_id,
      unit_serial, measurements, firmware_version, firmware_sha256, qty_good, qty_scrap,
      status, reasons, received_at)
  SELECT %(key)s, %(hash)s, l.id, %(step)s, s.id, %(op)s, %(unit)s, CAST(%(meas)s AS jsonb),
      %(fw)s, %(fwsha)s, %(good)s, %(scrap)s, 'received', '[]'::jsonb, now()
  FROM lk, l, s, st
  WHERE lk.ok AND NOT EXISTS (SELECT 1 FROM prev)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id, lot_id),
ob AS (
  INSERT INTO outbox_messages (task, args, queue, dedup_key, created_at, available_at, attempts)
  SELECT %(task)s, jsonb_build_array(ins.id, ins.lot_id), %(queue)s, 'completion:' || ins.id,
      now(), now(), 0
  FROM ins),
au AS (
  INSERT INTO audit_events (at, actor_id, actor, action, entity_type, entity_id, lot_id, after,
      request_id)
  SELECT now(), %(op)s, %(actor)s, 'completion.received', 'completion', ins.id::text, ins.lot_id,
      jsonb_build_object('lot_no', CAST(%(lot_no)s AS text), 'step', CAST(%(step)s AS text),
                         'station', CAST(%(station)s AS text)), %(rid)s
  FROM ins)
SELECT (SELECT ok FROM lk) AS ok, (SELECT id FROM prev) AS prev_id,
       (SELECT request_hash FROM prev) AS prev_hash, (SELECT id FROM l) AS lot_id,
       (SELECT id FROM s) AS station_id, (SELECT id FROM st) AS step_id,
       (SELECT id FROM ins) AS new_id
"""



def _execute_raw(conn, sql: str, params: dict):
    """One row from a fixed statement run by psycopg itself, errors handled as SQLAlchemy does.

    The statement never changes, so SQLAlchemy's compile and result layers only cost CPU on the
    hot path (about a fifth of the request); psycopg still caches and prepares it.
    """
    try:
        with conn.connection.driver_connection.cursor(row_factory=namedtuple_row) as cur:
            return cur.execute(sql, params).fetchone()
    except psycopg.Error as exc:
        dead = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if dead:
            # The pool must not hand this one out again; the pool's other connections are
            # pinged at checkout (pool_pre_ping), so a dead one is replaced before it is used.
            conn.invalidate(exc)
        # The same exception types as conn.execute: the API maps OperationalError to a 503.
        raise DBAPIError.instance(sql, params, exc, psycopg.Error,
                                  connection_invalidated=dead) from exc


def _check_refs(lot_id, station_id, step_id, body: dict) -> None:
    if lot_id is None:
        raise UnknownReference("lot_no", f"unknown lot {body['lot_no']!r}")
    if station_id is None:
        raise UnknownReference("station", f"unknown or inactive station {body['station']!r}")
    if step_id is None:
        raise UnknownReference("step", f"step {body['step']!r} is not in this lot's routing")


def _replay(prev_id: int, prev_hash: str, digest: str) -> Receipt:
    if prev_hash != digest:
        raise KeyReused("this Idempotency-Key was already used with a different request")
    return Receipt(prev_id, True)


def _previous(key: str):
    return db.session.execute(select(Completion.id, Completion.request_hash).where(
        Completion.idempotency_key == key)).first()


def submit(body: dict, key: str, actor: Actor) -> Receipt:
    """Store a completion (`received`) and its outbox message atomically; idempotent per key."""
    digest = request_hash(actor.id, body)
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return _submit_generic(body, key, digest, actor)
    params = {"key": key, "hash": digest, "lot_no": body["lot_no"], "station": body["station"],
              "step": body["step"], "op": actor.id, "actor": actor.name,
              "unit": body.get("unit_serial"), "meas": json.dumps(body.get("measurements") or {}),
              "fw": body.get("firmware_version"), "fwsha": body.get("firmware_sha256"),
              "good": body.get("qty_good"), "scrap": body.get("qty_scrap"),
              "task": COMPLETION_TASK, "queue": COMPLETION_QUEUE, "rid": actor.request_id,
              "lock_ns": IDEMPOTENCY_LOCK_NS}
    # Autocommit: the single statement is its own transaction, so no BEGIN/COMMIT round trips.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = _execute_raw(conn, _PG_SUBMIT, params)
    if not row.ok:
        raise InFlight("a request with this Idempotency-Key is still being processed")
    if row.prev_id is not None:
        return _replay(row.prev_id, row.prev_hash, digest)
    _check_refs(row.lot_id, row.station_id, row.step_id, body)
    if row.new_id is None:
        # The first request committed between our snapshot and our insert: replay it.
        prev = _previous(key)
        db.session.rollback()
        return _replay(prev.id, prev.request_hash, digest)
    return Receipt(row.new_id, False)


def _submit_generic(body: dict, key: str, digest: str, actor: Actor) -> Receipt:
    """The same contract as the PostgreSQL statement, as one write transaction (SQLite)."""
    session = db.session
    prev = _previous(key)
    if prev is not None:
        session.rollback()
        return _replay(prev.id, prev.request_hash, digest)
    lot = session.scalar(select(Lot).where(Lot.lot_no == body["lot_no"]))
    station = session.scalar(select(Station).where(Station.code == body["station"],
                                                   Station.active.is_(True)))
    step_id = lot and session.scalar(select(RoutingStep.id).where(
        RoutingStep.revision_id == lot.routing_revision_id, RoutingStep.code == body["step"]))
    try:
        _check_refs(lot and lot.id, station and station.id, step_id, body)
    except UnknownReference:
        session.rollback()
        raise
    completion = Completion(
        idempotency_key=key, request_hash=digest, lot_id=lot.id, step=body["step"],
        station_id=station.id, operator_id=actor.id, unit_serial=body.get("unit_serial"),
        measurements=body.get("measurements") or {}, firmware_version=body.get("firmware_version"),
        firmware_sha256=body.get("firmware_sha256"), qty_good=body.get("qty_good"),
        qty_scrap=body.get("qty_scrap"), status="received", reasons=[])
    session.add(completion)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        prev = _previous(key)
        session.rollback()
        return _replay(prev.id, prev.request_hash, digest)
    enqueue(COMPLETION_TASK, [completion.id, lot.id], COMPLETION_QUEUE,
            f"completion:{completion.id}")
    record(actor, "completion.received", "completion", completion.id, lot_id=lot.id,
           after={"lot_no": body["lot_no"], "step": body["step"], "station": body["station"]})
    session.commit()
    return Receipt(completion.id, False)


def get_completion(completion_id: int) -> Completion:
    """The completion with this id, with lot, station and operator loaded."""
    c = db.session.scalar(select(Completion).where(Completion.id == completion_id).options(
        selectinload(Completion.lot), selectinload(Completion.station),
        selectinload(Completion.operator)))
    if c is None:
        raise CompletionNotFound(completion_id)
    return c


def completion_labels(completion_id: int) -> list:
    """The label jobs a completion produced."""
    from ..models import LabelJob
    return list(db.session.scalars(select(LabelJob).where(
        LabelJob.completion_id == completion_id).order_by(LabelJob.id)))


def completion_dict(c: Completion, labels: list | None = None) -> dict:
    """A completion as the API shows it (with its label jobs when given)."""
    out = {"id": c.id, "status": c.status, "reasons": c.reasons or [], "lot_no": c.lot.lot_no,
            "step": c.step, "station": c.station.code, "operator": c.operator.username,
            "unit_serial": c.unit_serial, "measurements": c.measurements,
            "results": c.results, "firmware_version": c.firmware_version,
            "firmware_sha256": c.firmware_sha256, "qty_good": c.qty_good,
            "qty_scrap": c.qty_scrap, "error": c.error,
            "received_at": c.received_at.isoformat(),
            "processed_at": c.processed_at.isoformat() if c.processed_at else None}
    if labels is not None:
        out["labels"] = [{"id": j.id, "state": j.state, "template": j.template_name,
                          "unit_serial": j.unit_serial, "printer_reason": j.printer_reason}
                         for j in labels]
    return out
