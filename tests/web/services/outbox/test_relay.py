"""The outbox relay: publish once, back off, republish lost messages, dead-letter poison."""
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from web.models import Completion, OutboxMessage, utcnow
from web.services import completions
from web.services.audit import Actor
from web.services.outbox.relay import relay_batch


class Recorder:
    """Collects what the relay publishes (the broker side is covered by the pipeline tests)."""

    def __init__(self, fail_after=None):
        self.sent, self.fail_after, self.request_ids = [], fail_after, []
        self.lock = threading.Lock()

    def __call__(self, task, args, queue, task_id, request_id=None):
        with self.lock:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                raise ConnectionError("broker down")
            self.sent.append((task, tuple(args), queue, task_id))
            self.request_ids.append(request_id)


@pytest.fixture()
def received(app, factory):
    """Three received completions with their outbox rows."""
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=3)
    with app.app_context():
        return [completions.submit({"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                                   uuid.uuid4().hex, Actor(uid, name)).id for _ in range(3)]


def _due_now(db):
    """Make the not yet dispatched (held) messages due now."""
    db.session.execute(update(OutboxMessage).where(OutboxMessage.dispatched_at.is_(None))
                       .values(available_at=utcnow()))
    db.session.commit()


def _age(db, seconds):
    """Pretend every message was dispatched/created ``seconds`` ago and is due now."""
    past = utcnow() - timedelta(seconds=seconds)
    db.session.execute(update(OutboxMessage).values(available_at=past, dispatched_at=past))
    db.session.commit()


def test_one_message_per_lot_covers_its_pending_completions(app, db, received):
    rec = Recorder()
    stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
    assert stats.published == 3  # all three are dispatched...
    newest = received[-1]  # ...by one task for the newest, which decides the older ones first
    assert len(rec.sent) == 1
    assert rec.sent[0][0] == "completions.process" and rec.sent[0][2] == "completions"
    assert rec.sent[0][1][0] == newest and rec.sent[0][3] == f"completion-{newest}"
    attempts = db.session.scalars(select(OutboxMessage.attempts)).all()
    assert attempts == [1, 1, 1]  # covered rows stay until the worker commits their effect
    assert relay_batch(rec, lambda q: 0).published == 0  # not due again yet
    assert len(rec.sent) == 1


def test_lost_messages_are_republished_with_backoff(app, db, received):
    rec = Recorder()
    relay_batch(rec, lambda q: 0, redispatch_after=30)
    _age(db, 31)
    stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
    assert stats.republished == 3 and len(rec.sent) == 2
    msg = db.session.scalars(select(OutboxMessage)).first()
    assert msg.attempts == 2
    assert 55 < (msg.available_at - msg.dispatched_at).total_seconds() <= 60  # 30 s x 2


def test_backlogged_queue_defers_republishing(app, db, received):
    rec = Recorder()
    relay_batch(rec, lambda q: 0, redispatch_after=30)
    _age(db, 31)
    stats = relay_batch(rec, lambda q: 500, redispatch_after=30)  # workers still busy
    assert (stats.deferred, len(rec.sent)) == (3, 1)
    _age(db, 301)  # ten times overdue: republish even though the queue is not empty
    assert relay_batch(rec, lambda q: 500, redispatch_after=30).republished == 3


@pytest.fixture()
def three_lots(app, factory):
    """One received completion in each of three lots."""
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lots = [factory.lot(quantity=1) for _ in range(3)]
    with app.app_context():
        return [completions.submit({"lot_no": lot, "step": "SMT", "station": st},
                                   uuid.uuid4().hex, Actor(uid, name)).id for lot in lots]


def test_messages_of_different_lots_are_published_separately(app, db, three_lots):
    rec = Recorder()
    assert relay_batch(rec, lambda q: 0).published == 3
    assert [s[1][0] for s in rec.sent] == three_lots


def test_broker_failure_keeps_the_rest_for_later(app, db, three_lots):
    rec = Recorder(fail_after=1)
    stats = relay_batch(rec, lambda q: 0)
    assert stats.published == 1 and stats.errors
    rec.fail_after = None
    assert relay_batch(rec, lambda q: 0).published == 2
    assert sorted(s[1][0] for s in rec.sent) == sorted(three_lots)


def test_poison_message_is_dead_lettered_and_its_completion_failed(app, db, received):
    rec = Recorder()
    relay_batch(rec, lambda q: 0, redispatch_after=1)
    for _ in range(2):
        _age(db, 1000)
        relay_batch(rec, lambda q: 0, redispatch_after=1, max_attempts=3)
    assert len(rec.sent) == 3  # three dispatches of the lot's newest
    _age(db, 1000)
    assert relay_batch(rec, lambda q: 0, redispatch_after=1, max_attempts=3).dead == 3
    assert len(rec.sent) == 3
    assert db.session.scalars(select(OutboxMessage)).all() == []
    statuses = db.session.scalars(select(Completion.status)).all()
    assert statuses == ["failed"] * 3


def test_concurrent_relays_never_publish_a_message_twice(app, db, factory):
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lots = [factory.lot(quantity=10) for _ in range(40)]
    with app.app_context():
        for i in range(400):
            completions.submit({"lot_no": lots[i % 40], "step": "SMT", "station": st,
                                "qty_good": 1}, uuid.uuid4().hex, Actor(uid, name))
    rec, covered, finished = Recorder(), [], threading.Event()
    deadline = time.monotonic() + 60

    def relay():
        with app.app_context():
            while not finished.is_set() and time.monotonic() < deadline:
                covered.append(relay_batch(rec, lambda q: 0, batch=25,
                                           redispatch_after=60).published)

    def worker():
        # Commits the effect of every published message, as the workers would: that ends a
        # lot's message in flight, so its next completions may go out.
        with app.app_context():
            while time.monotonic() < deadline:
                db.session.execute(delete(OutboxMessage).where(
                    OutboxMessage.dispatched_at.is_not(None)))
                db.session.commit()
                if db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0:
                    break
                time.sleep(0.02)
            finished.set()

    threads = [threading.Thread(target=relay) for _ in range(4)] + [
        threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [s[1][0] for s in rec.sent]
    assert sum(covered) == 400 and len(ids) == len(set(ids))
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_a_full_queue_holds_new_messages_in_the_outbox(app, db, three_lots):
    rec = Recorder()
    stats = relay_batch(rec, lambda q: 64, window=64)  # workers are behind
    assert (stats.published, stats.held, rec.sent) == (0, 3, [])
    assert set(db.session.scalars(select(OutboxMessage.attempts)).all()) == {0}
    # Held messages step aside briefly, so the next pass reads other due messages first.
    assert relay_batch(rec, lambda q: 0, window=64).published == 0
    _due_now(db)
    stats = relay_batch(rec, lambda q: 62, window=64)  # room for two more
    assert (stats.published, stats.held) == (2, 1)
    _due_now(db)
    assert relay_batch(rec, lambda q: 0, window=64).published == 1
    assert sorted(s[1][0] for s in rec.sent) == sorted(three_lots)


def test_a_claimed_message_whose_publish_failed_is_published_by_the_relay(app, db, factory):
    """Broker down right after the worker's commit: the outbox row still gets it there."""
    from celery import Celery

    from web.services import outbox
    from workers.broker import publish_claimed
    with app.app_context():
        with outbox.claiming() as claimed:
            outbox.enqueue("labels.print", [42], "printing", "label:42")
        db.session.commit()
        dead = Celery("dead", broker="redis://127.0.0.1:1/0",  # nothing listens there
                      broker_connection_retry=False, broker_connection_max_retries=0)
        t0 = time.monotonic()
        assert publish_claimed(dead, claimed) == 0  # logged, not raised: the task succeeded
        # Bounded by kombu's connect retries (about 6 s here), not by the outage.
        assert time.monotonic() - t0 < 15
        rec = Recorder()
        _age(db, 31)  # the redispatch delay is over
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
    assert stats.republished == 1
    assert rec.sent == [("labels.print", (42,), "printing", "label-42")]


def test_a_pass_reports_a_full_batch_so_the_relay_goes_straight_on(app, db, three_lots):
    rec = Recorder()
    with app.app_context():
        assert relay_batch(rec, lambda q: 0, batch=2, redispatch_after=30).fetched == 2  # more
        assert relay_batch(rec, lambda q: 0, batch=2, redispatch_after=30).fetched == 1  # done


def test_a_lots_new_completions_wait_while_its_message_is_in_flight(app, db, factory):
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    busy, other = factory.lot(quantity=10), factory.lot(quantity=10)

    def submit(lot):
        return completions.submit({"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                                  uuid.uuid4().hex, Actor(uid, name)).id
    rec = Recorder()
    with app.app_context():
        first = submit(busy)
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 1
        waiting = [submit(busy), submit(busy)]  # arrive while `first` is queued or running
        free = submit(other)
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
        assert (stats.published, stats.fetched) == (1, 1)  # the waiting pair is not even read
        assert [s[1][0] for s in rec.sent] == [first, free]  # the other lot is not held up
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).fetched == 0  # still in flight
        # the worker commits `first` (deletes its row): the waiting pair goes out as one message
        db.session.execute(delete(OutboxMessage).where(
            OutboxMessage.dedup_key.in_([f"completion:{first}", f"completion:{free}"])))
        db.session.commit()
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
        assert stats.published == 2
        assert rec.sent[-1][1][0] == waiting[-1] and len(rec.sent) == 3


def test_a_lost_in_flight_message_goes_out_again_with_the_ones_that_waited(app, db, factory):
    uid, name = factory.user("operator")
    st = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=10)

    def submit():
        return completions.submit({"lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                                  uuid.uuid4().hex, Actor(uid, name)).id
    rec = Recorder()
    with app.app_context():
        first = submit()
        relay_batch(rec, lambda q: 0, redispatch_after=30)  # then lost (broker flushed)
        later = submit()
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).fetched == 0  # waits
        past = utcnow() - timedelta(seconds=31)  # the lost message's redispatch time has come
        db.session.execute(update(OutboxMessage).where(OutboxMessage.dispatched_at.is_not(None))
                           .values(available_at=past, dispatched_at=past))
        _due_now(db)
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
        assert (stats.republished, stats.published) == (1, 1)
        assert [s[1][0] for s in rec.sent] == [first, later]  # one message covers both


def test_a_message_without_a_lot_is_neither_gated_nor_gating(app, db, three_lots):
    with app.app_context():
        # a completion message written before messages carried their lot: [completion_id]
        db.session.execute(update(OutboxMessage).where(
            OutboxMessage.dedup_key == f"completion:{three_lots[0]}").values(
            args=[three_lots[0]], dispatched_at=utcnow(),
            available_at=utcnow() + timedelta(seconds=30)))
        db.session.commit()
        rec = Recorder()
        assert relay_batch(rec, lambda q: 0).published == 2  # the other lots still go out
        assert [s[1][0] for s in rec.sent] == three_lots[1:]


def _lock_probe_pg(url):
    """A publish that, while it runs, updates the rows being published from another connection
    with a short lock timeout: it fails if the relay holds their row locks."""
    import psycopg
    params = url.replace("postgresql+psycopg://", "postgresql://")
    rec = Recorder()

    def publish(task, args, queue, task_id, request_id=None):
        with psycopg.connect(params, autocommit=True) as other:
            other.execute("SET lock_timeout = '500ms'")
            other.execute("UPDATE outbox_messages SET last_error = last_error")
            idle = other.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND state LIKE 'idle in transaction%'")
            assert idle.fetchone()[0] == 0, "a transaction is open while publishing"
        rec(task, args, queue, task_id, request_id)
    return rec, publish


def test_no_row_lock_or_transaction_is_held_while_publishing(app, db, three_lots, pg_database):
    rec, publish = _lock_probe_pg(pg_database)
    with app.app_context():
        assert relay_batch(publish, lambda q: 0, redispatch_after=30).published == 3
        _age(db, 31)
        assert relay_batch(publish, lambda q: 0, redispatch_after=30).republished == 3
    assert len(rec.sent) == 6


def test_the_broker_is_never_asked_inside_a_transaction(app, db, three_lots, pg_database):
    _, probe = _lock_probe_pg(pg_database)
    asked = []

    def depth(queue):
        probe("-", [], queue, "-")  # the same checks while the broker is asked a queue's depth
        asked.append(queue)
        return 0
    with app.app_context():
        assert relay_batch(Recorder(), depth, window=64).published == 3
    assert asked == ["completions"]


def test_embedded_sqlite_write_lock_is_free_while_publishing(app, tmp_path):
    """On SQLite every transaction holds the database's write lock: none may span a publish."""
    import sqlite3

    from flask_migrate import upgrade

    from tests.conftest import TEST_CONFIG
    from web import create_app
    from web.extensions import db as _db
    from web.services import outbox
    path = tmp_path / "var" / "neurohub.sqlite3"
    app2 = create_app(dict(TEST_CONFIG, NEUROHUB_DATA_DIR=str(tmp_path / "var")))
    try:
        with app2.app_context():
            upgrade()
            for i in range(3):
                outbox.enqueue("labels.print", [i], "printing", f"label:{i}")
            _db.session.commit()
            rec = Recorder()

            def publish(task, args, queue, task_id, request_id=None):
                other = sqlite3.connect(path, timeout=0, isolation_level=None)
                try:
                    other.execute("BEGIN IMMEDIATE")  # 'database is locked' if a writer is open
                    other.execute("ROLLBACK")
                finally:
                    other.close()
                rec(task, args, queue, task_id)

            stats = relay_batch(publish, lambda q: 0, redispatch_after=30)
            assert (stats.published, stats.errors) == (3, [])
            _db.session.remove()
            _db.engine.dispose()
    finally:
        app.extensions["celery"].set_default()  # create_app made its own the default
    assert [s[3] for s in rec.sent] == ["label-0", "label-1", "label-2"]


def test_a_failed_publish_gives_its_claim_back(app, db, three_lots):
    rec = Recorder(fail_after=1)
    with app.app_context():
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
        assert stats.published == 1 and stats.errors
        rows = db.session.execute(select(OutboxMessage.attempts, OutboxMessage.dispatched_at,
                                         OutboxMessage.available_at <= utcnow())
                                  .order_by(OutboxMessage.id)).all()
        # the first is in flight; the other two are due again at once, as never dispatched
        assert [(r[0], r[1] is None, r[2]) for r in rows] == [
            (1, False, False), (0, True, True), (0, True, True)]
