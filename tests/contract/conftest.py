"""The real stack for the contract test: gunicorn, a Celery worker on every queue and the outbox
relay, on the session's PostgreSQL database and Redis, with an admin and an operator."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.conftest import TEST_CONFIG
from tests.support.factories import Factory
from tests.support.live import LiveServer
from tests.support.procs import celery_worker, relay, service_env, wait_until

# schemathesis's parametrized tests do not survive pytest-xdist under pytest 9.2: a worker runs
# one operation's cases and reports the rest as passed. So under xdist the contract runs in a
# pytest process of its own (test_contract_process.py); without xdist, directly.
UNDER_XDIST_ONLY = "test_contract_process.py"
WITHOUT_XDIST_ONLY = "test_schemathesis.py"


def pytest_ignore_collect(collection_path, config):
    """Collect the contract directly, or through its own process under xdist: never both."""
    under_xdist = hasattr(config, "workerinput")
    if collection_path.name == WITHOUT_XDIST_ONLY:
        return True if under_xdist else None
    if collection_path.name == UNDER_XDIST_ONLY:
        return None if under_xdist else True
    return None


def _empty_database(app) -> None:
    """TRUNCATE every table (retried: a process of a previous package may still be querying)."""
    from web.extensions import db
    with app.app_context():
        for attempt in range(10):
            try:
                tables = db.session.scalars(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'")).all()
                db.session.execute(text("SET LOCAL lock_timeout = '5s'"))
                db.session.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
                db.session.commit()
                return
            except OperationalError:
                db.session.rollback()
                if attempt == 9:
                    raise
                time.sleep(0.3)
        db.session.remove()


class Stack:
    """The running processes, their base URL and the users' Authorization headers."""

    def __init__(self, server: LiveServer, procs: list, headers: dict[str, dict]):
        self.server, self.procs, self.headers = server, procs, headers
        self.url = server.url

    def logs(self) -> str:
        """Recent output of every process (for failure messages)."""
        return "\n".join(f"--- {p.name} ---\n{p.output()}" for p in (self.server.proc, *self.procs))


@pytest.fixture(scope="package")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """gunicorn + Celery worker (all queues) + relay, and some data for the API to find."""
    _empty_database(app)
    factory = Factory(app)
    headers = {role: factory.headers(role) for role in ("admin", "operator")}
    product = factory.product("NH-100")
    factory.station("ST-01", ["SMT"])
    lot = factory.lot(product, quantity=5)
    log_dir = tmp_path_factory.mktemp("contract-stack")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                      NEUROHUB_DATA_DIR=str(tmp_path_factory.mktemp("contract-data")),
                      **TEST_CONFIG)
    server = LiveServer(env, log_dir).start()
    worker = celery_worker(env, log_dir, name="contract-worker",
                           queues="completions,default,printing,io").start()
    relay_proc = relay(env, log_dir).start()
    celery_app = app.extensions["celery"]
    wait_until(lambda: celery_app.control.ping(timeout=0.5), 60, message="the worker to answer")
    stack = Stack(server, [worker, relay_proc], headers)
    stack.product, stack.lot = product, lot
    yield stack
    relay_proc.stop()
    worker.stop()
    server.stop()
