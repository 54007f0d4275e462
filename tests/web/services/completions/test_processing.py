"""The worker's rules, called directly (no Celery): every reason code and every lot movement."""
import uuid

import pytest
from sqlalchemy import func, select, text

from tests.support.poison import poison
from web.models import AuditEvent, Completion, LabelJob, Lot, OutboxMessage
from web.services import completions, lots, outbox
from web.services.audit import Actor
from web.services.completions import processing
from web.services.completions.processing import (decide_singly, judge_measurements, mark_failed,
                                                 process_completion)

GOOD = {"voltage": 3.31, "current_ma": 41.2}


@pytest.fixture()
def line(factory, app):
    """A product SMT -> FCT -> PACK, one station per step, an operator actor."""
    uid, name = factory.user("operator")
    return {"product": factory.product(),
            "SMT": factory.station(steps=["SMT"]), "FCT": factory.station(steps=["FCT"]),
            "PACK": factory.station(steps=["PACK"]), "actor": Actor(uid, name)}


def submit(line, lot_no, step, station=None, **extra):
    body = {"lot_no": lot_no, "step": step, "station": station or line[step], **extra}
    return completions.submit(body, uuid.uuid4().hex, line["actor"]).id


def run(app, line, lot_no, step, **extra):
    """Submit and process one completion; returns (status, reason codes)."""
    with app.app_context():
        cid = submit(line, lot_no, step, **extra)
        process_completion(cid)
        c = completions.get_completion(cid)
        return c.status, [r["code"] for r in c.reasons]


def lot_state(app, lot_no):
    with app.app_context():
        lot = lots.get_lot(lot_no)
        return lot.status, lot.current_step, lot.qty_good, lot.step_passed


def test_lot_level_completion_moves_the_whole_lot(app, line, factory):
    lot = factory.lot(line["product"], quantity=5)
    assert run(app, line, lot, "SMT") == ("accepted", [])
    assert lot_state(app, lot) == ("in_process", "FCT", 5, 0)
    assert run(app, line, lot, "FCT", measurements=GOOD) == ("accepted", [])
    assert run(app, line, lot, "PACK") == ("accepted", [])
    assert lot_state(app, lot) == ("completed", None, 5, 0)


def test_partial_quantities_and_scrap(app, line, factory):
    lot = factory.lot(line["product"], quantity=5)
    assert run(app, line, lot, "SMT", qty_good=2) == ("accepted", [])
    assert lot_state(app, lot) == ("in_process", "SMT", 5, 2)
    assert run(app, line, lot, "SMT", qty_good=2, qty_scrap=1) == ("accepted", [])
    assert lot_state(app, lot) == ("in_process", "FCT", 4, 0)  # 4 alive, all passed SMT
    assert run(app, line, lot, "FCT", measurements=GOOD, qty_good=5) == (
        "rejected", ["quantity_exceeds_lot"])
    assert lot_state(app, lot) == ("in_process", "FCT", 4, 0)


def test_wrong_step_and_station_not_for_step(app, line, factory):
    lot = factory.lot(line["product"], quantity=1)
    assert run(app, line, lot, "FCT", measurements=GOOD) == ("rejected", ["wrong_step"])
    assert run(app, line, lot, "SMT", station=line["FCT"]) == ("rejected",
                                                                ["station_not_for_step"])
    assert lot_state(app, lot) == ("created", "SMT", 1, 0)  # rejections move nothing


def test_missing_and_out_of_spec_measurements(app, line, factory):
    lot = factory.lot(line["product"], quantity=1)
    run(app, line, lot, "SMT")
    assert run(app, line, lot, "FCT", measurements={"voltage": 3.3}) == (
        "rejected", ["measurement_missing"])
    assert lot_state(app, lot)[0] == "in_process"  # a missing value is not a defect: no hold
    assert run(app, line, lot, "FCT", measurements={"voltage": 3.3, "current_ma": 55}) == (
        "rejected", ["out_of_spec"])
    assert lot_state(app, lot)[:2] == ("on_hold", "FCT")
    # While held, nothing is accepted; after release (rework) the same step passes.
    assert run(app, line, lot, "FCT", measurements=GOOD) == ("rejected", ["lot_not_active"])
    with app.app_context():
        lots.change_state(lot, "release", "reworked connector", Actor(None, "sup"))
    assert lot_state(app, lot)[:2] == ("in_process", "FCT")
    assert run(app, line, lot, "FCT", measurements=GOOD) == ("accepted", [])
    assert lot_state(app, lot)[:2] == ("in_process", "PACK")


