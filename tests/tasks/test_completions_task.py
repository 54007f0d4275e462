"""The completions.process task body, called in-process: how it routes a failing batch.

The pipeline through a real worker is covered in tests/pipeline; here the task function is
called directly so that one completion's decision can be made to raise.
"""
from sqlalchemy import func, select

from tests.support.broker import private_queue
from tests.support.poison import poison
from web.models import AuditEvent, Completion, Lot
from web.services import completions

from .conftest import submit


def test_the_task_isolates_a_poison_completion_and_fails_only_it(app, db, factory, monkeypatch):
    from tasks.completions import process
    station = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=3)
    with app.app_context():
        ids = [submit(factory, lot, "SMT", station, qty_good=1) for _ in range(3)]
    poison(monkeypatch, ids[0], ValueError("bad record"))
    with app.app_context():
        # The message names the last one; the first is the poison.
        assert process(ids[-1], None) == "accepted"
        got = [(c.status, c.error) for c in map(completions.get_completion, ids)]
    assert got == [("failed", "ValueError: bad record"), ("accepted", None), ("accepted", None)]


def test_a_redelivered_message_changes_nothing(app, db, factory):
    from tasks.completions import process
    station = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=2)
    cid = submit(factory, lot, "SMT", station, qty_good=2)
    assert process(cid, None) == "accepted"
    audit = db.session.scalar(select(func.count()).select_from(AuditEvent))
    lot_row = db.session.scalar(select(Lot).where(Lot.lot_no == lot))
    before = (lot_row.current_step, lot_row.step_passed, lot_row.status)
    db.session.rollback()
    process(cid, None)  # the broker delivers it again (acks_late after a worker restart)
    lot_row = db.session.scalar(select(Lot).where(Lot.lot_no == lot))
    assert (lot_row.current_step, lot_row.step_passed, lot_row.status) == before
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit
    assert db.session.get(Completion, cid).status == "accepted"


def test_its_label_messages_go_to_the_broker_after_commit(app, db, factory, redis_url):
    """Accepting a completion at a label step queues its label jobs, and the task publishes the
    print message itself (claimed in the outbox) instead of waiting for the relay: one for the
    printer, whose labels.print delivers every pending job of that printer."""
    from tasks.completions import process
    from web.models import OutboxMessage
    routing = [{"step": "MARK", "name": "Marking", "label_template": "unit"}]
    station = factory.station(steps=["MARK"], printer_uri="sim://")
    lot = factory.lot(factory.product(routing=routing), 2, serials=["SN-T-1", "SN-T-2"])
    cid = submit(factory, lot, "MARK", station)
    with private_queue(app, redis_url, "tasks-completions-test") as (_, published):
        assert process(cid, None) == "accepted"
        sent = published()
    messages = db.session.scalars(select(OutboxMessage).where(
        OutboxMessage.task == "labels.print")).all()
    assert len(messages) == 2 and all(m.dispatched_at is not None for m in messages)
    assert [h["task"] for h in sent] == ["labels.print"]  # published at once, after the commit
    assert sent[0]["id"] in {m.dedup_key.replace(":", "-") for m in messages}
