"""Lots, their unit serials and the per-day lot number counter."""
from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UtcDateTime, utcnow

LOT_STATUSES = ("created", "in_process", "completed", "on_hold", "scrapped")
ACTIVE_STATUSES = ("created", "in_process")


class Lot(db.Model):
    """A production lot moving through its pinned routing revision."""

    __tablename__ = "lots"
    __table_args__ = (
        Index("ix_lots_status_id", "status", "id"),
        Index("ix_lots_product_status", "product_id", "status", "id"),
        Index("ix_lots_product_id", "product_id", "id"),
        Index("ix_lots_step_status", "current_step", "status", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    lot_no: Mapped[str] = mapped_column(String(64), unique=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    routing_revision_id: Mapped[int] = mapped_column(ForeignKey("routing_revisions.id"))
    quantity: Mapped[int]
    # Units still alive (quantity minus scrap) and how many of them passed the current step.
    qty_good: Mapped[int]
    step_passed: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="created")
    current_seq: Mapped[int | None]
    current_step: Mapped[str | None] = mapped_column(String(32))
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    product = relationship("Product")
    revision = relationship("RoutingRevision")
    units: Mapped[list["LotUnit"]] = relationship(back_populates="lot", order_by="LotUnit.id")


class LotUnit(db.Model):
    """A serialised unit inside a lot."""

    __tablename__ = "lot_units"
    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    lot: Mapped[Lot] = relationship(back_populates="units")


class LotSequence(db.Model):
    """Per-day counter behind LOT-YYYYMMDD-NNNN; bumped with an atomic upsert."""

    __tablename__ = "lot_sequences"
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(default=0)