def test_limits_are_inclusive_and_judged_by_the_server():
    specs = [{"name": "v", "unit": "V", "min": 3.2, "max": 3.4}]
    assert judge_measurements(specs, {"v": 3.2})[1] == []
    assert judge_measurements(specs, {"v": 3.4})[1] == []
    results, reasons = judge_measurements(specs, {"v": 3.4000001, "extra": 1})
    assert [r["code"] for r in reasons] == ["out_of_spec"]
    assert results[0] == {"name": "v", "value": 3.4000001, "unit": "V", "min": 3.2, "max": 3.4,
                          "pass": False}
    assert results[1]["name"] == "extra" and results[1]["pass"] is None
    optional = [{"name": "t", "unit": "C", "min": None, "max": 40, "required": False}]
    assert judge_measurements(optional, {})[1] == []


def test_unit_serial_rules(app, line, factory):
    lot = factory.lot(line["product"], quantity=2, serials=["SN-A1", "SN-A2"])
    other = factory.lot(line["product"], quantity=1, serials=["SN-B1"])
    assert run(app, line, lot, "SMT", unit_serial="SN-B1") == ("rejected", ["unknown_unit"])
    assert run(app, line, lot, "SMT", unit_serial="SN-A1") == ("accepted", [])
    assert run(app, line, lot, "SMT", unit_serial="SN-A1") == ("rejected",
                                                               ["unit_already_completed"])
    assert lot_state(app, lot) == ("in_process", "SMT", 2, 1)
    assert run(app, line, lot, "SMT", unit_serial="SN-A2", qty_good=0, qty_scrap=1) == (
        "accepted", [])
    assert lot_state(app, lot) == ("in_process", "FCT", 1, 0)
    assert run(app, line, lot, "FCT", unit_serial="SN-A2", measurements=GOOD) == (
        "rejected", ["unit_scrapped"])
    assert lot_state(app, other)[0] == "created"


def test_scrapping_every_unit_scraps_the_lot(app, line, factory):
    lot = factory.lot(line["product"], quantity=2)
    assert run(app, line, lot, "SMT", qty_good=0, qty_scrap=2) == ("accepted", [])
    assert lot_state(app, lot) == ("scrapped", None, 0, 0)


def test_firmware_steps_refuse_unreleased_firmware(app, factory):
    uid, name = factory.user("operator")
    product = factory.product(routing=[{"step": "FLASH", "name": "Flash",
                                        "requires_firmware": True}])
    line = {"FLASH": factory.station(steps=["FLASH"]), "actor": Actor(uid, name)}
    lot = factory.lot(product, quantity=1)
    assert run(app, line, lot, "FLASH") == ("rejected", ["firmware_required"])
    assert run(app, line, lot, "FLASH", firmware_version="1.0.0") == (
        "rejected", ["firmware_not_released"])


def test_reprocessing_changes_nothing_and_clears_the_outbox(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=3)
    with app.app_context():
        cid = submit(line, lot, "SMT", qty_good=1)
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        assert process_completion(cid) == "accepted"
        audit_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
        for _ in range(3):  # redelivery, double publish, sweep
            assert process_completion(cid) == "accepted"
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert db.session.scalar(select(Lot.step_passed).where(Lot.lot_no == lot)) == 1


def test_a_later_message_first_processes_earlier_pending_ones_in_order(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=1)
    with app.app_context():
        first = submit(line, lot, "SMT")
        second = submit(line, lot, "FCT", measurements=GOOD)
        # The FCT message arrives first (two workers, or a republish): SMT must still go first.
        assert process_completion(second) == "accepted"
        assert completions.get_completion(first).status == "accepted"
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        assert process_completion(first) == "accepted"  # its own message is now a no-op


