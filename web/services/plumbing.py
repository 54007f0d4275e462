"""Plumbing the domain services share: batched inserts, named locks, keyset pages, raw psycopg.

- Bulk rows: rows collected during a hot batch, written with one executemany INSERT per table at
  its end (``collecting``, ``add_row``, ``insert_rows``).
- Named cross-process locks: a PostgreSQL advisory lock, or flock on the embedded SQLite
  (``named_lock``, ``hold_for_process``, ``is_held_elsewhere``).
- Opaque keyset cursors for list endpoints, newest first (``page``).
- ``execute_raw``: one row from a fixed statement run by psycopg itself.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from flask import current_app
from psycopg.rows import namedtuple_row
from sqlalchemy import Select, insert, text
from sqlalchemy.exc import DBAPIError

from ..extensions import db
from ..models.types import int_column_max
from ..problems import BadRequest


# Bulk rows

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


# Named locks

def lock_key(name: str) -> int:
    """A stable signed 32-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


@contextmanager
def named_lock(namespace: int, name: str, kind: str):
    """Hold the lock ``name`` of ``namespace`` for this block; yields False when it is taken."""
    key = lock_key(name)
    if db.engine.dialect.name == "postgresql":
        # Session-level, on a connection of its own: it outlives the commits made inside the
        # block and vanishes with the connection if this process dies.
        # Autocommit: one round trip each to take and to release, no BEGIN/COMMIT around them.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = conn.scalar(text("SELECT pg_try_advisory_lock(:ns, :k)"),
                              {"ns": namespace, "k": key})
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:ns, :k)"),
                                 {"ns": namespace, "k": key})
        return
    lock_dir = Path(current_app.config["NEUROHUB_DATA_DIR"]) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{kind}-{key & 0xffffffff:08x}.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_held: dict[tuple[int, str], ExitStack] = {}


def hold_for_process(namespace: int, name: str, kind: str) -> bool:
    """Take the lock ``name`` and keep it until this process exits; False when it is taken.

    The lock dies with the process (its PostgreSQL connection or its flock'd file descriptor),
    so a killed holder never leaves it behind.
    """
    if (namespace, name) in _held:
        return True
    stack = ExitStack()
    if not stack.enter_context(named_lock(namespace, name, kind)):
        stack.close()
        return False
    _held[(namespace, name)] = stack
    return True


def is_held_elsewhere(namespace: int, name: str, kind: str) -> bool:
    """True when another process holds the lock ``name`` (probed by taking and releasing it)."""
    if (namespace, name) in _held:
        return False
    with named_lock(namespace, name, kind) as got:
        return not got


# Keyset pages

class BadCursor(BadRequest, ValueError):
    """The cursor was not produced by this API (named as ``query.cursor``)."""

    def __init__(self, message: str):
        super().__init__(message, errors=[{"field": "query.cursor", "message": message}])


def encode_cursor(last_id: int) -> str:
    """Turn the last id of a page into an opaque cursor."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Read a cursor back into the id to continue below."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not valid; use next_cursor from a previous page") from None


def page(session, stmt: Select, id_col, cursor: str | None, limit: int):
    """Run a keyset-paginated query; returns (rows, next_cursor)."""
    if cursor:
        last = decode_cursor(cursor)
        if abs(last) > int_column_max(id_col):  # never issued; the database cannot compare it
            raise BadCursor("cursor is not valid; use next_cursor from a previous page")
        stmt = stmt.where(id_col < last)
    rows = list(session.scalars(stmt.order_by(id_col.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def execute_raw(conn, sql: str, params: dict):
    """One row from a fixed statement run by psycopg itself, errors handled as SQLAlchemy does.

    The statement never changes, so SQLAlchemy's compile and result layers only cost CPU on the
    hot path (about a fifth of the request); psycopg still caches and prepares it.
    """
    try:
        with conn.connection.driver_connection.cursor(row_factory=namedtuple_row) as cur:
            return cur.execute(sql, params).fetchone()
    except psycopg.Error as exc:
        dead = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
        if dead:
            # The pool must not hand this one out again; the pool's other connections are
            # pinged at checkout (pool_pre_ping), so a dead one is replaced before it is used.
            conn.invalidate(exc)
        # The same exception types as conn.execute: the API maps OperationalError to a 503.
        raise DBAPIError.instance(sql, params, exc, psycopg.Error,
                                  connection_invalidated=dead) from exc
