"""Receiving a completion on the embedded SQLite database: the same contract as on PostgreSQL
(idempotent per key, references checked, completion + outbox message + audit row together), and
the write lock is taken only for the INSERTs: a replay or a refused request never waits for it."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, select, text

from tests.conftest import TEST_CONFIG
from web.extensions import db
from web.models import AuditEvent, Completion, OutboxMessage, User
from web.services import completions as svc
from web.services.audit import Actor


@pytest.fixture()
def lite(app, tmp_path):
    """An app on a fresh embedded SQLite database with the demo line and one NH-100 lot."""
    from flask_migrate import upgrade

    from web import create_app
    from web.services.audit import CLI
    from web.services.lots import create_lot
    app2 = create_app(dict(TEST_CONFIG, NEUROHUB_DATA_DIR=str(tmp_path / "var")))
    try:
        with app2.app_context():
            upgrade()
            assert app2.test_cli_runner().invoke(args=["seed-demo"]).exit_code == 0
            lot_no = create_lot("NH-100", 4, None, None, CLI).lot_no
            db.session.commit()
            op = db.session.scalar(select(User).where(User.username == "operator"))
            actor = Actor(op.id, op.username, "req-1")
            db.session.remove()
            yield app2, tmp_path / "var" / "neurohub.sqlite3", lot_no, actor
            db.session.remove()
            db.engine.dispose()
    finally:
        app.extensions["celery"].set_default()  # create_app made its own the default


def _body(lot_no, **extra):
    return {"lot_no": lot_no, "step": "SMT", "station": "ST-01", **extra}


def _count(model, **where):
    return db.session.scalar(select(func.count()).select_from(model).filter_by(**where))


def test_a_completion_its_message_and_its_audit_row_go_in_together(lite):
    app2, _, lot_no, actor = lite
    with app2.app_context():
        first = svc.submit(_body(lot_no), "k-1", actor)
        assert not first.replayed
        c = db.session.get(Completion, first.id)
        assert (c.status, c.step, c.idempotency_key) == ("received", "SMT", "k-1")
        assert c.received_at is not None and c.reasons == [] and c.measurements == {}
        msg = db.session.scalar(select(OutboxMessage))
        assert (msg.task, msg.args, msg.dedup_key) == (
            "completions.process", [first.id, c.lot_id], f"completion:{first.id}")
        audit = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "completion.received"))
        assert (audit.entity_id, audit.lot_id, audit.actor_id, audit.request_id) == (
            str(first.id), c.lot_id, actor.id, "req-1")
        assert audit.after == {"lot_no": lot_no, "step": "SMT", "station": "ST-01"}


def test_same_key_replays_and_a_reused_key_or_unknown_code_is_refused(lite):
    app2, _, lot_no, actor = lite
    with app2.app_context():
        first = svc.submit(_body(lot_no), "k-1", actor)
        again = svc.submit(_body(lot_no), "k-1", actor)
        assert (again.id, again.replayed) == (first.id, True)
        with pytest.raises(svc.KeyReused):
            svc.submit(_body(lot_no, unit_serial="X"), "k-1", actor)
        for field, body in (("lot_no", _body("NOPE")),
                            ("station", dict(_body(lot_no), station="ST-99")),
                            ("step", dict(_body(lot_no), step="NOSTEP"))):
            with pytest.raises(svc.UnknownReference) as err:
                svc.submit(body, f"k-{field}", actor)
            assert err.value.field == field
        assert _count(Completion) == 1 and _count(OutboxMessage) == 1


def test_a_replay_and_a_refusal_do_not_wait_for_the_write_lock(lite):
    app2, path, lot_no, actor = lite
    with app2.app_context():
        first = svc.submit(_body(lot_no), "k-1", actor)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a worker in the middle of a long write
        try:
            started = time.monotonic()
            assert svc.submit(_body(lot_no), "k-1", actor) == svc.Receipt(first.id, True)
            with pytest.raises(svc.UnknownReference):
                svc.submit(_body("NOPE"), "k-2", actor)
            # The lookups used to run inside BEGIN IMMEDIATE: 30 s of busy timeout, then 503.
            assert time.monotonic() - started < 2
        finally:
            holder.execute("ROLLBACK")
            holder.close()


def test_an_autocommit_read_takes_no_write_lock(lite):
    app2, path, _, _ = lite
    with app2.app_context():
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                assert conn.execute(text("SELECT count(*) FROM completions")).scalar() == 0
            assert time.monotonic() - started < 2  # the relay's reads of the outbox do this
        finally:
            holder.execute("ROLLBACK")
            holder.close()


def test_two_requests_with_one_key_at_once_store_one_completion(lite):
    app2, _, lot_no, actor = lite
    receipts, errors = [], []
    go = threading.Barrier(4)

    def post():
        try:
            with app2.app_context():
                go.wait()
                receipts.append(svc.submit(_body(lot_no), "same-key", actor))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r.id for r in receipts}) == 1 and len(receipts) == 4
    assert sorted(r.replayed for r in receipts) == [False, True, True, True]
    with app2.app_context():
        assert _count(Completion) == 1 and _count(OutboxMessage) == 1
