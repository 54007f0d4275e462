"""The append-only process completion record."""
from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import BigId, Json, UtcDateTime, utcnow

COMPLETION_STATUSES = ("received", "accepted", "rejected", "failed")


class Completion(db.Model):
    """One operator's completion of one step for a lot (or one unit of it)."""

    __tablename__ = "completions"
    __table_args__ = (
        Index("ix_completions_lot_id_id", "lot_id", "id"),
        Index("ix_completions_status_id", "status", "id"),
        # The worker's read of a lot's still-pending completions (partial: pending rows only).
        Index("ix_completions_pending", "lot_id", "id",
              postgresql_where=text("status = 'received'"),
              sqlite_where=text("status = 'received'")),
        Index("ix_completions_unit", "unit_serial", "step",
              postgresql_where=text("unit_serial IS NOT NULL"),
              sqlite_where=text("unit_serial IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    step: Mapped[str] = mapped_column(String(32))
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    operator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    unit_serial: Mapped[str | None] = mapped_column(String(64))
    measurements: Mapped[dict] = mapped_column(Json, default=dict)
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    firmware_sha256: Mapped[str | None] = mapped_column(String(64))
    # The released image an accepted flashing completion used (its sha256 is then the server's).
    firmware_id: Mapped[int | None] = mapped_column(ForeignKey("firmware.id"))
    qty_good: Mapped[int | None]
    qty_scrap: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="received")
    reasons: Mapped[list] = mapped_column(Json, default=list)
    # Each measurement judged against the spec at processing time: the DHR's record of truth.
    results: Mapped[list | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    processed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    lot = relationship("Lot")
    station = relationship("Station")
    operator = relationship("User")
