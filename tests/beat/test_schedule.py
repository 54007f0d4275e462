"""The beat schedule as data: every entry names a registered task, expires before its next run."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery.schedules import crontab

from beat import schedule as sch
from queues import QUEUES

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
    assert built["outbox-sweep"]["schedule"].run_every < timedelta(seconds=60)


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


# --- the plant's clock -----------------------------------------------------------------------

SEOUL = {"PLANT_TIMEZONE": "Asia/Seoul"}


def _beat_entry(tmp_path, name, env):
    """An entry as beat holds it: the schedule bound to a Celery app with our settings."""
    from celery import Celery
    from celery.schedules import maybe_schedule

    from web.config import load_config
    from workers.config import celery_settings
    settings = celery_settings(load_config(environ=dict(env, NEUROHUB_DATA_DIR=str(tmp_path))))
    celery_app = Celery("tz-test", set_as_current=False)
    celery_app.config_from_object(settings)
    return maybe_schedule(settings["beat_schedule"][name]["schedule"], app=celery_app)


def test_the_nightly_backup_fires_at_two_on_the_plant_clock(tmp_path):
    nightly = _beat_entry(tmp_path, "backups-snapshot", SEOUL)
    last_run = datetime(2026, 3, 3, 17, 0, tzinfo=timezone.utc)  # 02:00 in Seoul, Mar 4
    nightly.nowfun = lambda: datetime(2026, 3, 4, 2, 0, 30, tzinfo=timezone.utc)  # 11:00 KST
    assert not nightly.is_due(last_run).is_due  # mid-shift in Seoul: not now
    nightly.nowfun = lambda: datetime(2026, 3, 4, 17, 0, 30, tzinfo=timezone.utc)  # 02:00 KST
    assert nightly.is_due(last_run).is_due


def test_the_old_lot_timezone_still_sets_the_plant_clock(tmp_path):
    nightly = _beat_entry(tmp_path, "backups-snapshot", {"LOT_TIMEZONE": "Asia/Seoul"})
    assert str(nightly.tz) == "Asia/Seoul"


def test_slots_are_the_plant_clocks_times_in_utc():
    nightly, weekly = crontab(minute="0", hour="2"), crontab(minute="0", hour="4", day_of_week="0")
    at = datetime(2026, 3, 4, 17, 0, 30, tzinfo=timezone.utc)  # Thursday 02:00:30 in Seoul
    assert sch.slot_of(nightly, at, tz="Asia/Seoul") == datetime(2026, 3, 4, 17, 0,
                                                                  tzinfo=timezone.utc)
    # Sunday 04:00 in Seoul is Saturday 19:00 UTC.
    assert sch.slot_of(weekly, at, tz="Asia/Seoul") == datetime(2026, 2, 28, 19, 0,
                                                                 tzinfo=timezone.utc)
    # Across a DST change the wall clock is read minute by minute (01:30 CET, then CEST).
    berlin = crontab(minute="30", hour="1")
    after = datetime(2026, 3, 29, 3, 0, tzinfo=timezone.utc)  # 05:00 CEST
    assert sch.slot_of(berlin, after, tz="Europe/Berlin") == datetime(2026, 3, 29, 0, 30,
                                                                      tzinfo=timezone.utc)


def test_the_slot_beat_stamps_is_on_the_plant_clock():
    built = sch.build_schedule({}, "Asia/Seoul")
    stamp = built["backups-snapshot"]["kwargs"]["slot"]()
    nightly = built["backups-snapshot"]["schedule"]
    assert stamp == sch.slot_of(nightly, tz="Asia/Seoul").isoformat()
    assert stamp != sch.slot_of(nightly).isoformat()  # 02:00 Seoul is never 02:00 UTC


# --- interval runs on their slot edges ---------------------------------------------------------

def _ticks(schedule, start: datetime, seconds: float, jitter) -> list[datetime]:
    """What beat sends over ``seconds``: wake when the schedule says, off by ``jitter()`` (a
    loaded host wakes late, a coarse timer early); each send is named by slot_of at send time."""
    now, last, slots = start, start, []
    schedule.nowfun = lambda: now
    while now < start + timedelta(seconds=seconds):
        due, wait = schedule.is_due(last)
        if due:
            slots.append(sch.slot_of(schedule.run_every.total_seconds(), now))
            last = now
        now += timedelta(seconds=max(0.001, wait + jitter()))
    return slots


def test_interval_runs_name_every_slot_once_however_beat_wakes():
    import random
    rng = random.Random(7)
    built = sch.build_schedule({"BACKUP_CRON": "@every 4s"})
    every4 = built["backups-snapshot"]["schedule"]
    assert isinstance(every4, sch.aligned) and sch.period_of(every4) == 4
    start = datetime(2026, 12, 6, 9, 0, 1, 500000, tzinfo=timezone.utc)
    slots = _ticks(every4, start, 4 * 500, lambda: rng.uniform(-0.05, 0.3))
    assert len(slots) >= 498 and len(slots) == len(set(slots))
    assert all(b - a == timedelta(seconds=4) for a, b in zip(slots, slots[1:]))
    assert all(s.timestamp() % 4 == 0 for s in slots)


def test_an_interval_sends_on_the_edge_and_waits_for_the_next():
    every10 = sch.aligned(timedelta(seconds=10))
    last = datetime(2026, 12, 6, 9, 0, 10, 2000, tzinfo=timezone.utc)  # sent just past :10
    every10.nowfun = lambda: datetime(2026, 12, 6, 9, 0, 19, 993000, tzinfo=timezone.utc)
    due, wait = every10.is_due(last)  # Celery's plain interval would send here, 7 ms early
    assert not due and abs(wait - 0.007) < 1e-6
    assert abs(every10.remaining_estimate(last).total_seconds() - 0.007) < 1e-6
    every10.nowfun = lambda: datetime(2026, 12, 6, 9, 0, 20, tzinfo=timezone.utc)
    assert every10.is_due(last) == (True, 10.0)
    assert every10 == timedelta(seconds=10)