def test_a_message_also_decides_its_lots_completions_that_came_after_it(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=3)
    with app.app_context():
        first = submit(line, lot, "SMT", qty_good=1)
        later = [submit(line, lot, "SMT", qty_good=1) for _ in range(2)]  # while it was queued
        assert process_completion(first) == "accepted"
        assert [completions.get_completion(c).status for c in later] == ["accepted"] * 2
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        for c in later:  # their own messages, if any went out, are no-ops
            assert process_completion(c) == "accepted"


def test_a_backlog_is_decided_in_transactions_of_max_batch(app, line, factory, db,
                                                            monkeypatch):
    monkeypatch.setattr(processing, "MAX_BATCH", 2)
    lot = factory.lot(line["product"], quantity=5)
    with app.app_context():
        ids = [submit(line, lot, "SMT", qty_good=1) for _ in range(5)]
        assert process_completion(ids[0]) == "accepted"  # its batch is done: it stops there
        statuses = [completions.get_completion(c).status for c in ids]
        assert statuses == ["accepted"] * 2 + ["received"] * 3
        assert process_completion(ids[-1]) == "accepted"  # two more transactions
        assert {completions.get_completion(c).status for c in ids} == {"accepted"}
        xmins = db.session.scalars(select(func.count(func.distinct(text("xmin::text"))))
                                   .select_from(Completion).where(Completion.id.in_(ids))).one()
        assert xmins == 3
    assert lot_state(app, lot) == ("in_process", "FCT", 5, 0)  # all five passed SMT


def test_one_poison_completion_in_a_batch_fails_alone(app, line, factory, db, monkeypatch):
    lot = factory.lot(line["product"], quantity=3)
    with app.app_context():
        ids = [submit(line, lot, "SMT", qty_good=1) for _ in range(3)]
    poison(monkeypatch, ids[1], RuntimeError("cannot judge this one"))
    with app.app_context():
        with pytest.raises(RuntimeError):
            process_completion(ids[0])  # the batch of three fails as a whole...
        db.session.rollback()
        assert decide_singly(ids[0], None) == "accepted"  # ...then one by one
        got = [(c.status, c.error) for c in map(completions.get_completion, ids)]
        assert got == [("accepted", None), ("failed", "RuntimeError: cannot judge this one"),
                       ("accepted", None)]
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert lot_state(app, lot) == ("in_process", "SMT", 3, 2)


def test_a_time_limit_is_not_blamed_on_a_completion(app, line, factory, db, monkeypatch):
    class Limit(Exception):
        pass
    lot = factory.lot(line["product"], quantity=1)
    with app.app_context():
        cid = submit(line, lot, "SMT", qty_good=1)
    poison(monkeypatch, cid, Limit())
    with app.app_context():
        with pytest.raises(Limit):
            decide_singly(cid, None, reraise=(Limit,))
        db.session.rollback()
        assert completions.get_completion(cid).status == "received"


def test_unknown_completion_is_a_no_op(app, db):
    with app.app_context():
        assert process_completion(987654321) is None


def test_poison_completion_is_marked_failed_once(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=1)
    with app.app_context():
        cid = submit(line, lot, "SMT")
        mark_failed(cid, "RuntimeError: boom")
        mark_failed(cid, "RuntimeError: boom again")
        c = db.session.get(Completion, cid)
        assert (c.status, c.error) == ("failed", "RuntimeError: boom")
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
        actions = db.session.scalars(select(AuditEvent.action).where(
            AuditEvent.entity_type == "completion", AuditEvent.entity_id == str(cid))).all()
        assert sorted(actions) == ["completion.failed", "completion.received"]


def test_one_batch_judges_units_against_its_own_earlier_decisions(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=3, serials=["SN-C1", "SN-C2", "SN-C3"])
    with app.app_context():
        ids = [submit(line, lot, "SMT", unit_serial=s) for s in ("SN-C1", "SN-C1", "SN-C2")]
        assert process_completion(ids[-1]) == "accepted"  # one transaction decides all three
        got = [(c.status, [r["code"] for r in c.reasons])
               for c in map(completions.get_completion, ids)]
    assert got == [("accepted", []), ("rejected", ["unit_already_completed"]), ("accepted", [])]
    assert lot_state(app, lot) == ("in_process", "SMT", 3, 2)


