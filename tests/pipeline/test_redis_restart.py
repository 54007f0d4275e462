"""Redis restarted under a running worker (issue #15's stack failure, reproduced on one host):
the worker, with its metrics exporter on and scraped as Prometheus does, goes on deciding
completions after every restart, and stops on SIGTERM."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import TEST_CONFIG
from tests.support.factories import post_completion
from tests.support.procs import celery_worker, free_port, relay, service_env, stop_all, wait_until
from web.models import Completion, Lot

ROUNDS, PER_ROUND = 6, 30


def _scrape(url: str, stop: threading.Event, counts: list) -> None:
    """Prometheus' part: GET /metrics again and again."""
    while not stop.is_set():
        try:
            counts.append(requests.get(url, timeout=5).status_code)
        except requests.RequestException:
            counts.append(0)
        time.sleep(0.2)


def _accepted(db, lot_no: str) -> int:
    """This test's lot's accepted completions (another test's leftovers may be decided too)."""
    n = db.session.scalar(select(func.count()).select_from(Completion).join(Lot).where(
        Lot.lot_no == lot_no, Completion.status == "accepted"))
    db.session.rollback()
    return n


@pytest.mark.slow
def test_worker_decides_again_after_each_redis_restart_and_stops_on_sigterm(
        app, db, factory, tmp_path, pg_database, own_redis):
    st = factory.station(steps=["SMT"])
    lot = factory.lot(factory.product(), quantity=ROUNDS * PER_ROUND)
    headers = factory.headers("operator")
    port = free_port()
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=own_redis.url, METRICS_PORT=port,
                      **TEST_CONFIG)
    worker = celery_worker(env, tmp_path, loglevel="INFO").start()
    relay_proc = relay(env | {"METRICS_PORT": "0"}, tmp_path).start()
    stop, scrapes = threading.Event(), []
    scraper = threading.Thread(target=_scrape, args=(f"http://127.0.0.1:{port}/metrics", stop,
                                                     scrapes), daemon=True)
    client = app.test_client()
    try:
        scraper.start()
        for r in range(ROUNDS):
            for i in range(PER_ROUND):
                post_completion(client, headers, lot, "SMT", st, qty_good=1)
                if i == PER_ROUND // 2:
                    own_redis.stop()
                    own_redis.start()
            want = (r + 1) * PER_ROUND
            wait_until(lambda: _accepted(db, lot) == want, 90, 0.5,
                       lambda: f"round {r}: {_accepted(db, lot)} of {want} accepted; "
                               f"worker log:\n{(tmp_path / 'worker.log').read_text()[-6000:]}")
        assert 200 in scrapes  # the exporter served all along
        log = (tmp_path / "worker.log").read_text()
        assert log.count("Connection to broker lost") >= ROUNDS - 1  # it did see the restarts
        assert "Unrecoverable error" not in log
        t = time.monotonic()
        worker.proc.terminate()
        worker.proc.wait(30)
        assert time.monotonic() - t < 30
    finally:
        stop.set()
        stop_all(worker, relay_proc)
