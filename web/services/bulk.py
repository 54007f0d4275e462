"""Rows collected during a hot batch and written with one INSERT per table at its end."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import insert

from ..extensions import db

PARAM_LIMIT = {False: 999, True: 30000}  # bound parameters per INSERT: other dialects, PostgreSQL


def _key(model) -> str:
    return f"bulk:{model.__tablename__}"


@contextmanager
def collecting(*models):
    """Rows added with ``add_row`` for these models in this block go in at its end, one INSERT each.

    Plain rows instead of ORM objects: a worker batch writes several such rows per completion,
    and the unit of work costs more than the rows themselves. They are not visible to queries
    inside the block; they are written before the caller commits.
    """
    info = db.session.info
    saved = {m: info.get(_key(m)) for m in models}
    rows: dict = {m: [] for m in models}
    info.update({_key(m): rows[m] for m in models})
    try:
        yield
        for model, batch in rows.items():
            insert_rows(model, batch)
    finally:
        for model, outer in saved.items():
            if outer is None:
                info.pop(_key(model), None)
            else:
                info[_key(model)] = outer


def insert_rows(model, rows: list[dict]) -> None:
    """One INSERT of plain rows (keys = column names) in the session's transaction.

    Core on the session's connection, not the ORM's bulk path: the rows are never loaded as
    objects, and the ORM layer costs more CPU than the statement on the hot batch paths.
    Every row must have the same keys.
    """
    if not rows:
        return
    conn = db.session.connection()
    # A multi-row VALUES list: one statement for the server too, where executemany would send
    # (pipelined) one INSERT per row; chunked under the bound-parameter limits (SQLite's can be
    # as low as 999, PostgreSQL's is 65535).
    per = max(1, PARAM_LIMIT[conn.dialect.name == "postgresql"] // len(rows[0]))
    for start in range(0, len(rows), per):
        conn.execute(insert(model.__table__).values(rows[start:start + per]))


def add_row(model, row: dict) -> None:
    """Add a row to the current transaction: collected when inside ``collecting``, else ORM."""
    rows = db.session.info.get(_key(model))
    if rows is not None:
        rows.append(row)
    else:
        db.session.add(model(**row))
