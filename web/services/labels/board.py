"""What the console's printers page shows: each printer's last ~HS status and its queue."""
from __future__ import annotations

from sqlalchemy import func, select

from printers import STATION_PULL

from ...extensions import db
from ...models import LabelJob, Printer, Station
from ...problems import Conflict
from ..audit import Actor
from . import create_job
from . import templates as tpl


class PrinterRefused(Conflict, ValueError):
    """This printer cannot take a test label from the server."""

WAITING = ("queued", "waiting_printer")


def printers() -> list[dict]:
    """Every known printer with its status, reasons, the stations on it and its job counts.

    The counts are one grouped read over ix_label_jobs_state_id (waiting and failed jobs only).
    """
    counts: dict[str, dict[str, int]] = {}
    for uri, state, n in db.session.execute(
            select(LabelJob.printer_uri, LabelJob.state, func.count())
            .where(LabelJob.state.in_(WAITING + ("failed",)))
            .group_by(LabelJob.printer_uri, LabelJob.state)):
        counts.setdefault(uri, {})[state] = n
    stations: dict[str, list[str]] = {}
    for code, key in db.session.execute(select(Station.code, Station.printer_key)
                                        .where(Station.printer_uri.is_not(None))):
        stations.setdefault(key, []).append(code)
    out = []
    for p in db.session.scalars(select(Printer).order_by(Printer.uri)):
        c = counts.get(p.uri, {})
        out.append({"uri": p.uri, "status": p.status, "reasons": p.status_reasons or [],
                    "checked_at": p.checked_at, "stations": sorted(stations.get(p.uri, [])),
                    "waiting": sum(c.get(s, 0) for s in WAITING), "failed": c.get("failed", 0)})
    return out


def sample_data(variables: list[dict]) -> dict[str, str]:
    """Placeholder values for a template preview: each variable's name, within its length."""
    return {v["name"]: v["name"].upper()[:max(1, int(v.get("max_length") or 8))]
            for v in variables}


TEST_TEMPLATE = "unit"


def test_print(printer_uri: str, actor: Actor) -> LabelJob:
    """Queue one test label (the unit template with placeholder data) on a device printer."""
    if printer_uri.startswith(STATION_PULL):
        raise PrinterRefused("a station:// printer prints what its station app pulls; "
                             "print a test label from the station")
    if db.session.scalar(select(Printer.id).where(Printer.uri == printer_uri)) is None:
        raise PrinterRefused(f"unknown printer {printer_uri!r}")
    template = tpl.latest_template(TEST_TEMPLATE)
    job = create_job(template.name, sample_data(template.variables), printer_uri, actor=actor,
                     reason="test", version=template.version)
    db.session.commit()
    return job
