"""A completion the station got a 202 for never ends `failed` because the database was busy."""
from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from tests.conftest import TEST_CONFIG
from tests.pipeline.conftest import wait_status
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until

pytestmark = pytest.mark.slow  # real processes for seconds: started first under xdist

SOFT_LIMIT = 2  # seconds: the lot's row stays locked for longer than this


def test_a_run_past_its_time_limit_waiting_on_a_lock_is_retried_not_failed(
        app, client, auth, factory, pg_database, redis_url, tmp_path):
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                      COMPLETIONS_SOFT_TIME_LIMIT=SOFT_LIMIT, **TEST_CONFIG)
    worker = celery_worker(env, tmp_path, name="busy-worker", queues="completions,default",
                           loglevel="INFO")
    outbox_relay = relay(env, tmp_path)
    headers = auth("operator")
    product = factory.product()
    station = factory.station(steps=["SMT"])
    lot = factory.lot(product)
    # Another transaction holds the lot's row (as a long writer on a busy database would):
    # the worker's FOR NO KEY UPDATE waits past its soft time limit (a POST's key check does not).
    holder = psycopg.connect(pg_database.replace("+psycopg", ""))
    holder.execute("SELECT id FROM lots WHERE lot_no = %s FOR NO KEY UPDATE", (lot,))
    released = threading.Timer(3 * SOFT_LIMIT, holder.rollback)
    try:
        worker.start()
        outbox_relay.start()
        wait_until(lambda: app.extensions["celery"].control.ping(timeout=0.5), 60, 0.2,
                   f"the worker\n{worker.output()}")
        r = client.post("/api/v1/completions", json={
            "lot_no": lot, "step": "SMT", "station": station},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.json
        started = time.monotonic()
        released.start()
        body = wait_status(client, headers, r.json["id"], timeout=60)
        assert body["status"] == "accepted", (body, worker.output())
        assert time.monotonic() - started >= SOFT_LIMIT  # it did wait on the lock
        log = worker.log_path.read_text(errors="replace")
        # the limit interrupted the wait on the lock, and the run was retried
        assert "SoftTimeLimitExceeded" in log and "retry: Retry in" in log, log[-6000:]
        assert "exceeded its time limit" not in log
    finally:
        released.cancel()
        holder.close()
        stop_all(outbox_relay, worker)
