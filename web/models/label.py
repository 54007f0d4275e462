"""Label templates (versioned), printers (with their profile) and label jobs."""
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UtcDateTime, utcnow

LABEL_JOB_STATES = ("queued", "waiting_printer", "sent", "printed", "failed")


class LabelTemplate(db.Model):
    """One version of a ZPL template; versions are never changed, only added."""

    __tablename__ = "label_templates"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    # ZPL with {{variable}} data slots and [[mm]] dimensions, resolved per printer dpi.
    body: Mapped[str] = mapped_column(Text)
    # [{"name", "max_length"}]: what render() requires and how long each value may be.
    variables: Mapped[list] = mapped_column(Json, default=list)
    width_mm: Mapped[float]
    height_mm: Mapped[float]
    description: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class Printer(db.Model):
    """A label printer by URI, with its profile and last known status."""

    __tablename__ = "printers"
    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(String(500), unique=True)
    dpi: Mapped[int] = mapped_column(default=203)
    width_dots: Mapped[int | None]
    length_dots: Mapped[int | None]
    darkness: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    status_reasons: Mapped[list] = mapped_column(Json, default=list)
    checked_at: Mapped[object | None] = mapped_column(UtcDateTime)


class LabelJob(db.Model):
    """One label (or copies of it) to print on one printer, with the exact ZPL sent."""

    __tablename__ = "label_jobs"
    __table_args__ = (
        Index("ix_label_jobs_printer_state_id", "printer_uri", "state", "id"),
        Index("ix_label_jobs_state_id", "state", "id"),
        Index("ix_label_jobs_lot_id_id", "lot_id", "id"),
        Index("ix_label_jobs_completion_id", "completion_id"),
        Index("ix_label_jobs_printer_id", "printer_uri", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    template_name: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[int]
    data: Mapped[dict] = mapped_column(Json, default=dict)
    zpl: Mapped[str] = mapped_column(Text)
    zpl_sha256: Mapped[str] = mapped_column(String(64))
    printer_uri: Mapped[str] = mapped_column(String(500))
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"))
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lots.id"))
    completion_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("completions.id"))
    unit_serial: Mapped[str | None] = mapped_column(String(64))
    copies: Mapped[int] = mapped_column(default=1)
    reason: Mapped[str] = mapped_column(String(16), default="first_print")
    reprint_reason: Mapped[str | None] = mapped_column(String(500))
    reprint_of: Mapped[int | None] = mapped_column(BigId, ForeignKey("label_jobs.id"))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    printer_reason: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[object | None] = mapped_column(UtcDateTime)
    printed_at: Mapped[object | None] = mapped_column(UtcDateTime)
