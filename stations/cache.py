"""Local copies of lots, routings and this station's record, so work goes on while offline.

Also keeps a salted PBKDF2 verifier per operator who logged in here online, so the same operator
can log in while the server is unreachable (their work is queued and sent with their identity
once a token can be fetched). Passwords themselves are never stored.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path

from .queue import _PerThread

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lots (lot_no TEXT PRIMARY KEY, body TEXT NOT NULL,
                                 fetched_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS serials (serial TEXT PRIMARY KEY, lot_no TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (code TEXT PRIMARY KEY, revision INTEGER NOT NULL,
                                     body TEXT NOT NULL, fetched_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, salt BLOB NOT NULL,
                                  hash BLOB NOT NULL, role TEXT, updated_at REAL NOT NULL);
"""
PBKDF2_ROUNDS = 120_000


class Cache:
    """SQLite-backed cache of server data for offline work."""

    def __init__(self, path: Path | str):
        self._db = _PerThread(Path(path), _SCHEMA)

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def _x(self, sql: str, args=()):
        return self._db.conn().execute(sql, args)

    def put_lot(self, lot: dict) -> None:
        """Remember a lot (and index its unit serials for offline unit scans)."""
        conn = self._db.conn()
        conn.execute("BEGIN")
        try:
            conn.execute("INSERT OR REPLACE INTO lots VALUES (?, ?, ?)",
                         (lot["lot_no"], json.dumps(lot), time.time()))
            conn.executemany("INSERT OR REPLACE INTO serials VALUES (?, ?)",
                             [(s, lot["lot_no"]) for s in lot.get("serials") or []])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_lot(self, lot_no: str) -> tuple[dict, float] | None:
        """(lot, fetched_at) or None."""
        row = self._x("SELECT body, fetched_at FROM lots WHERE lot_no = ?", (lot_no,)).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def lot_for_serial(self, serial: str) -> str | None:
        """The lot number a cached unit serial belongs to."""
        row = self._x("SELECT lot_no FROM serials WHERE serial = ?", (serial,)).fetchone()
        return row[0] if row else None

    def put_product(self, product: dict) -> None:
        """Remember a product's current routing."""
        self._x("INSERT OR REPLACE INTO products VALUES (?, ?, ?, ?)",
                (product["code"], product.get("revision", 0), json.dumps(product), time.time()))

    def get_product(self, code: str) -> dict | None:
        """The cached product, or None."""
        row = self._x("SELECT body FROM products WHERE code = ?", (code,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, name: str, value) -> None:
        """Store a small JSON value (this station's record, firmware state)."""
        self._x("INSERT OR REPLACE INTO kv VALUES (?, ?)", (name, json.dumps(value)))

    def get(self, name: str, default=None):
        """A stored JSON value, or ``default``."""
        row = self._x("SELECT body FROM kv WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    @staticmethod
    def _hash(password: str, salt: bytes) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)

    def remember_user(self, username: str, password: str, role: str | None) -> None:
        """After an online login: keep a verifier so this operator can log in offline."""
        salt = os.urandom(16)
        self._x("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?)",
                (username, salt, self._hash(password, salt), role, time.time()))

    def check_user(self, username: str, password: str) -> tuple[bool, str | None]:
        """(True, role) when the password matches this operator's last online login here."""
        row = self._x("SELECT salt, hash, role FROM users WHERE username = ?",
                      (username,)).fetchone()
        if row is None:
            return False, None
        return hmac.compare_digest(self._hash(password, row[0]), row[1]), row[2]
