"""The request id on outbox rows (migration 0007), through the relay into the Celery headers, and
on to the messages a worker enqueues while it decides (the label jobs' print messages)."""
from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from sqlalchemy import inspect, select

from tests.conftest import PG_ADMIN, TEST_CONFIG, _pg_url
from tests.support.broker import private_queue
from tests.web.services.outbox.test_relay import Recorder
from web import logs
from web.models import LabelJob, OutboxMessage
from web.services import completions, outbox
from web.services.audit import Actor
from web.services.completions.processing import process_completion
from web.services.outbox.relay import relay_batch
from workers.broker import publish_claimed, publisher
from workers.request_ids import HEADER, stamp_request_id

QUEUE = "request-ids-test"
LABELLED = [{"step": "PACK", "name": "Packing", "label_template": "unit"}]


def _rows(db) -> dict[str, str | None]:
    return dict(db.session.execute(select(OutboxMessage.dedup_key,
                                          OutboxMessage.request_id)).all())


def test_enqueue_stores_the_current_request_id_or_none(app, db):
    with app.app_context():
        with logs.request_id_bound("rq-enqueue-1"):
            outbox.enqueue("labels.print", [1], "printing", "label:1")
            outbox.enqueue("labels.print", [2], "printing", "label:2", request_id="rq-other")
        outbox.enqueue("labels.print", [3], "printing", "label:3")
        db.session.commit()
        assert _rows(db) == {"label:1": "rq-enqueue-1", "label:2": "rq-other", "label:3": None}
        # done() hands back the ids of what it deleted, for the effect's log lines
        assert outbox.done(["label:1", "label:3", "label:404"]) == {"label:1": "rq-enqueue-1",
                                                                    "label:3": None}


def test_a_posted_completion_stores_the_stations_request_id_on_its_message(client, db, factory):
    """The PostgreSQL hot path (one statement: completion, message, audit) stores it too."""
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=1)
    r = client.post("/api/v1/completions", json={"lot_no": lot, "step": "SMT", "station": st,
                                                 "qty_good": 1},
                    headers={**factory.headers("operator"), "Idempotency-Key": uuid.uuid4().hex,
                             "X-Request-ID": "st-7.post:1"})
    assert r.status_code == 202 and r.headers["X-Request-ID"] == "st-7.post:1"
    assert _rows(db) == {f"completion:{r.json['id']}": "st-7.post:1"}


