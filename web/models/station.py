"""Station PCs on the line."""
from sqlalchemy import String, case, literal
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from printers import STATION_PULL

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

    @hybrid_property
    def printer_key(self) -> str:
        """The printer this station's label jobs go to: each ``station://`` one is its own.

        The same in SQL (``Station.printer_key``), to join a station to its printer's row in
        one query; there NULL, not "", for a station without a printer: neither names one.
        """
        uri = self.printer_uri or ""
        return f"{STATION_PULL}{self.code}" if uri.startswith(STATION_PULL) else uri

    @printer_key.inplace.expression
    @classmethod
    def _printer_key_sql(cls):
        return case((cls.printer_uri.startswith(STATION_PULL), literal(STATION_PULL) + cls.code),
                    else_=cls.printer_uri)
