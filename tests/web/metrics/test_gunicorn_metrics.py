"""The web's metrics under gunicorn as deployed (web/gunicorn_conf.py): two workers write through
PROMETHEUS_MULTIPROC_DIR, any of them answers /metrics with the sum of both, the folder is
emptied at start, and a worker's exit (child_exit) drops its live gauges."""
from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.conftest import TEST_CONFIG
from tests.support.live import LiveServer
from tests.support.procs import service_env, wait_until

from .helpers import samples

pytestmark = pytest.mark.slow
REQUESTS = 24


@pytest.fixture()
def server(pg_database, redis_url, tmp_path):
    folder = tmp_path / "web-metrics"
    folder.mkdir()
    (folder / "counter_4242.db").write_bytes(b"an earlier run's counts")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, **TEST_CONFIG,
                      NEUROHUB_DATA_DIR=tmp_path / "data", PROMETHEUS_MULTIPROC_DIR=folder)
    s = LiveServer(env, tmp_path).start()
    yield s, folder
    s.stop()


def _scrape(base: str) -> dict:
    r = requests.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return samples(r.text)


def _readyz_total(found: dict) -> float:
    """neurohub_http_requests_total of GET /readyz, whatever the status."""
    return sum(v for (name, labels), v in found.items()
               if name == "neurohub_http_requests_total" and ("route", "/readyz") in labels)


def test_both_workers_are_counted_and_a_dead_workers_gauges_drop(server):
    s, folder = server
    assert not (folder / "counter_4242.db").exists()
    sent, pids = 0, set()
    while sent < REQUESTS or (len(pids) < 2 and sent < 10 * REQUESTS):
        # A connection each (Connection: close): the workers take turns accepting them.
        r = requests.get(f"{s.url}/readyz", timeout=10, headers={"Connection": "close"})
        assert r.status_code in (200, 503)
        sent += 1
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("counter_*.db")}
    assert len(pids) == 2, f"expected both workers to have counted: {pids}"
    assert _readyz_total(_scrape(s.url)) == sent
    live = sorted(folder.glob("gauge_livesum_*.db"))  # the database pool gauge, per worker
    assert live, list(folder.iterdir())
    victim = int(live[0].stem.rsplit("_", 1)[1])
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not live[0].exists(), 30, 0.2, "child_exit to drop the dead worker's gauges")
    assert (folder / f"counter_{victim}.db").exists()  # its counts still add up
    wait_until(s.up, 30, 0.2, "gunicorn to replace the worker")
    assert _readyz_total(_scrape(s.url)) == sent
