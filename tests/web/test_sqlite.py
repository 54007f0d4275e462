"""The embedded database's write transactions (web/sqlite.py): BEGIN IMMEDIATE waits for the
write lock in short steps, gets it soon after it is free, and gives up with the error the API
answers 503 for."""
from __future__ import annotations

import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from web import sqlite as embedded


@pytest.fixture()
def path(tmp_path):
    p = tmp_path / "db.sqlite3"
    with sqlite3.connect(p) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
    return p


def _conn(path):
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def test_a_writer_gets_the_lock_soon_after_it_is_free_and_keeps_its_busy_timeout(path, monkeypatch):
    holder, waiter = _conn(path), _conn(path)
    holder.execute("BEGIN IMMEDIATE")
    sleeps = []  # what begin_immediate slept between its tries (the release thread is not counted)

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)
    monkeypatch.setattr(embedded, "_role", ["background"])
    monkeypatch.setattr(embedded, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))

    def release():
        time.sleep(0.3)
        holder.execute("COMMIT")
    started = time.monotonic()  # before the thread starts: its 0.3 s sleep begins after this
    threading.Thread(target=release).start()
    embedded.begin_immediate(waiter)
    assert time.monotonic() - started >= 0.25  # it did wait for the holder
    # SQLite's busy handler sleeps 100 ms at a time by then; ours never sleeps longer than the
    # background step between tries (a wall-clock bound here failed on a loaded CI machine)
    assert len(sleeps) >= 10 and sleeps[0] == embedded.MIN_POLL_S
    assert max(sleeps) == embedded.MAX_POLL_S["background"]
    assert waiter.in_transaction
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_a_writer_gives_up_after_its_timeout_with_the_error_the_api_maps_to_503(path):
    holder, waiter = _conn(path), _conn(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            embedded.begin_immediate(waiter, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 2
        assert not waiter.in_transaction
        assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    finally:
        holder.execute("ROLLBACK")
