"""Products and their versioned routings (ordered steps with measurement specs)."""
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import Json, UtcDateTime, utcnow


class Product(db.Model):
    """A device type made on the line."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    current_revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    revisions: Mapped[list["RoutingRevision"]] = relationship(
        back_populates="product", order_by="RoutingRevision.revision")


class RoutingRevision(db.Model):
    """One immutable version of a product's routing; a lot pins the revision it was made with."""

    __tablename__ = "routing_revisions"
    __table_args__ = (UniqueConstraint("product_id", "revision"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    revision: Mapped[int]
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))
    product: Mapped[Product] = relationship(back_populates="revisions")
    steps: Mapped[list["RoutingStep"]] = relationship(
        back_populates="revision", order_by="RoutingStep.seq", cascade="all, delete-orphan")


class RoutingStep(db.Model):
    """A process step: code, measurement specs, firmware and label requirements."""

    __tablename__ = "routing_steps"
    __table_args__ = (UniqueConstraint("revision_id", "code"), UniqueConstraint("revision_id", "seq"))
    id: Mapped[int] = mapped_column(primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("routing_revisions.id"))
    seq: Mapped[int]
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    # [{"name", "unit", "min", "max", "required"}]; frozen with the revision.
    measurements: Mapped[list] = mapped_column(Json, default=list)
    requires_firmware: Mapped[bool] = mapped_column(default=False)
    label_template: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[RoutingRevision] = relationship(back_populates="steps")
