"""Transactional outbox: tasks to publish, written in the same transaction as their cause."""
from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import BigId, Json, UtcDateTime, utcnow


class OutboxMessage(db.Model):
    """A task waiting to reach the broker; deleted by the worker once its effect is committed."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_due", "available_at", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    args: Mapped[list] = mapped_column(Json, default=list)
    queue: Mapped[str] = mapped_column(String(32))
    # e.g. "completion:42": the worker finds and deletes its message by this key.
    dedup_key: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    available_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
    dispatched_at: Mapped[object | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The request that caused the message (web/logs.py): published in the task's headers, so
    # the worker's log lines, and the messages it enqueues in turn, carry it on.
    request_id: Mapped[str | None] = mapped_column(String(64))
