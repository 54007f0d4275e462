"""The offline completion queue: SQLite (WAL, synchronous=FULL), written before anything is sent.

Every completion gets its Idempotency-Key and is committed here first; only then does the sync
worker send it, oldest first, with that same key, as often as it takes. The server's idempotency
turns every retry (lost answer, crash after send, restart) into the same completion, so a row is
never lost and never counted twice. The same file holds the label-printing journal, so "pulled
from the server" and "printed" are durable too.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DECIDED = ("accepted", "rejected", "failed", "invalid")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    operator TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    server_id INTEGER,
    reasons TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    decided_at REAL,
    seen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS completions_state ON completions(state, seq);
CREATE TABLE IF NOT EXISTS label_jobs (
    job_id INTEGER PRIMARY KEY,
    zpl TEXT NOT NULL,
    state TEXT NOT NULL,
    printed INTEGER,
    printer_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    pulled_at REAL NOT NULL,
    printed_at REAL,
    acked_at REAL
);
"""


def connect(path: Path | str) -> sqlite3.Connection:
    """Open a SQLite file in WAL mode with full fsync on commit (durable across power loss)."""
    # check_same_thread=False only so close() can run at shutdown; each connection is still
    # used by the one thread that opened it.
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL survives a killed process but may lose the last commits on power loss;
    # a medical-device record must survive both, so FULL (one fsync per commit, ~ms).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _PerThread:
    """One sqlite3 connection per OS thread (sqlite3 objects must stay on their thread).

    Keyed by thread id, not ``threading.local``: Qt-created threads get a fresh Python thread
    state for each callback, which would open (and leak) a new connection every time.
    """

    def __init__(self, path: Path, schema: str):
        self.path = Path(path)
        self._conns: dict[int, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        ident = threading.get_ident()
        c = self._conns.get(ident)
        if c is None:
            c = connect(self.path)
            with self._lock:
                self._conns[ident] = c
        return c

    @property
    def _all(self) -> list[sqlite3.Connection]:
        return list(self._conns.values())

    def close(self) -> None:
        """Close every connection opened by any thread."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            try:
                c.close()
            except sqlite3.ProgrammingError:
                pass  # made on another thread; the OS releases it at exit


@dataclass(frozen=True)
class Entry:
    """One queued completion."""

    seq: int
    key: str
    operator: str
    body: dict
    state: str
    server_id: int | None
    reasons: list
    attempts: int
    last_error: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Entry":
        """Build from a ``completions`` row."""
        return cls(row["seq"], row["key"], row["operator"], json.loads(row["body"]),
                   row["state"], row["server_id"], json.loads(row["reasons"] or "[]"),
                   row["attempts"], row["last_error"], row["created_at"])


class CompletionQueue:
    """Durable FIFO of completions and their server decisions."""

    def __init__(self, path: Path | str):
        self._db = _PerThread(Path(path), _SCHEMA)
        self.path = Path(path)

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def _x(self, sql: str, args=()) -> sqlite3.Cursor:
        return self._db.conn().execute(sql, args)

    def enqueue(self, body: dict, operator: str, key: str | None = None) -> Entry:
        """Store a completion with a fresh Idempotency-Key; committed (fsynced) on return."""
        key = key or str(uuid.uuid4())
        cur = self._x("INSERT INTO completions (key, operator, body, created_at) VALUES (?,?,?,?)",
                      (key, operator, json.dumps(body, sort_keys=True), time.time()))
        return self.get(cur.lastrowid)

    def get(self, seq: int) -> Entry | None:
        """One entry by its local sequence number."""
        row = self._x("SELECT * FROM completions WHERE seq = ?", (seq,)).fetchone()
        return Entry.from_row(row) if row else None

    def head(self) -> Entry | None:
        """The oldest entry not yet accepted by the server's API (what must be sent next)."""
        row = self._x("SELECT * FROM completions WHERE state = 'pending' ORDER BY seq LIMIT 1"
                      ).fetchone()
        return Entry.from_row(row) if row else None

    def pending_count(self) -> int:
        """Entries not yet handed to the server."""
        return self._x("SELECT count(*) FROM completions WHERE state = 'pending'").fetchone()[0]

    def undecided(self, limit: int = 100) -> list[Entry]:
        """Entries the server took (202) but has not decided yet, oldest first."""
        rows = self._x("SELECT * FROM completions WHERE state = 'sent' ORDER BY seq LIMIT ?",
                       (limit,)).fetchall()
        return [Entry.from_row(r) for r in rows]

    def open_for(self, lot_no: str, step: str, unit: str | None) -> Entry | None:
        """The newest undecided entry completing this lot's step (for this unit, or the lot)."""
        row = self._x("SELECT * FROM completions WHERE state IN ('pending', 'sent') "
                      "AND json_extract(body, '$.lot_no') = ? AND json_extract(body, '$.step') = ? "
                      "AND json_extract(body, '$.unit_serial') IS ? ORDER BY seq DESC LIMIT 1",
                      (lot_no, step, unit)).fetchone()
        return Entry.from_row(row) if row else None

    def counts(self) -> dict[str, int]:
        """Number of entries per state."""
        return {r[0]: r[1] for r in self._x(
            "SELECT state, count(*) FROM completions GROUP BY state")}

    def all(self) -> list[Entry]:
        """Every entry in order (tests and diagnostics)."""
        return [Entry.from_row(r) for r in self._x("SELECT * FROM completions ORDER BY seq")]

    def mark_sent(self, seq: int, server_id: int) -> None:
        """The server answered 202 with this id."""
        self._x("UPDATE completions SET state = 'sent', server_id = ?, sent_at = ?, "
                "attempts = attempts + 1, last_error = NULL WHERE seq = ? AND state = 'pending'",
                (server_id, time.time(), seq))

    def mark_decided(self, seq: int, status: str, reasons: list | None = None,
                     error: str | None = None) -> None:
        """The server decided (accepted / rejected / failed)."""
        self._x("UPDATE completions SET state = ?, reasons = ?, decided_at = ?, last_error = ? "
                "WHERE seq = ?", (status, json.dumps(reasons or []), time.time(), error, seq))

    def mark_invalid(self, seq: int, error: str) -> None:
        """The server refused the request itself (4xx): retrying cannot help; show it."""
        self._x("UPDATE completions SET state = 'invalid', last_error = ?, decided_at = ?, "
                "attempts = attempts + 1 WHERE seq = ?", (error[:2000], time.time(), seq))

    def note_error(self, seq: int, error: str) -> None:
        """A transient failure (offline, 5xx, 409): keep the entry pending, remember why."""
        self._x("UPDATE completions SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error[:2000], seq))

    def unseen(self) -> list[Entry]:
        """Decided entries the operator has not been shown yet."""
        rows = self._x("SELECT * FROM completions WHERE seen = 0 AND state IN "
                       "('accepted','rejected','failed','invalid') ORDER BY seq").fetchall()
        return [Entry.from_row(r) for r in rows]

    def mark_seen(self, seq: int) -> None:
        """The operator was shown this decision."""
        self._x("UPDATE completions SET seen = 1 WHERE seq = ?", (seq,))

    def prune(self, older_than_days: float = 30) -> int:
        """Delete decided, seen entries older than N days (the server holds the record)."""
        cutoff = time.time() - older_than_days * 86400
        return self._x("DELETE FROM completions WHERE seen = 1 AND state IN "
                       "('accepted','rejected','failed','invalid') AND decided_at < ?",
                       (cutoff,)).rowcount

    # -- label journal ------------------------------------------------------------------
    def label_pulled(self, job_id: int, zpl: str) -> None:
        """Record a pulled job before printing it (a second pull of the same id is ignored)."""
        self._x("INSERT OR IGNORE INTO label_jobs (job_id, zpl, state, pulled_at) "
                "VALUES (?, ?, 'pulled', ?)", (job_id, zpl, time.time()))

    def label_state(self, job_id: int, state: str, printed: bool | None = None,
                    reason: str | None = None) -> None:
        """Move a label job along pulled → sending → printed|failed → acked."""
        now = time.time()
        self._x("UPDATE label_jobs SET state = ?, printed = COALESCE(?, printed), "
                "printer_reason = COALESCE(?, printer_reason), attempts = attempts + "
                "(CASE WHEN ? = 'sending' THEN 1 ELSE 0 END), "
                "printed_at = CASE WHEN ? IN ('printed','failed') THEN ? ELSE printed_at END, "
                "acked_at = CASE WHEN ? = 'acked' THEN ? ELSE acked_at END WHERE job_id = ?",
                (state, None if printed is None else int(printed), reason, state, state, now,
                 state, now, job_id))

    def labels(self, states: tuple[str, ...]) -> list[sqlite3.Row]:
        """Journal rows in the given states, oldest first."""
        marks = ",".join("?" * len(states))
        return self._x(f"SELECT * FROM label_jobs WHERE state IN ({marks}) ORDER BY job_id",
                       states).fetchall()
