"""Writing the append-only audit trail."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..extensions import db
from ..models import AuditEvent, utcnow
from .plumbing import add_row, insert_rows, page


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting: a logged-in user, or the system (worker, beat, CLI)."""

    id: int | None
    name: str
    request_id: str | None = None


WORKER = Actor(None, "system:worker")
CLI = Actor(None, "system:cli")


def _row(actor: Actor, action: str, entity_type: str, entity_id, lot_id, before, after,
         at) -> dict:
    """One audit_events row (the same keys for every row, so a batch is one INSERT)."""
    return {"at": at, "actor_id": actor.id, "actor": actor.name, "action": action,
            "entity_type": entity_type, "entity_id": str(entity_id), "lot_id": lot_id,
            "before": before, "after": after, "request_id": actor.request_id}


def record(actor: Actor, action: str, entity_type: str, entity_id, *, before=None, after=None,
           lot_id: int | None = None) -> None:
    """Add an audit event to the current transaction (committed with the change it describes)."""
    row = _row(actor, action, entity_type, entity_id, lot_id, before, after, utcnow())
    add_row(AuditEvent, row)  # one INSERT for a whole batch inside bulk.collecting()


def record_many(actor: Actor, action: str, entity_type: str,
                events: list[tuple[object, int | None, dict | None]]) -> None:
    """Add one audit event per (entity_id, lot_id, after) in a single INSERT (hot batch paths)."""
    now = utcnow()
    insert_rows(AuditEvent, [_row(actor, action, entity_type, entity_id, lot_id, None, after, now)
                             for entity_id, lot_id, after in events])


def list_events(actor: str | None, entity_type: str | None, entity_id: str | None,
                cursor: str | None, limit: int):
    """A page of audit events, newest first, filtered by actor name and entity.

    An entity filter runs on ix_audit_entity; an actor filter alone walks the primary key
    backwards (audit rows are read page by page, never counted).
    """
    stmt = select(AuditEvent)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if entity_type:
        stmt = stmt.where(AuditEvent.entity_type == entity_type)
    if entity_id:
        stmt = stmt.where(AuditEvent.entity_id == entity_id)
    return page(db.session, stmt, AuditEvent.id, cursor, limit)
