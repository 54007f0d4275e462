"""The embedded default's SQLite database: WAL, full sync, and BEGIN IMMEDIATE for every
transaction, so concurrent writers queue for the write lock instead of failing on a lock upgrade.

A transaction holds the database's only write lock from its first statement, reads included, so
code on the hot paths reads in autocommit (no BEGIN, no lock; WAL readers never wait) and keeps
its write transactions short: see completions._submit_generic and outbox._read_due.

Measured with bench/embedded_load.py at 50 completions/s (the seed's peak):
- Waiting for the lock with SQLite's own busy handler (its sleeps grow to 100 ms): POST p99
  208 ms with our polling (``begin_immediate``) against 452 ms, before the web went first.
- The web trying more often than the background (``foreground``): POST p99 117 ms.
- Tried and not kept: queueing the writers on a lock file next to the database. POST p99 went
  from 355 ms to 2.2 s and received->decided p99 from 1.2 s to 21 s.
"""
from __future__ import annotations

import sqlite3
import time

from sqlalchemy.exc import OperationalError

BUSY_TIMEOUT_S = 30.0
MIN_POLL_S = 0.0005
# How long a writer may sleep between tries for the write lock. The web answers stations while
# they wait, so it tries more often and mostly goes first; workers, the relay and beat have
# time (gunicorn_conf makes web workers foreground).
MAX_POLL_S = {"foreground": 0.001, "background": 0.008}
_role = ["background"]


def foreground() -> None:
    """This process answers requests: it tries for the write lock more often than the rest."""
    _role[0] = "foreground"


def engine_options(url: str) -> dict:
    """SQLAlchemy engine options for the embedded database."""
    return {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}


def begin_immediate(dbapi_conn, timeout: float = BUSY_TIMEOUT_S) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in steps of at most ``MAX_POLL_S`` (by role).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 then 100 ms between
    tries: a writer that has waited a while sleeps on long after the lock is free, and the
    POSTs that must answer fast lose the lock to a worker that tried later. Here the busy
    handler is off for the BEGIN alone (statements inside the transaction never wait: the
    lock is ours) and the tries come at most a few milliseconds apart.
    """
    deadline = time.monotonic() + timeout
    delay = MIN_POLL_S
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:  # what the API answers 503 for
                    raise OperationalError("BEGIN IMMEDIATE", {}, exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, MAX_POLL_S[_role[0]])
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def install_pragmas(engine) -> None:
    """WAL, busy timeout, foreign keys and full sync on every connection; BEGIN IMMEDIATE."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        # FULL: a completion answered 202 must survive a power cut; NORMAL may lose the last
        # commits in WAL mode. A commit's fsync costs ~0.15 ms on this kind of machine.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # An AUTOCOMMIT connection runs each statement as its own transaction: no BEGIN. (The
        # driver-level level is no guide: the connect hook above turns pysqlite's own off.)
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            begin_immediate(conn.connection.dbapi_connection)
