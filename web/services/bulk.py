"""Rows collected during a hot batch and written with one executemany INSERT per table at its end."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import insert

from ..extensions import db


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
    """One executemany INSERT of plain rows (keys = column names) in the session's transaction.

    Core on the session's connection, not the ORM's bulk path: the rows are never loaded as
    objects, and the ORM layer costs more CPU than the statement on the hot batch paths.
    Every row must have the same keys.
    """
    if not rows:
        return
    # executemany of one INSERT: psycopg sends the rows pipelined in one round trip, and the
    # statement comes from SQLAlchemy's compiled cache, where a multi-row VALUES list of a new
    # length was compiled (and parsed again by psycopg) on every call, a third of a batch's CPU.
    db.session.connection().execute(insert(model.__table__), rows)


def add_row(model, row: dict) -> None:
    """Add a row to the current transaction: collected when inside ``collecting``, else ORM."""
    rows = db.session.info.get(_key(model))
    if rows is not None:
        rows.append(row)
    else:
        db.session.add(model(**row))
