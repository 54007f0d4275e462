"""Row counts of every table: what a refused request must leave unchanged."""
from __future__ import annotations

from sqlalchemy import text


def row_counts(db) -> dict[str, int]:
    """Rows in each table of the test database (the session is rolled back afterwards)."""
    tables = db.session.scalars(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version'")).all()
    out = {t: db.session.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()
           for t in tables}
    db.session.rollback()
    return out
