"""Never a second `celery beat` on one database: a beat started while another runs exits at once."""
from __future__ import annotations

import sys
import time

import pytest

from tests.conftest import TEST_CONFIG
from tests.support.procs import Proc, service_env, wait_until

pytestmark = pytest.mark.slow  # real processes for seconds: started first under xdist

ALL_OFF = {name: "off" for name in (
    "CANARY_CRON", "OUTBOX_SWEEP_CRON", "LABELS_RETRY_CRON", "STATION_CHECK_CRON",
    "BEAT_HEARTBEAT_CRON", "BACKUP_CRON", "LIFECYCLE_CRON", "RESTORE_DRILL_CRON")}


def _beat(env, tmp_path, name):
    return Proc(name, [sys.executable, "-m", "celery", "-A", "workers.main", "beat", "-l", "INFO",
                       "-s", str(tmp_path / f"{name}-schedule")], env, tmp_path)


def test_a_beat_exits_while_another_holds_the_database_and_runs_once_it_is_gone(
        app, pg_database, redis_url, tmp_path):
    from web.services.beat_leader import ANOTHER_BEAT, LEADER_LOCK, other_beat_running
    from web.services.plumbing import named_lock
    from web.services.periodic import PERIODIC_LOCK_NS
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, LOG_LEVEL="INFO",
                      NEUROHUB_DATA_DIR=tmp_path / "var", **ALL_OFF, **TEST_CONFIG)
    with app.app_context():
        # This test process plays the running beat (another host would do the same: the lock
        # lives in PostgreSQL, not in a data folder).
        with named_lock(PERIODIC_LOCK_NS, LEADER_LOCK, "beat") as got:
            assert got
            second = _beat(env, tmp_path, "second").start()
            try:
                assert second.proc.wait(60) == 1, second.output()
            finally:
                second.stop()
            assert ANOTHER_BEAT in second.output()
        first = _beat(env, tmp_path, "first").start()
        try:
            wait_until(lambda: other_beat_running(), 60, 0.3, "the beat's lock")
            time.sleep(1)
            assert first.proc.poll() is None, first.output()
            third = _beat(env, tmp_path, "third").start()
            try:
                assert third.proc.wait(60) == 1, third.output()
            finally:
                third.stop()
            assert ANOTHER_BEAT in third.output()
        finally:
            first.stop()
        wait_until(lambda: not other_beat_running(), 30, 0.3, "the lock dies with the beat")
