"""Station PCs: registration, listing, heartbeats."""
from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import Printer, Station, utcnow
from ..problems import Conflict, NotFound
from .audit import Actor, record
from .plumbing import page


class StationExists(Conflict, ValueError):
    """The station code is taken."""


class StationNotFound(NotFound, LookupError):
    """No station has this code."""

    def __init__(self, code: str):
        super().__init__(f"unknown station {code!r}")


def ensure_printer(uri: str, profile: dict | None = None) -> Printer:
    """The printer row for a URI (created on first use), with its profile updated if given."""
    printer = db.session.scalar(select(Printer).where(Printer.uri == uri))
    if printer is None:
        printer = Printer(uri=uri, dpi=203, status="unknown", status_reasons=[])
        db.session.add(printer)
    for key, value in (profile or {}).items():
        setattr(printer, key, value)
    return printer


def create_station(code: str, name: str, steps: list[str], printer_uri: str | None,
                   actor: Actor, printer_profile: dict | None = None) -> Station:
    """Register a station (and its printer's profile); audited."""
    if db.session.scalar(select(Station.id).where(Station.code == code)) is not None:
        raise StationExists(f"station {code!r} already exists")
    station = Station(code=code, name=name, steps=list(steps), printer_uri=printer_uri)
    db.session.add(station)
    if printer_uri:
        ensure_printer(station.printer_key, printer_profile)  # station:// is one per station
    db.session.flush()
    record(actor, "station.created", "station", code,
           after={"name": name, "steps": steps, "printer_uri": printer_uri})
    db.session.commit()
    return station


def get_station(code: str) -> Station:
    """The station with this code."""
    station = db.session.scalar(select(Station).where(Station.code == code))
    if station is None:
        raise StationNotFound(code)
    return station


def list_stations(cursor: str | None, limit: int):
    """A page of stations, newest first."""
    return page(db.session, select(Station), Station.id, cursor, limit)


def heartbeat(code: str, info: dict) -> Station:
    """Record that a station is alive (not audited: it is not a state change anyone made)."""
    station = get_station(code)
    station.last_heartbeat_at = utcnow()
    station.last_heartbeat_info = info
    db.session.commit()
    return station


def station_dict(station: Station) -> dict:
    """A station as the API shows it."""
    hb = station.last_heartbeat_at
    return {"code": station.code, "name": station.name, "steps": station.steps,
            "printer_uri": station.printer_uri, "active": station.active,
            "last_heartbeat_at": hb.isoformat() if hb else None}
