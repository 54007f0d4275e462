"""The beat schedule as data: every entry names a registered task, expires before its next run."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery.schedules import crontab

from beat import schedule as sch
from workers.config import QUEUES

ISSUE_TASKS = {"outbox.sweep", "labels.retry", "stations.check_heartbeats", "workers.canary",
               "beat.heartbeat", "backups.snapshot", "storage.apply_lifecycle",
               "backups.restore_drill"}


def _period(entry: dict) -> float:
    s = entry["schedule"]
    return s.total_seconds() if isinstance(s, timedelta) else sch.period_of(s)


def test_every_entry_names_a_registered_task(app):
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    built = sch.build_schedule({})
    assert {e["task"] for e in built.values()} == ISSUE_TASKS
    for name, entry in built.items():
        assert entry["task"] in celery_app.tasks, f"{name}: {entry['task']} is not registered"


def test_every_entry_expires_before_its_next_run():
    for env in ({}, {"BACKUP_CRON": "@every 10s", "LIFECYCLE_CRON": "*/5 * * * *",
                     "RESTORE_DRILL_CRON": "@hourly", "CANARY_CRON": "@every 2s"}):
        for name, entry in sch.build_schedule(env).items():
            assert 0 < entry["options"]["expires"] < _period(entry), (name, env)


def test_defaults_nightly_daily_weekly_and_minutes():
    built = sch.build_schedule({})
    assert built["backups-snapshot"]["schedule"] == crontab(minute="0", hour="2")
    assert sch.period_of(built["backups-snapshot"]["schedule"]) == 86400
    assert sch.period_of(built["storage-apply-lifecycle"]["schedule"]) == 86400
    assert sch.period_of(built["backups-restore-drill"]["schedule"]) == 7 * 86400
    for name in ("labels-retry", "stations-check-heartbeats", "beat-heartbeat",
                 "workers-canary-default"):
        assert built[name]["schedule"] == timedelta(seconds=60), name
    assert built["outbox-sweep"]["schedule"] < timedelta(seconds=60)


def test_cron_overrides_from_the_environment():
    built = sch.build_schedule({"BACKUP_CRON": "30 17 * * *", "LIFECYCLE_CRON": "@every 10s",
                                "RESTORE_DRILL_CRON": "off"})
    assert built["backups-snapshot"]["schedule"] == crontab(minute="30", hour="17")
    assert built["storage-apply-lifecycle"]["schedule"] == timedelta(seconds=10)
    assert "backups-restore-drill" not in built
    with pytest.raises(sch.ScheduleError):
        sch.build_schedule({"BACKUP_CRON": "every night"})


def test_a_canary_per_worker_queue():
    assert sch.QUEUES == QUEUES
    built = sch.build_schedule({})
    canaries = {e["options"]["queue"]: e["args"] for e in built.values()
                if e["task"] == "workers.canary"}
    assert canaries == {q: (q,) for q in QUEUES}


def test_slots_are_the_scheduled_time_the_same_for_every_beat():
    at = datetime(2026, 3, 4, 2, 0, 37, tzinfo=timezone.utc)
    nightly = sch.parse_when("0 2 * * *")
    assert sch.slot_of(nightly, at) == datetime(2026, 3, 4, 2, 0, tzinfo=timezone.utc)
    late = at + timedelta(minutes=50)  # a beat restarted late still names the same slot
    assert sch.slot_of(nightly, late) == datetime(2026, 3, 4, 2, 0, tzinfo=timezone.utc)
    weekly = sch.parse_when("0 4 * * 0")  # Sunday
    assert sch.slot_of(weekly, at) == datetime(2026, 3, 1, 4, 0, tzinfo=timezone.utc)
    assert sch.slot_of(10.0, at) == datetime(2026, 3, 4, 2, 0, 30, tzinfo=timezone.utc)
    assert sch.slot_of(10.0, at + timedelta(seconds=2.9)) == sch.slot_of(10.0, at)


def test_beat_stamps_each_send_with_its_slot_and_identity():
    built = sch.build_schedule({"BACKUP_CRON": "@every 10s"})
    kwargs = built["backups-snapshot"]["kwargs"]
    slot = datetime.fromisoformat(kwargs["slot"]())  # evaluated by beat at every send
    assert slot.timestamp() % 10 == 0 and abs(slot - datetime.now(timezone.utc)) < timedelta(
        seconds=11)
    assert ":" in built["beat-heartbeat"]["kwargs"]["beat_id"]()
    assert "slot" not in built["outbox-sweep"]["kwargs"]
