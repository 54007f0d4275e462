"""Named cross-process locks: a PostgreSQL advisory lock, or flock on the embedded SQLite."""
from __future__ import annotations

import fcntl
import hashlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

from flask import current_app
from sqlalchemy import text

from ..extensions import db


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
