"""The whole product as real processes, each serving its metrics, for the tests that scrape them:
gunicorn (2 workers), the completions worker, the I/O worker, the outbox relay and beat, on the
session's PostgreSQL and Redis. Each service gets its own PROMETHEUS_MULTIPROC_DIR and exporter
port, as `neurohub up`, the container entrypoint and the systemd units give them."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import requests
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.conftest import TEST_CONFIG, empty_database
from tests.support.broker import empty_product_queues
from tests.support.live import LiveServer
from tests.support.procs import (Proc, celery_worker, free_port, relay, service_env, stop_all,
                                 wait_until)

# The Prometheus job names of deploy/prometheus (the ops contract).
JOBS = {"web": "neurohub-web", "worker": "neurohub-worker", "worker-io": "neurohub-worker-io",
        "relay": "neurohub-relay", "beat": "neurohub-beat"}


class MetricsStack:
    """web, worker, worker-io, relay and beat; ``targets`` is what Prometheus scrapes."""

    def __init__(self, pg_database: str, redis_url: str, work_dir: Path, **settings):
        self.dir = Path(work_dir)
        self.pg_database, self.redis_url = pg_database, redis_url
        self.logs = self.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                               NEUROHUB_DATA_DIR=self.dir / "data", METRICS_HOST="127.0.0.1",
                               **TEST_CONFIG, **settings)
        self.ports = {name: free_port() for name in ("worker", "worker-io", "relay", "beat")}
        self.web = LiveServer(self._env("web"), self.logs)
        self.worker = celery_worker(self._env("worker"), self.logs, "worker",
                                    "completions,default", concurrency=2)
        self.worker_io = celery_worker(self._env("worker-io"), self.logs, "worker-io",
                                       "printing,io", concurrency=1)
        self.relay = relay(self._env("relay"), self.logs)
        self.beat = Proc("beat", [sys.executable, "-m", "celery", "-A", "workers.main", "beat",
                                  "-l", "WARNING", "-s", str(self.dir / "celerybeat-schedule")],
                         self._env("beat"), self.logs)

    def _env(self, name: str) -> dict:
        env = dict(self.env, PROMETHEUS_MULTIPROC_DIR=str(self.dir / "metrics" / name))
        if name in self.ports:
            env["METRICS_PORT"] = str(self.ports[name])
        return env

    @property
    def targets(self) -> dict[str, list[str]]:
        """Prometheus job name -> ["127.0.0.1:port"] of each service."""
        out = {JOBS["web"]: [f"127.0.0.1:{self.web.port}"]}
        out.update({JOBS[name]: [f"127.0.0.1:{port}"] for name, port in self.ports.items()})
        return out

    def exporter(self, name: str) -> str:
        """The metrics URL of a service."""
        if name == "web":
            return f"{self.web.url}/metrics"
        return f"http://127.0.0.1:{self.ports[name]}/metrics"

    def _answers(self, name: str) -> bool:
        try:
            return requests.get(self.exporter(name), timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _clear_leftovers(self) -> None:
        """Empty the session's database and product queues first: outbox rows, pending label jobs
        and messages earlier tests left would be this stack's first work, counted in the metrics
        under test (a fourth printed label for three, once, in fresh-clone CI)."""
        empty_product_queues(self.redis_url)
        engine = create_engine(self.pg_database)
        try:
            with Session(engine) as session:
                empty_database(session)
        finally:
            engine.dispose()

    def start(self) -> "MetricsStack":
        """Start every service on an empty database and wait until each one's metrics answer."""
        self._clear_leftovers()
        for p in (self.worker, self.worker_io, self.relay, self.beat):
            p.start()
        self.web.start()
        for name, proc in (("worker", self.worker), ("worker-io", self.worker_io),
                           ("relay", self.relay), ("beat", self.beat)):
            wait_until(lambda: self._answers(name), 90, 0.3,
                       lambda: f"{name}'s metrics exporter\n{proc.output()}")
        return self

    def stop(self) -> None:
        """Stop everything."""
        stop_all(self.relay, self.beat, self.worker, self.worker_io)
        self.web.stop()

    @classmethod
    @contextmanager
    def running(cls, pg_database: str, redis_url: str, work_dir: Path, **settings):
        """The stack started (stopped again if a service does not come up), then stopped."""
        stack = cls(pg_database, redis_url, work_dir, **settings)
        try:
            yield stack.start()
        finally:
            stack.stop()

    def logs_text(self) -> str:
        """The services' recent output, for assertion messages."""
        return "\n".join(f"--- {p.name} ---\n{p.output(3000)}" for p in (
            self.web.proc, self.worker, self.worker_io, self.relay, self.beat))
