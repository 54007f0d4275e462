"""bulk.collecting: rows of a hot batch written with one INSERT per table at the block's end."""
from contextlib import contextmanager

from sqlalchemy import event, func, select

from web.models import AuditEvent
from web.services import bulk
from web.services.audit import WORKER, record


def count(db):
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


@contextmanager
def audit_inserts(db):
    """The INSERT INTO audit_events statements sent inside the block (a list filled as they go)."""
    inserts = []

    def on_sql(conn, cur, sql, *a):
        if sql.startswith("INSERT INTO audit_events"):
            inserts.append(sql)
    event.listen(db.engine, "before_cursor_execute", on_sql)
    try:
        yield inserts
    finally:
        event.remove(db.engine, "before_cursor_execute", on_sql)


def test_rows_are_written_once_at_the_end_of_the_block(app, db):
    with app.app_context():
        with audit_inserts(db) as inserts:
            with bulk.collecting(AuditEvent):
                for i in range(5):
                    record(WORKER, "test.bulk", "thing", i)
                assert count(db) == 0  # collected, not yet written
            assert count(db) == 5 and len(inserts) == 1
            record(WORKER, "test.orm", "thing", 99)  # outside the block: the ORM as usual
            db.session.commit()
        assert count(db) == 6


def test_a_failing_block_writes_nothing_and_nesting_restores_the_outer_collector(app, db):
    with app.app_context():
        try:
            with bulk.collecting(AuditEvent):
                record(WORKER, "test.bulk", "thing", 1)
                raise RuntimeError("the batch failed")
        except RuntimeError:
            pass
        db.session.rollback()
        assert count(db) == 0
        with bulk.collecting(AuditEvent):
            record(WORKER, "test.outer", "thing", 1)
            with bulk.collecting(AuditEvent):
                record(WORKER, "test.inner", "thing", 2)
            record(WORKER, "test.outer", "thing", 3)  # still collected by the outer block
            assert count(db) == 1  # only the inner block's row so far
        db.session.commit()
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["test.inner", "test.outer", "test.outer"]


def test_a_batch_beyond_the_parameter_limit_goes_in_chunks_in_order(app, db, monkeypatch):
    """More rows than one INSERT may bind are split into several statements; none lost."""
    monkeypatch.setitem(bulk.PARAM_LIMIT, True, 50)  # 10 columns per row: 5 rows per INSERT
    with app.app_context():
        with audit_inserts(db) as statements, bulk.collecting(AuditEvent):
            for i in range(12):
                record(WORKER, "test.chunk", "thing", i)
        db.session.commit()
        ids = db.session.scalars(select(AuditEvent.entity_id).order_by(AuditEvent.id)).all()
    assert len(statements) == 3  # 5 + 5 + 2
    assert ids == [str(i) for i in range(12)]
