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

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from queues import queue_for

from ...extensions import db
from ...models import AuditEvent, Completion, Lot, RoutingStep, Station, utcnow
from ...problems import Conflict, FieldError, NotFound
from .. import outbox
from ..audit import Actor, record
from ..plumbing import execute_raw

COMPLETION_TASK = "completions.process"
COMPLETION_QUEUE = queue_for(COMPLETION_TASK)


def message_key(completion_id: int) -> str:
    """The dedup key of a completion's outbox message."""
    return f"completion:{completion_id}"


def _dead_lettered(args: list, reason: str) -> None:
    """The completion's message was never processed: it is failed, not left received."""
    db.session.execute(update(Completion).where(
        Completion.id == args[0], Completion.status == "received").values(
        status="failed", error=reason, processed_at=utcnow()))


# The worker decides every pending completion of the lot (args[1]) it is given, in order.
outbox.register(COMPLETION_TASK, outbox.Policy(group_arg=1, on_dead=_dead_lettered))

# Advisory-lock namespace (first int of the two-int form) for in-flight Idempotency-Keys.
IDEMPOTENCY_LOCK_NS = 7301


class InFlight(Conflict, RuntimeError):
    """A request with the same Idempotency-Key is being processed right now: retry shortly."""

    def __init__(self, detail: str):
        super().__init__(detail, headers={"Retry-After": "1"})


class KeyReused(FieldError, ValueError):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self, message: str):
        super().__init__("header.Idempotency-Key", message)


class UnknownReference(FieldError, LookupError):
    """A code in the request (lot, station, step) does not exist; ``field`` names it."""


class CompletionNotFound(NotFound, LookupError):
    """No completion has this id."""

    def __init__(self, completion_id: int):
        super().__init__(f"unknown completion {completion_id}")


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
  """ + outbox.insert_from("ins", args="jsonb_build_array(ins.id, ins.lot_id)",
                                dedup_key="'completion:' || ins.id") + """),
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


def _reading():
    """A connection outside any transaction: its reads take no lock (SQLite: not the write lock)."""
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _previous(conn, key: str):
    return conn.execute(select(Completion.id, Completion.request_hash).where(
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
              **outbox.insert_params(COMPLETION_TASK, COMPLETION_QUEUE), "rid": actor.request_id,
              "lock_ns": IDEMPOTENCY_LOCK_NS}
    # Autocommit: the single statement is its own transaction, so no BEGIN/COMMIT round trips.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = execute_raw(conn, _PG_SUBMIT, params)
    if not row.ok:
        raise InFlight("a request with this Idempotency-Key is still being processed")
    if row.prev_id is not None:
        return _replay(row.prev_id, row.prev_hash, digest)
    _check_refs(row.lot_id, row.station_id, row.step_id, body)
    if row.new_id is None:
        # The first request committed between our snapshot and our insert: replay it.
        with _reading() as conn:
            prev = _previous(conn, key)
        return _replay(prev.id, prev.request_hash, digest)
    return Receipt(row.new_id, False)


def _submit_generic(body: dict, key: str, digest: str, actor: Actor) -> Receipt:
    """The same contract as the PostgreSQL statement (SQLite): the lookups first, then one short
    write transaction of three INSERTs.

    On SQLite a write transaction holds the database's only write lock, which the workers, the
    relay and every other POST wait for: nothing is read or built while it is held.
    """
    with _reading() as conn:
        prev = _previous(conn, key)
        if prev is not None:
            return _replay(prev.id, prev.request_hash, digest)
        ref = conn.execute(select(Lot.id, Lot.routing_revision_id).where(
            Lot.lot_no == body["lot_no"])).first()
        station_id = conn.scalar(select(Station.id).where(Station.code == body["station"],
                                                         Station.active.is_(True)))
        step_id = ref and conn.scalar(select(RoutingStep.id).where(
            RoutingStep.revision_id == ref.routing_revision_id,
            RoutingStep.code == body["step"]))
    _check_refs(ref and ref.id, station_id, step_id, body)
    row = {"idempotency_key": key, "request_hash": digest, "lot_id": ref.id, "step": body["step"],
           "station_id": station_id, "operator_id": actor.id,
           "unit_serial": body.get("unit_serial"), "measurements": body.get("measurements") or {},
           "firmware_version": body.get("firmware_version"),
           "firmware_sha256": body.get("firmware_sha256"), "qty_good": body.get("qty_good"),
           "qty_scrap": body.get("qty_scrap"), "status": "received", "reasons": [],
           "received_at": utcnow()}
    session = db.session
    try:
        with outbox.batched(AuditEvent):  # their rows: one INSERT each, at the end
            new_id = session.connection().execute(
                insert(Completion.__table__).values(row).returning(Completion.__table__.c.id)
            ).scalar_one()
            outbox.enqueue(COMPLETION_TASK, [new_id, ref.id], COMPLETION_QUEUE,
                           message_key(new_id))
            record(actor, "completion.received", "completion", new_id, lot_id=ref.id,
                   after={"lot_no": body["lot_no"], "step": body["step"],
                          "station": body["station"]})
        session.commit()
    except IntegrityError:  # a retry with the same key committed since our lookup
        session.rollback()
        with _reading() as conn:
            prev = _previous(conn, key)
        return _replay(prev.id, prev.request_hash, digest)
    return Receipt(new_id, False)


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
    from ...models import LabelJob
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
