"""bulk.collecting: a hot batch's rows written with one executemany INSERT per table at the end."""
from contextlib import contextmanager

from sqlalchemy import event, func, select

from web.models import AuditEvent
from web.services import plumbing as bulk
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


def test_batches_of_any_size_reuse_one_statement_and_keep_their_order(app, db):
    """One executemany of the same cached INSERT whatever the batch size (no new SQL to compile
    per size, no bound-parameter limit), rows in order, none lost."""
    with app.app_context():
        for n in (3, 1500):  # 1500 rows x 10 columns: beyond SQLite's 999-parameter limit
            with audit_inserts(db) as statements, bulk.collecting(AuditEvent):
                for i in range(n):
                    record(WORKER, f"test.batch{n}", "thing", i)
            db.session.commit()
            ids = db.session.scalars(select(AuditEvent.entity_id).where(
                AuditEvent.action == f"test.batch{n}").order_by(AuditEvent.id)).all()
            assert ids == [str(i) for i in range(n)]
            assert len(statements) == 1
            if n == 3:
                first = statements[0]
        assert statements[0] == first  # the same statement text for 3 rows and for 1,500
