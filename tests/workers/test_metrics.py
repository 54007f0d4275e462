"""workers/metrics.py with a real Celery worker and relay on the session's PostgreSQL and Redis:
the relay counts what it sends and stamps its publish time, the worker's exporter serves what
its pool children counted (tasks by state, run time, queue wait, decisions and their latency)
and its queues' up gauge."""
from __future__ import annotations

import pytest
import requests

from queues import worker_role

from tests.conftest import TEST_CONFIG
from tests.support.broker import empty_product_queues
from tests.support.factories import post_completion
from tests.pipeline.conftest import wait_status
from tests.support.procs import (celery_worker, free_port, relay, service_env, stop_all,
                                 wait_until)
from tests.web.metrics.helpers import samples, value
from workers import metrics

pytestmark = pytest.mark.slow
TASK = {"name": "completions.process", "queue": "completions"}


@pytest.fixture(scope="module")
def exporters(app, pg_database, redis_url, tmp_path_factory):
    """A worker (completions, default) and the relay, each with its exporter; their URLs."""
    work = tmp_path_factory.mktemp("worker-metrics")
    ports = {"worker": free_port(), "relay": free_port()}
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, **TEST_CONFIG)
    worker = celery_worker(dict(env, METRICS_PORT=str(ports["worker"]),
                                PROMETHEUS_MULTIPROC_DIR=str(work / "worker")), work)
    rel = relay(dict(env, METRICS_PORT=str(ports["relay"])), work)
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    # Messages earlier tests left would be this worker's first tasks, with their long waits; and
    # outbox rows they left undone, this relay would publish: decisions counted here too (41
    # SMT decisions for 1, once, in fresh-clone CI).
    empty_product_queues(redis_url)
    from sqlalchemy import delete

    from web.extensions import db
    from web.models import OutboxMessage
    with app.app_context():
        db.session.execute(delete(OutboxMessage))
        db.session.commit()
    worker.start()
    rel.start()
    try:
        for name, proc in (("worker", worker), ("relay", rel)):
            wait_until(lambda: _answers(urls[name]), 90, 0.3,
                       lambda: f"the {name}'s exporter\n{proc.output()}")
        yield urls
    finally:
        stop_all(rel, worker)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _scrape(url: str) -> dict:
    return samples(requests.get(url, timeout=10).text)


def test_worker_and_relay_count_tasks_decisions_and_waits(exporters, client, auth, factory):
    op = auth("operator")
    smt, fct = factory.station(steps=["SMT"]), factory.station(steps=["FCT"])
    lot = factory.lot(quantity=1)  # SMT -> FCT -> PACK
    good = post_completion(client, op, lot, "SMT", smt)
    assert wait_status(client, op, good)["status"] == "accepted"
    bad = post_completion(client, op, lot, "FCT", fct,
                          measurements={"voltage": 3.9, "current_ma": 41.2})
    assert wait_status(client, op, bad)["status"] == "rejected"

    def decided():
        found = _scrape(exporters["worker"])
        return found if (value(found, "neurohub_completion_decision_seconds_count", step="FCT")
                         or 0) >= 1 else None
    found = wait_until(decided, 30, 0.3, "the worker's exporter to show the decisions")
    assert value(found, "neurohub_completions_decided_total", step="SMT", result="accepted",
                 reason="") == 1
    assert value(found, "neurohub_completions_decided_total", step="FCT", result="rejected",
                 reason="out_of_spec") == 1
    assert value(found, "neurohub_completion_decision_seconds_count", step="SMT") == 1
    for state in ("received", "started", "succeeded"):
        assert value(found, "neurohub_celery_tasks_total", **TASK, state=state) >= 2, state
    assert value(found, "neurohub_celery_task_runtime_seconds_count", **TASK) >= 2
    # The relay stamped each message with its publish time: every start observed its wait.
    assert value(found, "neurohub_celery_task_queue_wait_seconds_count", **TASK) >= 2
    assert 0 < value(found, "neurohub_celery_task_queue_wait_seconds_sum", **TASK) < 60
    assert value(found, "neurohub_celery_worker_up", queue="completions") == 1
    assert value(found, "neurohub_celery_worker_up", queue="default") == 1
    assert value(found, "neurohub_build_info", version=_version(found), role="worker") == 1
    sent = _scrape(exporters["relay"])
    assert value(sent, "neurohub_celery_tasks_total", **TASK, state="sent") >= 2
    assert value(sent, "neurohub_build_info", version=_version(sent), role="relay") == 1


def _version(found: dict) -> str:
    return next(dict(labels)["version"] for (name, labels) in found
                if name == "neurohub_build_info")


def test_worker_roles_follow_their_queues():
    assert worker_role(["completions", "default"]) == "worker"
    assert worker_role(["printing", "io"]) == "worker-io"
    assert worker_role(["printing", "completions"]) == "worker"


def test_nothing_is_connected_while_metrics_are_off(app):
    class Off:
        config = dict(app.config, METRICS_ENABLED=False)

    def connected() -> list:
        return [h for sig, h in metrics.HANDLERS if any(r is h for _, r in sig.receivers)]
    try:
        metrics.connect(Off())
        assert connected() == []
    finally:
        metrics.connect(app)  # metrics are process-wide: back on for the other tests
    assert len(connected()) == len(metrics.HANDLERS)


def test_a_retry_waits_in_the_queue_only_from_its_eta(app):
    """A retried task's countdown is not queueing: the wait runs from max(publish, eta)."""
    import time
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from prometheus_client import REGISTRY
    labels = {"name": "test.retried", "queue": "completions"}

    def observe(published: float, eta) -> float:
        before = REGISTRY.get_sample_value("neurohub_celery_task_queue_wait_seconds_sum",
                                           labels) or 0.0
        request = SimpleNamespace(delivery_info={"routing_key": "completions"}, eta=eta,
                                  **{metrics.PUBLISHED_HEADER: published})
        metrics._prerun("t-1", SimpleNamespace(name="test.retried", request=request))
        metrics._started.pop("t-1", None)
        return REGISTRY.get_sample_value("neurohub_celery_task_queue_wait_seconds_sum",
                                         labels) - before

    now = time.time()
    due = datetime.fromtimestamp(now - 2, timezone.utc)
    assert 1.9 < observe(now - 30, due.isoformat()) < 5  # 28 s of countdown left out
    assert 1.9 < observe(now - 30, due) < 5  # a datetime, as some transports give it
    assert 29.9 < observe(now - 30, None) < 35  # no ETA: all of it was queueing
    assert 29.9 < observe(now - 30, "not a time") < 35
    assert 0 <= observe(now - 1, (due - timedelta(hours=1)).isoformat()) < 4
