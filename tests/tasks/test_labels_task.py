"""labels.print and labels.retry against a real TCP printer simulator and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from printers import PrinterSimulator
from tests.support.procs import free_port
from web.models import LabelJob, OutboxMessage
from web.services import labels
from web.services.periodic import single_run
from web.services.completions.processing import process_completion

from .conftest import submit

MARK = [{"step": "MARK", "name": "Marking", "label_template": "unit"}]


@pytest.fixture()
def jobs(app, db, factory, request):
    """Two queued unit-label jobs for a station printing to a simulator: (job ids, simulator)."""
    sim = PrinterSimulator(port=free_port(), control_port=None, render=False).start()
    request.addfinalizer(sim.stop)
    station = factory.station(steps=["MARK"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
    lot = factory.lot(factory.product(routing=MARK), 2, serials=["SN-L-1", "SN-L-2"])
    assert process_completion(submit(factory, lot, "MARK", station)) == "accepted"
    ids = sorted(db.session.scalars(select(LabelJob.id)))
    db.session.rollback()
    return ids, sim


def test_print_delivers_the_printers_pending_jobs_and_never_twice(app, db, jobs):
    from tasks.labels import print_label
    ids, sim = jobs
    assert print_label(ids[-1]) == "printed"  # earlier jobs of its printer go first
    assert [db.session.get(LabelJob, i).state for i in ids] == ["printed", "printed"]
    assert print_label(ids[0]) == "printed" and print_label(ids[-1]) == "printed"
    assert sim.label_count == 2  # redelivered messages print nothing again
    assert b"SN-L-1" in sim.labels()[0].zpl and b"SN-L-2" in sim.labels()[1].zpl


def test_retry_gives_every_pending_job_its_print_message_back(app, db, jobs):
    from tasks.labels import retry_pending
    ids, _ = jobs
    db.session.execute(delete(OutboxMessage))  # e.g. dead-lettered, or lost with a restore
    db.session.commit()
    assert retry_pending() == 2
    keys = set(db.session.scalars(select(OutboxMessage.dedup_key)))
    assert keys == {labels.dedup_key(i) for i in ids}
    assert retry_pending() == 0  # they have their messages now


def test_retry_skips_while_another_run_holds_its_lock(app, db, jobs):
    from tasks.labels import retry_pending
    db.session.execute(delete(OutboxMessage))
    db.session.commit()
    with single_run("labels.retry") as got:  # another beat's run, on its own connection
        assert got
        assert retry_pending() == "skipped: locked"
    assert db.session.scalar(select(OutboxMessage)) is None
