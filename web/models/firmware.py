"""Firmware images per product and their assignments to the stations that flash them."""
from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UtcDateTime, utcnow

FIRMWARE_STATES = ("draft", "released", "revoked")
# pending -> delivered -> verified | failed; any live one -> superseded | revoked.
ASSIGNMENT_STATES = ("pending", "delivered", "verified", "failed", "superseded", "revoked")
LIVE_ASSIGNMENT_STATES = ("pending", "delivered", "verified", "failed")


class Firmware(db.Model):
    """One firmware image of a product: immutable bytes (sha256, size) and a release state."""

    __tablename__ = "firmware"
    __table_args__ = (
        UniqueConstraint("product_id", "version"),
        Index("ix_firmware_product_state_id", "product_id", "state", "id"),
        Index("ix_firmware_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    version: Mapped[str] = mapped_column(String(64))
    # Key inside the firmware storage area (local FIRMWARE_DIR or s3://bucket/firmware/).
    storage_key: Mapped[str] = mapped_column(String(1024), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    notes: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    # Why the last release did not go out (e.g. the stored object no longer matches sha256).
    release_error: Mapped[str | None] = mapped_column(Text)
    distributed_at: Mapped[object | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[object | None] = mapped_column(UtcDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[object | None] = mapped_column(UtcDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    product = relationship("Product")


class FirmwareAssignment(db.Model):
    """A released firmware handed to one station, until the station proves it holds the bytes."""

    __tablename__ = "firmware_assignments"
    __table_args__ = (
        UniqueConstraint("firmware_id", "station_id"),
        Index("ix_firmware_assignments_station_state", "station_id", "state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    firmware_id: Mapped[int] = mapped_column(ForeignKey("firmware.id"))
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # What the station reported holding at its last acknowledgement.
    acked_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[object | None] = mapped_column(UtcDateTime)
    acked_at: Mapped[object | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[object | None] = mapped_column(UtcDateTime)  # superseded or revoked
    firmware = relationship("Firmware")
    station = relationship("Station")
