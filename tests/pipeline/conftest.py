"""A real pipeline for these tests: Celery worker and outbox relay subprocesses on Redis."""
from __future__ import annotations

import pytest

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until


class Pipeline:
    """The running worker + relay, with their environment and logs."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir = env, log_dir
        self.worker = celery_worker(env, log_dir, queues="completions,default,printing")
        self.relay = relay(env, log_dir)

    def logs(self) -> str:
        """Recent output of both processes, for assertion messages."""
        return f"--- worker ---\n{self.worker.output()}\n--- relay ---\n{self.relay.output()}"


@pytest.fixture(scope="module")
def pipeline(app, pg_database, redis_url, tmp_path_factory):
    """Start a worker and a relay against the session database; stop them afterwards."""
    log_dir = tmp_path_factory.mktemp("pipeline-logs")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                      **{k: v for k, v in TEST_CONFIG.items()})
    p = Pipeline(env, log_dir)
    p.worker.start()
    p.relay.start()
    celery_app = app.extensions["celery"]
    wait_until(lambda: celery_app.control.ping(timeout=0.5), 60, message="the worker to answer")
    yield p
    stop_all(p.relay, p.worker)


def wait_status(client, headers, completion_id, timeout=30.0, statuses=("accepted", "rejected",
                                                                        "failed")):
    """Poll the API until the completion is decided; returns its JSON."""
    def decided():
        body = client.get(f"/api/v1/completions/{completion_id}", headers=headers).json
        return body if body["status"] in statuses else None
    return wait_until(decided, timeout, 0.05, f"completion {completion_id} to be decided")
