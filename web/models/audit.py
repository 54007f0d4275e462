"""Append-only audit trail of every state change."""
from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UtcDateTime, utcnow


class AuditEvent(db.Model):
    """Who changed what, from what to what, in which request; never updated."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_entity", "entity_type", "entity_id"),
        Index("ix_audit_lot_id_id", "lot_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lots.id"))
    before: Mapped[dict | None] = mapped_column(Json)
    after: Mapped[dict | None] = mapped_column(Json)
    request_id: Mapped[str | None] = mapped_column(String(64))
