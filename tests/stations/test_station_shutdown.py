"""Closing the station app while a background job still uses its databases: the job ends first,
then the databases close (closing a SQLite connection under a running query crashed the test
process with a segfault once, in a firmware sync)."""
from __future__ import annotations

import threading

from stations.config import StationConfig
from stations.station import StationContext
from stations.threads import run_async, wait_idle


def test_stop_waits_for_a_background_job_that_uses_the_databases(qapp, tmp_path):
    ctx = StationContext(StationConfig(server="http://127.0.0.1:9", station="ST-01",
                                       scanner_mode="none", data_dir=str(tmp_path)))
    started, finished, outcome = threading.Event(), threading.Event(), {}

    def busy():
        started.set()
        for i in range(400):  # a few hundred ms of writes, as a sync of assignments does
            ctx.cache.put("assignments", {"n": i})
            ctx.queue.prune(older_than_days=30)
        finished.set()
        return "done"

    def failed(exc):
        outcome["error"] = exc

    run_async(busy, on_done=lambda r: outcome.setdefault("result", r), on_error=failed)
    assert started.wait(10)
    ctx.stop()  # the window's shutdown, while the job runs
    # stop() closed the databases only after the job was done with them (before, it closed
    # them under the job, which then reopened its own connection: never closed, or a crash)
    assert finished.is_set()
    assert ctx.cache._db._conns == {} and ctx.queue._db._conns == {}
    assert wait_idle(10)
    qapp.processEvents()  # deliver the job's done/error signal
    assert outcome == {"result": "done"}, outcome
