"""The minute-by-minute and daily checks: workers.canary, beat.heartbeat,
stations.check_heartbeats and storage.apply_lifecycle, once per slot each."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from web.models import PeriodicRun, Station, utcnow
from web.services import periodic

SLOT = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_a_canary_records_its_queue_once_per_slot(app, db):
    from tasks.periodic import canary
    assert canary("io", SLOT.isoformat()) == {"queue": "io", "slot": SLOT.isoformat()}
    assert canary("io", SLOT.isoformat())["skipped"] == "slot already ran"
    assert periodic.canary_status("io", 60)["status"] == "ok"
    assert periodic.canary_status("printing", 60)["status"] == "never"  # each queue its own


def test_the_beat_heartbeat_counts_the_beats_it_hears_from(app, db):
    from tasks.periodic import beat_heartbeat
    assert beat_heartbeat(SLOT.isoformat(), "host-a:1")["beats"] == 1
    beat_heartbeat((SLOT + timedelta(minutes=1)).isoformat(), "host-b:2")
    assert periodic.beat_status(180)["status"] == "multiple"


def test_station_check_uses_the_configured_offline_minutes(app, db, factory, monkeypatch):
    from tasks.periodic import check_heartbeats
    quiet = factory.station()
    st = db.session.scalar(select(Station).where(Station.code == quiet))
    st.last_heartbeat_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    monkeypatch.setitem(app.config, "STATION_OFFLINE_MINUTES", 15)
    assert check_heartbeats(SLOT.isoformat())["offline"] == []
    monkeypatch.setitem(app.config, "STATION_OFFLINE_MINUTES", 5)
    result = check_heartbeats((SLOT + timedelta(minutes=1)).isoformat())
    assert (result["offline"], result["offline_minutes"]) == ([quiet], 5)


def test_lifecycle_runs_once_per_daily_slot_on_local_storage(app, db, tmp_path, monkeypatch):
    from tasks.lifecycle import apply_lifecycle
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    slot = "2026-05-01T03:30:00+00:00"
    assert apply_lifecycle(slot)["backend"] == "local"
    assert apply_lifecycle(slot)["skipped"] == "slot already ran"
    run = db.session.get(PeriodicRun, "storage.apply_lifecycle")
    assert (run.runs, run.skipped, run.state) == (1, 1, "done")
