"""PostgreSQL cut while the pools are idle, then back: no request or task fails on a dead
pooled connection (web, worker and relay alike)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, relay, service_env, wait_until
from tests.support.tcpproxy import TcpProxy
from web.models import Completion, PeriodicRun

pytestmark = pytest.mark.slow  # real processes for seconds: started first under xdist

IDLE_CONNECTIONS = 4


def _proxied(url: str) -> tuple[TcpProxy, str]:
    """A proxy in front of the database of ``url``, and the URL that goes through it."""
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port)).up()
    return proxy, url.replace(host_port, f"127.0.0.1:{proxy.port}")


def _cut(proxy: TcpProxy) -> None:
    """Every open connection through the proxy dies; new ones get through again at once."""
    proxy.down()
    proxy.up()


def test_web_requests_after_an_idle_cut_never_fail(db, factory, pg_database, redis_url, tmp_path):
    from web import create_app
    from web.extensions import db as _db
    proxy, url = _proxied(pg_database)
    try:
        app2 = create_app(dict(TEST_CONFIG, DATABASE_URL=url, REDIS_URL=redis_url,
                               NEUROHUB_DATA_DIR=str(tmp_path)))
        st = factory.station(steps=["SMT"])
        lot = factory.lot(quantity=100)
        _, name = factory.user("operator", password="idle-cut-password")
        headers = factory.headers("operator")
        c = app2.test_client()
        with app2.app_context():  # fill the pool with idle connections, as after a busy minute
            conns = [_db.engine.connect() for _ in range(IDLE_CONNECTIONS)]
            for conn in conns:
                conn.exec_driver_sql("SELECT 1")
            for conn in conns:
                conn.close()
            assert _db.engine.pool.checkedin() == IDLE_CONNECTIONS
        _cut(proxy)
        codes = [c.post("/api/v1/completions", json={
            "lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex}).status_code
            for _ in range(40)]
        assert codes == [202] * 40
        _cut(proxy)
        r = c.post("/api/v1/auth/token", json={"username": name,
                                               "password": "idle-cut-password"})
        assert r.status_code == 200, r.json
        _cut(proxy)
        assert c.get("/readyz").status_code == 200
    finally:
        proxy.down()


def _count(db, **where) -> int:
    n = db.session.scalar(select(func.count()).select_from(Completion).filter_by(**where))
    db.session.rollback()
    return n


def test_worker_and_relay_after_an_idle_cut_never_fail(app, db, factory, pg_database, redis_url,
                                                       tmp_path):
    proxy, url = _proxied(pg_database)
    # A relay pass every 2 s: the cut (microseconds) cannot land inside one of its queries.
    env = service_env(**dict(TEST_CONFIG, DATABASE_URL=url, REDIS_URL=redis_url,
                             OUTBOX_RELAY_INTERVAL=2.0, NEUROHUB_DATA_DIR=str(tmp_path)))
    worker = celery_worker(env, tmp_path, queues="completions,default", loglevel="INFO").start()
    rel = relay(env, tmp_path).start()
    try:
        st = factory.station(steps=["SMT"])
        lots = [factory.lot(quantity=100) for _ in range(4)]
        headers = factory.headers("operator")
        c = app.test_client()

        def post_round():
            for lot in lots:  # a task per lot: both pool children use their connections
                r = c.post("/api/v1/completions", json={
                    "lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                assert r.status_code == 202, r.json

        for _ in range(3):
            post_round()
        wait_until(lambda: _count(db, status="accepted") == 12, 60, 0.1,
                   f"the first completions\n{worker.output()}\n{rel.output()}")
        celery_app = app.extensions["celery"]
        celery_app.send_task("workers.canary", args=["default"], queue="default")
        wait_until(lambda: db.session.get(PeriodicRun, "workers.canary:default"), 30, 0.2,
                   f"the first canary\n{worker.output()}")
        db.session.rollback()
        logs_at_cut = {p: p.log_path.stat().st_size for p in (worker, rel)}
        _cut(proxy)  # the worker children and the relay hold idle, now dead, connections
        # Canaries first (they have no retry), one per pool child, sent together.
        ids = [celery_app.send_task("workers.canary", args=["default", f"299{n}-01-01T00:00:00"
                                                         "+00:00"], queue="default").id
               for n in range(2)]

        def canaries_ended():
            log = worker.log_path.read_text(errors="replace")
            return all(f"workers.canary[{i}] succeeded" in log or f"workers.canary[{i}] raised"
                       in log for i in ids)
        wait_until(canaries_ended, 30, 0.2,
                   lambda: f"the canaries after the cut\n{worker.output()}")
        for _ in range(10):
            post_round()
        wait_until(lambda: _count(db, status="accepted") == 52, 90, 0.1,
                   f"completions after the cut\n{worker.output()}\n{rel.output()}")
        assert _count(db, status="failed") == 0
        for p, offset in logs_at_cut.items():
            with open(p.log_path, "rb") as fh:
                fh.seek(offset)
                after = fh.read().decode(errors="replace")
            for sign in ("OperationalError", "server closed the connection", "retry"):
                assert sign not in after, (
                    f"{p.name} failed on a dead pooled connection:\n{after[-3000:]}")
    finally:
        rel.stop()
        worker.stop()
        proxy.down()
