"""Real `celery beat` processes and a real worker: one backup per slot, a canary that goes stale."""
from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from tests.conftest import REDIS_BASE, TEST_CONFIG
from tests.support.procs import Proc, celery_worker, service_env, stop_all, wait_until

# Beat traffic goes to a Redis database of its own, claimed for the test: two test sessions on
# one machine (several developers) must not consume each other's beat messages.
ISOLATED_DBS = (11, 10, 9, 8, 5)
CLAIM = "neurohub-test:beat-pipeline-claim"
QUIET = {"OUTBOX_SWEEP_CRON": "off", "LABELS_RETRY_CRON": "off", "STATION_CHECK_CRON": "off",
         "LIFECYCLE_CRON": "off", "RESTORE_DRILL_CRON": "off"}


def beat(env: dict, log_dir, name: str) -> Proc:
    return Proc(name, [sys.executable, "-m", "celery", "-A", "workers.main", "beat", "-l", "INFO",
                       "-s", str(log_dir / f"{name}-schedule"),
                       "--pidfile", str(log_dir / f"{name}.pid")], env, log_dir)


@pytest.fixture()
def isolated_broker():
    base = REDIS_BASE.rsplit("/", 1)[0]
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for n in ISOLATED_DBS:
        client = redis.Redis.from_url(f"{base}/{n}")
        if client.set(CLAIM, token, nx=True, ex=900):
            break
    else:
        pytest.fail(f"every Redis database of {ISOLATED_DBS} is claimed by another test run")
    for key in client.scan_iter():
        if key != CLAIM.encode():
            client.delete(key)
    yield f"{base}/{n}"
    for key in client.scan_iter():
        client.delete(key)


def _app(pg_database, broker, **extra):
    from web import create_app
    return create_app(dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=broker, **extra))


# The backup slot period of the two-beats test: short, so the test sees many slots in well under
# a minute.
PERIOD = 4
SLOTS = 6  # slots the test runs through; at least SLOTS - 2 must have a backup
SEND = "Sending due task backups-snapshot"  # what celery beat logs as it sends a snapshot run


def _drained(broker: str) -> bool:
    """Nothing left in the beat test's queues, nor taken and still running (acks are late)."""
    client = redis.Redis.from_url(broker)
    return not (client.llen("io") or client.llen("default") or client.hlen("unacked"))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_second_beat_exits_and_the_first_makes_exactly_one_backup_per_slot(app, db, pg_database,
                                                                              isolated_broker,
                                                                              tmp_path):
    from web.models import Backup, PeriodicRun
    from web.services import periodic
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=isolated_broker,
                      BACKUP_DIR=tmp_path / "backups", BACKUP_TMP_DIR=tmp_path / "tmp",
                      BACKUP_CRON=f"@every {PERIOD}s", BEAT_HEARTBEAT_CRON=f"@every {PERIOD}s",
                      CANARY_CRON="off", **QUIET, **TEST_CONFIG)
    worker = celery_worker(env, tmp_path, name="io-worker", queues="io,default", concurrency=2)
    beats = [beat(env, tmp_path, "beat-a"), beat(env, tmp_path, "beat-b")]
    app2 = _app(pg_database, isolated_broker)
    try:
        worker.start()
        wait_until(lambda: app2.extensions["celery"].control.ping(timeout=0.5), 60, 0.2,
                   f"the io worker\n{worker.output()}")
        beats[0].start()
        wait_until(lambda: SEND in beats[0].output(), 60, 0.05,
                   f"the first beat to send\n{beats[0].output()}")
        beats[1].start()  # on its own clock, as a second host would: it must not send at all
        wait_until(lambda: beats[1].proc.poll() is not None, 60, 0.1,
                   f"the second beat to exit\n{beats[1].output()}")
        time.sleep(SLOTS * PERIOD)
    finally:
        stop_all(*beats)
    try:
        wait_until(lambda: _drained(isolated_broker), 30, 0.1, "the last sends to finish")
        logs = f"{beats[0].output()}\n{beats[1].output()}\n{worker.output()}"
        db.session.rollback()
        rows = db.session.scalars(select(Backup).where(Backup.kind == "scheduled")
                                  .order_by(Backup.slot)).all()
        slots = [b.slot for b in rows]
        assert len(rows) >= SLOTS - 2, logs
        assert len(slots) == len(set(slots)), logs
        assert all(b.state == "done" for b in rows), [(b.id, b.state, b.error) for b in rows]
        assert all(s.timestamp() % PERIOD == 0 for s in slots)
        gaps = [(a, b) for a, b in zip(slots, slots[1:]) if b - a != timedelta(seconds=PERIOD)]
        assert gaps == [], logs
        # the second beat found the first one's lock and exited before sending anything
        from web.services.beat_leader import ANOTHER_BEAT
        assert beats[1].proc.returncode == 1 and ANOTHER_BEAT in beats[1].output(), logs
        assert SEND not in beats[1].output(), logs
        run = db.session.get(PeriodicRun, "backups.snapshot")
        assert run.runs == len(rows), (run.runs, run.skipped)
        dumps = [p for p in (tmp_path / "backups").rglob("*.dump")]
        assert len(dumps) == len(rows)
        with app.app_context():
            seen = periodic.beat_status(180)
        pids = sorted((tmp_path / f"{b.name}.pid").read_text().strip() for b in beats
                      if (tmp_path / f"{b.name}.pid").exists())
        assert seen["processes"] == 1 and seen["status"] == "ok", (seen["seen"], pids,
                                                                   [b.proc.pid for b in beats])
    finally:
        worker.stop()


def _canary(client) -> dict:
    body = client.get("/readyz").get_json()
    assert body["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}, body
    return body["detail"]["canary"]["default"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_canary_goes_stale_with_the_worker_stopped_and_readyz_says_so(app, db, pg_database,
                                                                      isolated_broker, tmp_path):
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=isolated_broker, CANARY_CRON="@every 2s",
                      BACKUP_CRON="off", BEAT_HEARTBEAT_CRON="off", **QUIET, **TEST_CONFIG)
    app2 = _app(pg_database, isolated_broker, CANARY_STALE_SECONDS=6)
    client = app2.test_client()
    worker = celery_worker(env, tmp_path, name="canary-worker", queues="default", concurrency=1)
    scheduler = beat(env, tmp_path, "beat-canary")
    try:
        worker.start()
        scheduler.start()
        wait_until(lambda: _canary(client)["status"] == "ok", 60, 0.5,
                   f"a canary round trip\n{worker.output()}\n{scheduler.output()}")
        worker.stop()
        stale = wait_until(lambda: (c := _canary(client))["status"] == "stale" and c, 30, 0.5,
                           "the canary to go stale")
        # stale means the raw age passed 6 s; the reported age is rounded to 0.1 s (6.03 → 6.0)
        assert stale["age_seconds"] >= 6
        r = client.get("/readyz")
        assert r.status_code == 200  # the web tier is ready; the detail says workers are not
        assert r.get_json()["detail"]["workers"] == "stale"
        worker.start()  # back: fresh canaries get through (stale ones expired in the queue)
        wait_until(lambda: _canary(client)["status"] == "ok", 60, 0.5,
                   f"the canary to recover\n{worker.output()}")
    finally:
        scheduler.stop()
        worker.stop()
