"""Single-run locks, once-per-slot claims, canary/beat heartbeats and station offline checks."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from web.models import AuditEvent, PeriodicRun, Station, utcnow
from web.services import periodic

SLOT = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_the_lock_admits_one_run_at_a_time_across_connections(app, db):
    inside = threading.Event()
    release = threading.Event()
    seen = []

    def holder():
        with app.app_context(), periodic.single_run("test.job") as got:
            seen.append(("holder", got))
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(10)
    with periodic.single_run("test.job") as got:
        seen.append(("second", got))
    with periodic.single_run("test.other") as got:
        seen.append(("other name", got))
    release.set()
    t.join(10)
    with periodic.single_run("test.job") as got:
        seen.append(("after", got))
    assert seen == [("holder", True), ("second", False), ("other name", True), ("after", True)]


def test_flock_on_the_embedded_sqlite(tmp_path):
    from tests.conftest import TEST_CONFIG
    from web import create_app
    app2 = create_app(dict(TEST_CONFIG, NEUROHUB_DATA_DIR=str(tmp_path / "var")))
    with app2.app_context():
        with periodic.single_run("x") as a, periodic.single_run("x") as b:
            assert (a, b) == (True, False)
        with periodic.single_run("x") as c:
            assert c is True
        assert list((tmp_path / "var" / "locks").iterdir())


def test_a_slot_runs_once_and_never_backwards(app, db):
    calls = []
    body = lambda when: calls.append(when) or {"n": len(calls)}  # noqa: E731
    assert periodic.run_once("test.slot", SLOT.isoformat(), body) == {"n": 1,
                                                                     "slot": SLOT.isoformat()}
    assert periodic.run_once("test.slot", SLOT, body)["skipped"] == "slot already ran"
    assert periodic.run_once("test.slot", SLOT - timedelta(minutes=1), body)["skipped"]
    assert periodic.run_once("test.slot", SLOT + timedelta(minutes=1), body)["n"] == 2
    run = db.session.get(PeriodicRun, "test.slot")
    assert (run.runs, run.skipped, run.state, run.result) == (2, 2, "done", {"n": 2})


def test_a_failed_run_is_recorded_and_the_next_slot_runs(app, db):
    def boom(when):
        raise RuntimeError("storage on fire")
    try:
        periodic.run_once("test.fail", SLOT, boom)
    except RuntimeError:
        pass
    run = db.session.get(PeriodicRun, "test.fail")
    assert run.state == "failed" and "storage on fire" in run.error and run.last_success_at is None
    assert periodic.run_once("test.fail", SLOT + timedelta(minutes=1), lambda w: {})["slot"]
    db.session.refresh(run)
    assert run.state == "done" and run.error is None and run.last_success_at


def test_canary_success_and_staleness(app, db):
    assert periodic.canary_status("io", 60)["status"] == "never"
    periodic.canary("io", utcnow().isoformat())
    assert periodic.canary_status("io", 60)["status"] == "ok"
    run = db.session.get(PeriodicRun, "workers.canary:io")
    run.last_success_at = utcnow() - timedelta(seconds=120)
    db.session.commit()
    status = periodic.canary_status("io", 60)
    assert status["status"] == "stale" and status["age_seconds"] >= 120


def test_beat_heartbeat_notices_a_second_beat(app, db):
    periodic.beat_heartbeat(SLOT, "host-a:10")
    periodic.beat_heartbeat(SLOT, "host-a:10")
    assert periodic.beat_status(180)["status"] == "ok"
    periodic.beat_heartbeat(SLOT, "host-b:20")
    status = periodic.beat_status(180)
    assert status["status"] == "multiple" and status["processes"] == 2


def test_silent_stations_are_marked_offline_and_back_online(app, db, factory):
    quiet, chatty = factory.station(), factory.station()
    old = utcnow() - timedelta(minutes=30)
    for code, seen in ((quiet, old), (chatty, utcnow())):
        st = db.session.scalar(select(Station).where(Station.code == code))
        st.last_heartbeat_at = seen
    db.session.commit()
    result = periodic.check_station_heartbeats(SLOT, offline_minutes=5)
    assert result["offline"] == [quiet] and result["online"] == 1
    assert periodic.offline_stations() == [quiet]
    again = periodic.check_station_heartbeats(SLOT + timedelta(minutes=1), offline_minutes=5)
    assert again["offline"] == [quiet]
    st = db.session.scalar(select(Station).where(Station.code == quiet))
    st.last_heartbeat_at = utcnow()
    db.session.commit()
    assert periodic.check_station_heartbeats(SLOT + timedelta(minutes=2), 5)["offline"] == []
    events = db.session.execute(select(AuditEvent.action, AuditEvent.entity_id).where(
        AuditEvent.action.like("station.o%")).order_by(AuditEvent.id)).all()
    assert events == [("station.offline", quiet), ("station.online", quiet)]  # transitions only