def test_label_messages_of_a_batch_are_claimed_and_one_per_printer_is_published(
        app, factory, db):
    """Inside outbox.claiming() the worker publishes its label messages itself, after commit."""
    uid, name = factory.user("operator")
    product = factory.product(routing=[{"step": "PACK", "name": "Packing",
                                        "label_template": "unit"}])
    line = {"PACK": factory.station(steps=["PACK"], printer_uri="tcp://127.0.0.1:9"),
            "actor": Actor(uid, name)}
    lot = factory.lot(product, quantity=3, serials=["SN-D1", "SN-D2", "SN-D3"])
    with app.app_context():
        ids = [submit(line, lot, "PACK", unit_serial=s) for s in ("SN-D1", "SN-D2", "SN-D3")]
        with outbox.claiming() as claimed:
            assert process_completion(ids[-1]) == "accepted"
        jobs = list(db.session.scalars(select(LabelJob.id).order_by(LabelJob.id)))
        rows = list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert len(jobs) == 3
    # Every job keeps its durable message, stored as dispatched and due again only after the
    # redispatch delay: the relay publishes it only if this worker's publish never happened.
    assert [r.dedup_key for r in rows] == [f"label:{j}" for j in jobs]
    delay = app.config["OUTBOX_REDISPATCH_SECONDS"]
    assert all(r.dispatched_at is not None and r.attempts == 1 and
               (r.available_at - r.dispatched_at).total_seconds() >= delay for r in rows)
    # One delivery prints all pending jobs of a printer: only the newest one is published.
    # (no request id: these completions were not posted through the web)
    assert claimed == [("labels.print", [jobs[-1]], "printing", f"label:{jobs[-1]}", None)]


def test_outside_claiming_messages_are_left_to_the_relay(app, line, factory, db):
    lot = factory.lot(line["product"], quantity=1)
    with app.app_context():
        cid = submit(line, lot, "SMT")
        row = db.session.scalar(select(OutboxMessage))
    assert row.dedup_key == f"completion:{cid}"
    assert row.dispatched_at is None and row.attempts == 0  # due now, for the relay


def test_a_labelled_batch_is_decided_in_a_fixed_number_of_statements(app, factory, db):
    """Round trips per worker transaction do not grow with the batch: one INSERT per table."""
    from sqlalchemy import event
    uid, name = factory.user("operator")
    product = factory.product(routing=[{"step": "PACK", "name": "Packing",
                                        "label_template": "unit"}])
    line = {"PACK": factory.station(steps=["PACK"], printer_uri="tcp://127.0.0.1:9"),
            "actor": Actor(uid, name)}
    serials = [f"SN-S{i}" for i in range(9)]
    lot = factory.lot(product, quantity=9, serials=serials)
    statements = []
    with app.app_context():
        # a first one alone: templates synced, caches warm
        process_completion(submit(line, lot, "PACK", unit_serial=serials.pop(0)))
        ids = [submit(line, lot, "PACK", unit_serial=s) for s in serials]
        listen = (db.engine, "before_cursor_execute")
        record_sql = lambda conn, cur, sql, *a: statements.append(sql.split()[0:3])  # noqa: E731
        event.listen(*listen, record_sql)
        try:
            assert process_completion(ids[-1]) == "accepted"
        finally:
            event.remove(*listen, record_sql)
        audit_inserts = [s for s in statements if s[:3] == ["INSERT", "INTO", "audit_events"]]
        assert len(audit_inserts) == 1, statements
        assert len([s for s in statements if s[:3] == ["INSERT", "INTO", "outbox_messages"]]) == 1
        # 13: 12 plus the share-locked look for an earlier queued job of the printer
        # (labels.delivery_ahead), which saves a print task per transaction under load.
        assert len(statements) <= 13, statements
        assert len([s for s in statements if s[:3] == ["INSERT", "INTO", "label_jobs"]]) == 1
        events = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action.in_(("completion.accepted", "label.queued"))))
    assert events == 2 * (len(serials) + 1)  # every event written, 8 of each in that INSERT
