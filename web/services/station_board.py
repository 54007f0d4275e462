"""The stations board: one card per station, its state from heartbeats, its printer's ~HS
status, recent completions and firmware verification; four reads, whatever the line's size."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import (LIVE_ASSIGNMENT_STATES, Completion, Firmware, FirmwareAssignment, Printer,
                      Station, utcnow)
from .overview import first_id_since

PRODUCING_MINUTES = 10  # an accepted completion this recent: the station is producing
REJECT_WINDOW_MINUTES = 60
REJECTS_CLIMBING = 3  # rejects within the window that make a station a problem ...
REJECT_SHARE = 0.2  # ... when they are at least this share of its completions there
PRINTER_OK = ("ok", "unknown")


def _recent(since) -> dict[int, dict]:
    """Per station: accepted and rejected completions since ``since`` and the newest accepted."""
    out: dict[int, dict] = {}
    rows = db.session.execute(
        select(Completion.station_id, Completion.status, func.count(),
               func.max(Completion.received_at))
        .where(Completion.id >= first_id_since(since), Completion.received_at >= since,
               Completion.status.in_(("accepted", "rejected")))
        .group_by(Completion.station_id, Completion.status))
    for station_id, status, n, newest in rows:
        entry = out.setdefault(station_id, {"accepted": 0, "rejected": 0, "last_ok": None})
        entry[status] = n
        if status == "accepted":
            entry["last_ok"] = newest
    return out


def _firmware() -> dict[int, list[dict]]:
    """Per station, its live firmware assignments (version and state)."""
    out: dict[int, list[dict]] = {}
    for station_id, version, state in db.session.execute(
            select(FirmwareAssignment.station_id, Firmware.version, FirmwareAssignment.state)
            .join(Firmware, Firmware.id == FirmwareAssignment.firmware_id)
            .where(FirmwareAssignment.state.in_(LIVE_ASSIGNMENT_STATES))
            .order_by(FirmwareAssignment.id)):
        out.setdefault(station_id, []).append({"version": version, "state": state})
    return out


def _state(hb_age, printer, recent, firmware) -> tuple[str, list[str]]:
    """offline | problem | producing | idle, and the problems seen."""
    offline = int(current_app.config["STATION_OFFLINE_MINUTES"]) * 60
    if hb_age is None or hb_age.total_seconds() > offline:
        return "offline", []
    problems = []
    if printer is not None and printer.status not in PRINTER_OK:
        problems.append(f"printer:{printer.status}")
    judged = recent["accepted"] + recent["rejected"]
    if recent["rejected"] >= REJECTS_CLIMBING and recent["rejected"] >= REJECT_SHARE * judged:
        problems.append(f"rejects:{recent['rejected']}/{judged}")
    problems += [f"firmware:{f['version']}:{f['state']}" for f in firmware
                 if f["state"] != "verified"]
    if problems:
        return "problem", problems
    last_ok = recent["last_ok"]
    producing = last_ok is not None and utcnow() - last_ok <= timedelta(minutes=PRODUCING_MINUTES)
    return ("producing" if producing else "idle"), []


def board() -> list[dict]:
    """One card per active station, by code."""
    now = utcnow()
    recent = _recent(now - timedelta(minutes=REJECT_WINDOW_MINUTES))
    firmware = _firmware()
    printers = {p.uri: p for p in db.session.scalars(select(Printer))}
    cards = []
    for s in db.session.scalars(select(Station).where(Station.active).order_by(Station.code)):
        info = s.last_heartbeat_info or {}
        hb_age = now - s.last_heartbeat_at if s.last_heartbeat_at else None
        printer = printers.get(s.printer_key) if s.printer_uri else None
        r = recent.get(s.id, {"accepted": 0, "rejected": 0, "last_ok": None})
        fw = firmware.get(s.id, [])
        state, problems = _state(hb_age, printer, r, fw)
        cards.append({"code": s.code, "name": s.name, "steps": s.steps, "state": state,
                      "problems": problems, "last_heartbeat_at": s.last_heartbeat_at,
                      "offline_queue": info.get("offline_queue", info.get("queued")),
                      "app_version": info.get("app_version"),
                      "printer": {"uri": s.printer_uri, "status": printer.status,
                                  "reasons": printer.status_reasons or []} if printer else None,
                      "accepted": r["accepted"], "rejected": r["rejected"], "firmware": fw})
    return cards
