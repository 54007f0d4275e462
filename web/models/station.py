"""Station PCs on the line."""
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import Json, UtcDateTime, utcnow


class Station(db.Model):
    """A line PC with its scanner and printer, serving one or more step codes."""

    __tablename__ = "stations"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    steps: Mapped[list] = mapped_column(Json, default=list)
    printer_uri: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(default=True)
    last_heartbeat_at: Mapped[object | None] = mapped_column(UtcDateTime)
    last_heartbeat_info: Mapped[dict | None] = mapped_column(Json)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
