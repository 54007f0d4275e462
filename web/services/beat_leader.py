"""One ``celery beat`` per database: the first beat holds a lock for its whole life, a second exits.

The per-slot claims of ``periodic`` already make a second beat's runs harmless; this lock makes a
second beat (a second ``neurohub up``, one started by hand alongside) impossible instead: a
PostgreSQL session-level advisory lock on the beat's own connection (one per database, from any
host), or an ``flock`` under the data dir on the embedded SQLite. Both die with the process.
"""
from __future__ import annotations

from .plumbing import hold_for_process, is_held_elsewhere
from .periodic import PERIODIC_LOCK_NS

LEADER_LOCK = "beat.leader"
ANOTHER_BEAT = ("another celery beat is already running against this database; there must be "
                "only one (stop it first)")


def become_leader() -> bool:
    """Take the beat lock for the life of this process; False when another beat holds it."""
    return hold_for_process(PERIODIC_LOCK_NS, LEADER_LOCK, "beat")


def other_beat_running() -> bool:
    """True when some other process holds the beat lock (a beat is running)."""
    return is_held_elsewhere(PERIODIC_LOCK_NS, LEADER_LOCK, "beat")


__all__ = ["ANOTHER_BEAT", "LEADER_LOCK", "become_leader", "other_beat_running"]
