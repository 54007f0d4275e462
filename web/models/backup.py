"""Database backups (snapshots, their verification and restore drills) and periodic-run records."""
from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import Json, UtcDateTime, utcnow

BACKUP_KINDS = ("scheduled", "manual")
BACKUP_STATES = ("queued", "running", "done", "failed")


class Backup(db.Model):
    """One database snapshot: where it is stored, what it holds, and whether it was proven.

    ``(kind, slot)`` is unique: a scheduled slot gets one backup however many beat processes
    fire it (manual backups have no slot; NULLs never collide).
    """

    __tablename__ = "backups"
    __table_args__ = (UniqueConstraint("kind", "slot"),
                      Index("ix_backups_state_id", "state", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    slot: Mapped[object | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    engine: Mapped[str | None] = mapped_column(String(16))  # postgresql | sqlite
    storage_key: Mapped[str | None] = mapped_column(String(500))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    server_version: Mapped[str | None] = mapped_column(String(100))
    schema_revision: Mapped[str | None] = mapped_column(String(64))
    dump_tool: Mapped[str | None] = mapped_column(String(100))
    # {table: rows}, counted inside the very snapshot that was dumped.
    row_counts: Mapped[dict | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[object | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[object | None] = mapped_column(UtcDateTime)
    verified_at: Mapped[object | None] = mapped_column(UtcDateTime)
    verify_error: Mapped[str | None] = mapped_column(Text)
    drill_at: Mapped[object | None] = mapped_column(UtcDateTime)
    drill_result: Mapped[str | None] = mapped_column(String(16))  # passed | failed
    drill_detail: Mapped[dict | None] = mapped_column(Json)
    expired_at: Mapped[object | None] = mapped_column(UtcDateTime)


class PeriodicRun(db.Model):
    """The last run of one periodic task (per name): its slot, outcome and last success.

    A run claims its slot by moving ``slot`` forward; a second run of the same slot (another beat
    process, a redelivery) finds it taken and only counts itself in ``skipped``.
    """

    __tablename__ = "periodic_runs"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[object | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    started_at: Mapped[object | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[object | None] = mapped_column(UtcDateTime)
    last_success_at: Mapped[object | None] = mapped_column(UtcDateTime)
    result: Mapped[dict | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
