"""Periodic housekeeping: one run at a time, one run per scheduled slot, and what the runs saw.

Plain ``celery beat`` has no leader lock: two beat processes (or a beat restarted late) send the
same run twice, and a slow run can overlap the next. Our beat holds one for its life
(``beat_leader``: a second beat exits), and every periodic task still

1. takes a lock for its name (``single_run``): a PostgreSQL session-level advisory lock on its
   own connection (released when the connection closes, so a killed worker frees it), or an
   ``flock`` under the data dir on the embedded SQLite; a second run gives up instead of waiting;
2. claims its slot (``claim``): ``periodic_runs.slot`` only moves forward, so a run whose slot
   was already claimed changes nothing and is counted in ``skipped``.

The same table holds each task's last result: the canary's last success per queue, the beat
processes seen, stations found silent (read by ``/readyz`` and the API).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import select, update

from ..extensions import db
from ..models import PeriodicRun, Station, utcnow
from .audit import Actor, record
from .plumbing import lock_key, named_lock

log = logging.getLogger(__name__)
PERIODIC_LOCK_NS = 7303
BEAT = Actor(None, "system:beat")
CANARY = "workers.canary"
BEAT_HEARTBEAT = "beat.heartbeat"
STATION_CHECK = "stations.check_heartbeats"
BEAT_SEEN_SECONDS = 180  # beat processes seen within this window count as running


def single_run(name: str):
    """Hold the lock of ``name`` for this block; yields False when another run holds it."""
    return named_lock(PERIODIC_LOCK_NS, name, "periodic")


def parse_slot(slot: str | datetime | None) -> datetime:
    """The slot a run belongs to: as sent by beat, or the current minute when run by hand."""
    if slot is None:
        return utcnow().replace(second=0, microsecond=0)
    if isinstance(slot, datetime):
        value = slot
    else:
        value = datetime.fromisoformat(str(slot))
    if value.tzinfo is None:
        raise ValueError(f"slot must carry a timezone: {slot!r}")
    return value


def _insert(values: dict):
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(PeriodicRun).values(**values)


def claim(name: str, slot: datetime) -> bool:
    """Claim ``slot`` for ``name`` (committed); False when that slot (or a later one) ran."""
    now = utcnow()
    stmt = _insert({"name": name, "slot": slot, "state": "running", "started_at": now,
                    "runs": 1, "skipped": 0})
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"slot": slot, "state": "running", "started_at": now, "error": None,
              "runs": PeriodicRun.runs + 1},
        where=(PeriodicRun.slot.is_(None)) | (PeriodicRun.slot < slot))
    got = db.session.execute(stmt.returning(PeriodicRun.name)).first() is not None
    if not got:
        db.session.execute(update(PeriodicRun).where(PeriodicRun.name == name)
                           .values(skipped=PeriodicRun.skipped + 1))
    db.session.commit()
    return got


def finish(name: str, slot: datetime, result: dict | None = None,
           error: str | None = None) -> None:
    """Record the outcome of the run that claimed ``slot`` (committed)."""
    db.session.rollback()
    now = utcnow()
    values: dict[str, Any] = {"state": "failed" if error else "done", "finished_at": now,
                              "error": error[:4000] if error else None}
    if error is None:
        values.update(last_success_at=now, result=result)
    db.session.execute(update(PeriodicRun).where(PeriodicRun.name == name,
                                                 PeriodicRun.slot == slot).values(**values))
    db.session.commit()


def run_once(name: str, slot: str | datetime | None, body: Callable[[datetime], dict],
             lock: str | None = None) -> dict:
    """Run ``body(slot)`` under the lock, once per slot; returns its result or why it skipped."""
    when = parse_slot(slot)
    with single_run(lock or name) as got:
        if not got:
            log.info("%s: another run holds the lock; skipping slot %s", name, when)
            return {"skipped": "locked", "slot": when.isoformat()}
        if not claim(name, when):
            log.info("%s: slot %s already ran; skipping", name, when)
            return {"skipped": "slot already ran", "slot": when.isoformat()}
        try:
            result = body(when)
        except Exception as exc:
            db.session.rollback()
            finish(name, when, error=f"{type(exc).__name__}: {exc}")
            raise
        finish(name, when, result)
        return dict(result or {}, slot=when.isoformat())


def get_run(name: str) -> PeriodicRun | None:
    """The record of the last run of ``name``."""
    return db.session.get(PeriodicRun, name)


# -- workers.canary --------------------------------------------------------------------------

def canary_name(queue: str) -> str:
    """The periodic_runs name of the canary of one queue."""
    return f"{CANARY}:{queue}"


def canary(queue: str, slot: str | datetime | None) -> dict:
    """A task that reached a worker through ``queue``: record the round trip as a success."""
    return run_once(canary_name(queue), slot, lambda when: {"queue": queue})


def canary_status(queue: str, stale_after: float) -> dict:
    """ok (a canary came through recently), stale, or never."""
    run = get_run(canary_name(queue))
    if run is None or run.last_success_at is None:
        return {"status": "never", "last_success_at": None}
    age = (utcnow() - run.last_success_at).total_seconds()
    return {"status": "ok" if age <= stale_after else "stale",
            "last_success_at": run.last_success_at.isoformat(), "age_seconds": round(age, 1)}


# -- beat.heartbeat --------------------------------------------------------------------------

def beat_heartbeat(slot: str | datetime | None, beat_id: str | None) -> dict:
    """Record that a beat process sent its heartbeat; remembers every beat seen recently.

    Deliberately not once-per-slot: each beat's heartbeat is merged in, so a second beat process
    (which plain ``celery beat`` does not prevent) shows up in ``/readyz``.
    """
    when = parse_slot(slot)
    beat_id = beat_id or "unknown"
    with single_run(BEAT_HEARTBEAT) as got:
        if not got:
            return {"skipped": "locked"}
        run = get_run(BEAT_HEARTBEAT)
        now = utcnow()
        seen = dict((run.result or {}).get("beats", {})) if run else {}
        seen[beat_id] = now.isoformat()
        cutoff = now - timedelta(seconds=BEAT_SEEN_SECONDS)
        seen = {b: at for b, at in seen.items() if datetime.fromisoformat(at) >= cutoff}
        if run is None:
            run = PeriodicRun(name=BEAT_HEARTBEAT, runs=0, skipped=0)
            db.session.add(run)
        run.slot = max(run.slot, when) if run.slot else when
        run.state, run.started_at, run.finished_at = "done", now, now
        run.last_success_at, run.runs = now, (run.runs or 0) + 1
        run.result = {"beats": seen}
        db.session.commit()
        return {"beats": len(seen)}


def beat_status(stale_after: float) -> dict:
    """When a beat was last heard of, and how many distinct beat processes were seen lately."""
    run = get_run(BEAT_HEARTBEAT)
    if run is None or run.last_success_at is None:
        return {"status": "never", "last_seen_at": None, "processes": 0}
    age = (utcnow() - run.last_success_at).total_seconds()
    beats = (run.result or {}).get("beats", {})
    status = "stale" if age > stale_after else ("ok" if len(beats) <= 1 else "multiple")
    return {"status": status, "last_seen_at": run.last_success_at.isoformat(),
            "age_seconds": round(age, 1), "processes": len(beats), "seen": sorted(beats)}


# -- stations.check_heartbeats ---------------------------------------------------------------

def check_station_heartbeats(slot: str | datetime | None, offline_minutes: int) -> dict:
    """Stations silent for ``offline_minutes`` are offline; transitions are audited."""

    def body(when: datetime) -> dict:
        previous = get_run(STATION_CHECK)
        before = set(((previous.result or {}) if previous else {}).get("offline", []))
        cutoff = utcnow() - timedelta(minutes=offline_minutes)
        offline, online = [], []
        for st in db.session.scalars(select(Station).where(Station.active.is_(True))
                                     .order_by(Station.code)):
            seen = st.last_heartbeat_at or st.created_at
            (offline if seen < cutoff else online).append(st.code)
            if seen < cutoff and st.code not in before:
                record(BEAT, "station.offline", "station", st.code,
                       after={"last_heartbeat_at": st.last_heartbeat_at.isoformat()
                              if st.last_heartbeat_at else None,
                              "silent_minutes": offline_minutes})
            elif seen >= cutoff and st.code in before:
                record(BEAT, "station.online", "station", st.code,
                       after={"last_heartbeat_at": seen.isoformat()})
        db.session.commit()
        return {"offline": offline, "online": len(online), "offline_minutes": offline_minutes}

    return run_once(STATION_CHECK, slot, body)


def offline_stations() -> list[str]:
    """Station codes the last heartbeat check found silent."""
    run = get_run(STATION_CHECK)
    return list(((run.result or {}) if run else {}).get("offline", []))


__all__ = ["single_run", "claim", "finish", "run_once", "get_run", "canary", "canary_status",
           "beat_heartbeat", "beat_status", "check_station_heartbeats", "offline_stations",
           "parse_slot", "lock_key"]
