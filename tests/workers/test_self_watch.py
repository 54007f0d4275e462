"""A worker watches itself (workers/self_watch.py): canaries flow while it is healthy; once it
takes nothing from its queues it exits with code 70, for its supervisor to restart it."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from celery import Celery

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, service_env, stop_all, wait_until
from web.services.periodic import canary_name
from web.models import PeriodicRun
from workers.self_watch import EXIT_CODE

STALE = 4.0  # WORKER_SELF_WATCH_SECONDS of the test's worker


def _last_canary(db, queue):
    run = db.session.get(PeriodicRun, canary_name(queue))
    db.session.rollback()
    return run.last_success_at if run is not None else None


@pytest.mark.slow
def test_a_worker_that_stops_consuming_exits_70_and_a_healthy_one_does_not(
        db, tmp_path, pg_database, own_redis):
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=own_redis.url,
                      WORKER_SELF_WATCH_SECONDS=STALE, **TEST_CONFIG)
    worker = celery_worker(env, tmp_path, loglevel="INFO").start()
    log = tmp_path / "worker.log"
    try:
        wait_until(lambda: "self-watch: a canary through completions, default" in log.read_text(),
                   60, 0.2, lambda: "the self-watch to start:\n" + log.read_text()[-3000:])
        first = wait_until(lambda: _last_canary(db, "completions"), 30, 0.5,
                           "a first canary through completions")
        time.sleep(3 * STALE)  # healthy and idle: the canaries go on, the worker stays
        assert worker.running(), log.read_text()[-3000:]
        assert _last_canary(db, "completions") > first
        assert _last_canary(db, "default") is not None
        # The consumer stops taking from both queues (as a consumer that never came back from
        # a lost broker connection): alive, connected, and taking nothing.
        control = Celery(broker=own_redis.url)
        replies = [control.control.cancel_consumer(q, reply=True, timeout=5)
                   for q in ("completions", "default")]
        assert all(replies), replies
        t = time.monotonic()
        assert worker.proc.wait(60) == EXIT_CODE, log.read_text()[-3000:]
        took = time.monotonic() - t
        assert took < STALE + 5 + 15, took  # stale, then five idle checks, then a warm stop
        assert "no task is running: stopping this worker (exit 70)" in log.read_text()
    finally:
        stop_all(worker)


def test_a_worker_whose_loop_never_stops_exits_hard_with_every_threads_stack():
    """Celery's flag unseen (a loop stuck where it never looks): the stacks, then exit 70."""
    code = "import workers.self_watch as w; w.STOP_GRACE = 0.2; w._exit('test: stuck')"
    r = subprocess.run([sys.executable, "-c", code], env=service_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == EXIT_CODE, r.stderr
    assert "test: stuck: stopping this worker (exit 70)" in r.stderr
    assert "Current thread" in r.stderr and "self_watch.py" in r.stderr  # faulthandler's dump
