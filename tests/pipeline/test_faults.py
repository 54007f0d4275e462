"""Faults lose nothing and double nothing: a SIGKILLed worker, a flushed broker, PostgreSQL gone."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from sqlalchemy import func, select, text

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until
from tests.support.tcpproxy import TcpProxy
from web.models import AuditEvent, Completion, Lot, OutboxMessage

LOTS, PER_LOT = 20, 100  # 2,000 completions, each counting one unit at SMT


def _counts(db):
    rows = db.session.execute(select(Completion.status, func.count()).group_by(
        Completion.status)).all()
    db.session.rollback()
    return dict(rows)


def _post_all(app, headers, bodies):
    """POST every body with its own Idempotency-Key from 4 threads; returns the status codes."""
    def worker(chunk):
        c = app.test_client()
        return [c.post("/api/v1/completions", json=b,
                       headers={**headers, "Idempotency-Key": uuid.uuid4().hex}).status_code
                for b in chunk]
    chunks = [bodies[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return [code for codes in pool.map(worker, chunks) for code in codes]


@pytest.fixture()
def line(app, db, factory, tmp_path, pg_database, redis_url):
    """20 lots x 100 units at SMT, an operator, and a worker + relay that the test may break."""
    st = factory.station(steps=["SMT"])
    product = factory.product()
    lots = [factory.lot(product, quantity=PER_LOT) for _ in range(LOTS)]
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, **TEST_CONFIG)
    procs = {"worker": celery_worker(env, tmp_path).start(), "relay": relay(env, tmp_path).start()}
    bodies = [{"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1}
              for _ in range(PER_LOT) for lot in lots]
    yield {"lots": lots, "bodies": bodies, "procs": procs, "headers": factory.headers("operator")}
    stop_all(*procs.values())


def _assert_exactly_once(db, lots):
    """Every completion accepted once: counts, lot positions and audit rows all exact."""
    assert _counts(db) == {"accepted": LOTS * PER_LOT}
    rows = db.session.execute(select(Lot.lot_no, Lot.status, Lot.current_step, Lot.qty_good,
                                     Lot.step_passed).where(Lot.lot_no.in_(lots))).all()
    assert sorted(r[1:] for r in rows) == [("in_process", "FCT", PER_LOT, 0)] * LOTS
    actions = dict(db.session.execute(select(AuditEvent.action, func.count()).group_by(
        AuditEvent.action)).all())
    assert actions["completion.received"] == LOTS * PER_LOT
    assert actions["completion.accepted"] == LOTS * PER_LOT
    assert actions["lot.started"] == LOTS and actions["lot.advanced"] == LOTS
    assert "completion.rejected" not in actions and "completion.failed" not in actions
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.slow
def test_sigkill_worker_with_2000_in_flight_processes_each_exactly_once(app, db, line):
    codes = _post_all(app, line["headers"], line["bodies"])
    assert codes == [202] * len(line["bodies"])
    worker = line["procs"]["worker"]
    wait_until(lambda: _counts(db).get("accepted", 0) >= 200, 120, 0.02, "some progress")
    worker.kill()  # main process and pool children, mid-run
    at_kill = _counts(db).get("accepted", 0)
    assert at_kill < LOTS * PER_LOT, "the worker finished before it could be killed"
    worker.start()
    wait_until(lambda: _counts(db).get("accepted", 0) == LOTS * PER_LOT, 240, 0.2,
               f"all completions accepted after the restart (had {at_kill} at kill)\n"
               f"{worker.output()}")
    _assert_exactly_once(db, line["lots"])


@pytest.mark.slow
def test_broker_flushed_mid_run_sweep_republishes_and_all_complete(app, db, line, redis_url):
    codes = _post_all(app, line["headers"], line["bodies"])
    assert codes == [202] * len(line["bodies"])
    wait_until(lambda: _counts(db).get("accepted", 0) >= 200, 120, 0.02, "some progress")
    # Redis lost: every queued and unacked message and every binding is gone (the broker's DB
    # only; other databases on this shared Redis are not ours to wipe).
    redis.Redis.from_url(redis_url).flushdb()
    at_flush = _counts(db).get("accepted", 0)
    assert at_flush < LOTS * PER_LOT, "the worker finished before the flush"
    wait_until(lambda: _counts(db).get("accepted", 0) == LOTS * PER_LOT, 240, 0.2,
               f"all completions accepted after the flush (had {at_flush})\n"
               f"{line['procs']['worker'].output()}\n{line['procs']['relay'].output()}")
    _assert_exactly_once(db, line["lots"])


def test_postgres_unreachable_at_post_is_503_and_nothing_half_written(db, factory, pg_database,
                                                                       redis_url):
    from web import create_app
    host_port = pg_database.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port)).up()
    url = pg_database.replace(host_port, f"127.0.0.1:{proxy.port}")
    app2 = create_app(dict(TEST_CONFIG, DATABASE_URL=url, REDIS_URL=redis_url))
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=5)
    headers = {**factory.headers("operator"), "Idempotency-Key": "outage-1"}
    body = {"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1}
    c = app2.test_client()
    assert c.post("/api/v1/completions", json=body, headers=headers).status_code == 202
    before = {t: db.session.scalar(text(f"select count(*) from {t}"))
              for t in ("completions", "outbox_messages", "audit_events")}
    db.session.rollback()
    proxy.down()
    try:
        for key in ("outage-2", "outage-3"):
            r = c.post("/api/v1/completions", json=body,
                       headers={**headers, "Idempotency-Key": key})
            assert r.status_code == 503, r.json
            assert r.headers["Retry-After"].isdigit()
            assert r.mimetype == "application/problem+json"
        assert c.get("/readyz").status_code == 503
    finally:
        proxy.up()
    after = {t: db.session.scalar(text(f"select count(*) from {t}")) for t in before}
    assert after == before  # nothing half-written during the outage
    # The station retries with the same key once the database is back: stored exactly once.
    r1 = c.post("/api/v1/completions", json=body, headers={**headers, "Idempotency-Key": "outage-2"})
    r2 = c.post("/api/v1/completions", json=body, headers={**headers, "Idempotency-Key": "outage-2"})
    assert (r1.status_code, r2.status_code) == (202, 202)
    assert r1.json["id"] == r2.json["id"]
    assert db.session.scalar(text("select count(*) from completions")) == before["completions"] + 1
    proxy.down()