def test_the_relay_publishes_each_rows_own_request_id_and_logs_it(app, db, factory, caplog):
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lots = [factory.lot(quantity=1) for _ in range(2)]
    rec = Recorder()
    with app.app_context():
        for i, lot in enumerate(lots):
            with logs.request_id_bound(f"rq-relay-{i}"):
                completions.submit({"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                                   uuid.uuid4().hex, Actor(uid, name))
        with caplog.at_level(logging.INFO, logger="web.services.outbox.relay"):
            assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 2
    assert rec.request_ids == ["rq-relay-0", "rq-relay-1"]
    published = [r for r in caplog.records if r.getMessage().startswith("published ")]
    assert [r.request_id for r in published] == ["rq-relay-0", "rq-relay-1"]


def test_a_coalesced_message_names_the_request_ids_it_covers(app, db, factory, caplog):
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=3)
    with app.app_context():
        for i in range(3):
            with logs.request_id_bound(f"rq-lot-{i}"):
                completions.submit({"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                                   uuid.uuid4().hex, Actor(uid, name))
        rec = Recorder()
        with caplog.at_level(logging.INFO, logger="web.services.outbox.relay"):
            assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 3
    assert rec.request_ids == ["rq-lot-2"]  # one message, the newest, covers the lot's three
    line, = [r for r in caplog.records if r.getMessage().startswith("published ")]
    assert line.request_id == "rq-lot-2" and line.covers == ["rq-lot-0", "rq-lot-1"]


def test_the_message_headers_carry_the_request_id_on_the_real_broker(app, redis_url):
    """Relay (named per row), a worker's claimed messages, and any other publisher (signal)."""
    with private_queue(app, redis_url, QUEUE) as (celery_app, published):
        with publisher(celery_app) as publish:
            publish("labels.print", [1], "printing", "relay-1", "rq-row-1")
            with logs.request_id_bound("rq-current"):
                publish("labels.print", [2], "printing", "relay-2", None)  # the row had none
                publish_claimed(celery_app, [("labels.print", [3], "printing", "label:3",
                                              "rq-claimed-3"),
                                             ("labels.print", [4], "printing", "label:4")])
                celery_app.send_task("labels.print", args=[5], task_id="plain-5")
        headers = {h["id"]: h.get(HEADER) for h in published()}
    assert headers == {"relay-1": "rq-row-1", "relay-2": None, "label-3": "rq-claimed-3",
                       "label-4": "rq-current", "plain-5": "rq-current"}


def test_the_publish_signal_never_overrides_a_named_id():
    with logs.request_id_bound("rq-now"):
        named, bare, other = {HEADER: "rq-named"}, {}, {HEADER: None}
        for h in (named, bare, other):
            stamp_request_id(headers=h)
    assert (named, bare, other) == ({HEADER: "rq-named"}, {HEADER: "rq-now"}, {HEADER: None})


def test_label_jobs_inherit_the_request_id_of_the_completion_that_earned_them(app, db, factory,
                                                                             caplog):
    """One worker transaction decides a lot's pending completions of several requests: each
    decision line and each label's message carries its own completion's request id."""
    uid, name = factory.user("operator")
    product = factory.product(routing=LABELLED)
    st = factory.station(steps=["PACK"], printer_uri="tcp://127.0.0.1:9")
    lot = factory.lot(product, quantity=2, serials=["SN-RQ-1", "SN-RQ-2"])
    with app.app_context():
        ids = []
        for serial in ("SN-RQ-1", "SN-RQ-2"):
            with logs.request_id_bound(f"rq-{serial}"):
                ids.append(completions.submit({"lot_no": lot, "step": "PACK", "station": st,
                                               "unit_serial": serial},
                                              uuid.uuid4().hex, Actor(uid, name)).id)
        # The task runs under its message's id (the newest's): each decision under its own.
        with logs.request_id_bound("rq-SN-RQ-2"), outbox.claiming() as claimed, \
                caplog.at_level(logging.INFO, logger="web.services.completions.processing"):
            assert process_completion(ids[-1]) == "accepted"
        jobs = dict(db.session.execute(select(LabelJob.unit_serial, LabelJob.id)).all())
        rows = _rows(db)
    assert rows == {f"label:{jobs['SN-RQ-1']}": "rq-SN-RQ-1",
                    f"label:{jobs['SN-RQ-2']}": "rq-SN-RQ-2"}
    assert [c[4] for c in claimed] == ["rq-SN-RQ-2"]  # one publish per printer: the newest
    decided = {r.getMessage(): r.request_id for r in caplog.records}
    assert decided == {f"completion {ids[0]} decided: accepted": "rq-SN-RQ-1",
                       f"completion {ids[1]} decided: accepted": "rq-SN-RQ-2"}


def test_migration_0007_adds_and_removes_the_column_on_sqlite(app, tmp_path):
    from flask_migrate import downgrade, upgrade

    from web import create_app
    from web.extensions import db
    app2 = create_app(dict(TEST_CONFIG, NEUROHUB_DATA_DIR=str(tmp_path / "var")))
    try:
        with app2.app_context():
            assert app2.config["EMBEDDED"]
            upgrade()
            assert _columns(db)["request_id"]["nullable"]
            # and the app's logging survives the migration (no alembic.ini fileConfig)
            assert any(getattr(h, "_neurohub", False) for h in logging.getLogger().handlers)
            downgrade(revision="0006")
            assert "request_id" not in _columns(db)
            upgrade()
            assert "request_id" in _columns(db)
            db.engine.dispose()
    finally:
        app.extensions["celery"].set_default()  # create_app made its own the default


def _columns(db) -> dict:
    return {c["name"]: c for c in inspect(db.engine).get_columns("outbox_messages")}


@pytest.fixture()
def scratch_pg():
    """A fresh, empty PostgreSQL database for a migration round trip; dropped afterwards."""
    name = f"nh_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0007_round_trips_on_postgresql_and_the_models_match(app, scratch_pg,
                                                                        tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import downgrade, upgrade

    from web import create_app
    from web.extensions import db
    app2 = create_app(dict(TEST_CONFIG, DATABASE_URL=scratch_pg,
                           NEUROHUB_DATA_DIR=str(tmp_path / "var")))
    try:
        with app2.app_context():
            upgrade()
            downgrade(revision="0006")
            assert "request_id" not in _columns(db)
            upgrade()
            col = _columns(db)["request_id"]
            assert col["nullable"] and col["type"].length == 64
            with db.engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn, opts={
                    "compare_type": True}), db.metadata)
            assert diff == []  # the models (OutboxMessage.request_id too) are what migrations make
            db.engine.dispose()
    finally:
        app.extensions["celery"].set_default()  # create_app made its own the default
