"""A worker's pool child marks the task it runs (workers/signals.py), so `neurohub up`'s canary
watch does not take a canary waiting behind a long task for a wedged worker (web/watchdog.py)."""
from __future__ import annotations

import threading
import time
import uuid

import psutil
import psycopg
import pytest

from tests.conftest import TEST_CONFIG
from tests.pipeline.conftest import wait_status
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until
from web.watchdog import BUSY_DIR_ENV, BUSY_MARGIN, busy

pytestmark = pytest.mark.slow  # real processes for seconds: started first under xdist

HARD_LIMIT = 30  # completions.process: COMPLETIONS_SOFT_TIME_LIMIT (20 s) + 10


def test_a_running_task_is_marked_until_it_ends(app, client, auth, factory, pg_database,
                                                redis_url, tmp_path):
    folder = tmp_path / "busy"
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, **TEST_CONFIG,
                      **{BUSY_DIR_ENV: str(folder)})
    worker = celery_worker(env, tmp_path, name="marking-worker", queues="completions,default")
    outbox_relay = relay(env, tmp_path)
    headers = auth("operator")
    station, lot = factory.station(steps=["SMT"]), factory.lot(factory.product())
    # The lot's row held by another transaction: the worker's decision waits on it, as a long
    # task runs, for as long as the test likes.
    holder = psycopg.connect(pg_database.replace("+psycopg", ""))
    holder.execute("SELECT id FROM lots WHERE lot_no = %s FOR NO KEY UPDATE", (lot,))
    released = threading.Event()
    try:
        worker.start()
        outbox_relay.start()
        wait_until(lambda: app.extensions["celery"].control.ping(timeout=0.5), 60, 0.2,
                   f"the worker\n{worker.output()}")
        r = client.post("/api/v1/completions", json={"lot_no": lot, "step": "SMT",
                                                     "station": station},
                        headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.json
        wait_until(lambda: busy(folder), 30, 0.1, f"a busy marker\n{worker.output()}")
        (marker,) = list(folder.iterdir())
        children = {p.pid for p in psutil.Process(worker.proc.pid).children()}
        assert int(marker.name) in children  # the pool child that runs the task
        left = float(marker.read_text()) - time.time()
        assert HARD_LIMIT < left <= HARD_LIMIT + BUSY_MARGIN, left
        holder.rollback()  # the lock goes: the decision finishes
        released.set()
        assert wait_status(client, headers, r.json["id"], timeout=60)["status"] == "accepted"
        wait_until(lambda: not busy(folder) and not list(folder.iterdir()), 10, 0.1,
                   "the marker to go")
    finally:
        if not released.is_set():
            holder.rollback()
        holder.close()
        stop_all(outbox_relay, worker)
