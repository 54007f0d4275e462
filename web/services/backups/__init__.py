"""Database snapshots: dump, hash, store, prove, record.

PostgreSQL: a REPEATABLE READ transaction exports its snapshot (``pg_export_snapshot()``), counts
the rows of every table in it, and stays open while ``pg_dump -Fc --snapshot=<id>`` dumps exactly
that snapshot, so the recorded counts and the dump agree to the row. The password reaches
``pg_dump`` through ``PGPASSWORD`` in its environment, never on its command line. SQLite (the
embedded default): the online backup API copies the database, then the rows of the copy are
counted.

The dump streams into a private temp directory while it is hashed, is uploaded through the
``backups`` storage area to ``db/YYYY/MM/DD/<name>`` (S3 adds the area's ``backups/`` prefix),
read back and hashed again, and checked with ``pg_restore --list`` (SQLite: ``integrity_check``).
A small manifest (``<name>.json``: sha256, size, versions, row counts) is written last: it marks
the object complete and lets ``neurohub restore`` work from storage alone when the database that
holds this catalog is gone. Any failure ends the Backup ``failed`` with the error and removes what
was stored, so no partial object is ever left looking complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from queues import queue_for
from storage import ObjectNotFound, StorageAdapter, StorageError, get_storage
from storage.base import CHUNK_SIZE

from ...extensions import db
from ...models import Backup, utcnow
from ...problems import Conflict, NotFound
from .. import periodic
from ..audit import Actor, record
from ..outbox import done, enqueue, retry_in
from .dumps import (BackupError, Dump, Progress, check_archive, count_sqlite, dump_postgres,
                    dump_sqlite, is_postgres_url, pg_params, pg_tool, private_tempdir, redact,
                    sqlite_path)
from ..plumbing import page

log = logging.getLogger(__name__)

SNAPSHOT_TASK = "backups.snapshot"
QUEUE = queue_for(SNAPSHOT_TASK)
SNAPSHOT_LOCK = "backups.snapshot"
SYSTEM = Actor(None, "system:backup")
MANIFEST_FORMAT = "neurohub-backup/1"


class BackupNotFound(NotFound, LookupError):
    """No backup with this id."""

    def __init__(self, backup_id: int):
        super().__init__(f"unknown backup {backup_id}")


class BackupStateError(Conflict, ValueError):
    """The backup's state does not allow this (e.g. verifying one that is not done)."""


class SnapshotBusy(RuntimeError):
    """Another snapshot is running (they take one lock)."""


def backup_storage() -> StorageAdapter:
    """The ``backups`` storage area of this configuration."""
    return get_storage("backups", current_app.config)


def manifest_key(key: str) -> str:
    """Where the manifest of a stored backup lives."""
    return key + ".json"


def hash_stored(storage: StorageAdapter, key: str, copy_to: str | None = None) -> tuple[int, str]:
    """(size, sha256) of a stored object, re-read from storage (optionally copied to a file)."""
    digest, size = hashlib.sha256(), 0
    out = open(copy_to, "wb") if copy_to else None
    try:
        with storage.open(key) as fh:
            while chunk := fh.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
                if out:
                    out.write(chunk)
    finally:
        if out:
            out.close()
    return size, digest.hexdigest()


def read_manifest(storage: StorageAdapter, key: str) -> dict:
    """The manifest stored next to a backup (its presence marks the backup complete)."""
    try:
        with storage.open(manifest_key(key)) as fh:
            data = json.loads(fh.read(1024 * 1024))
    except ObjectNotFound:
        raise BackupError(f"{key}: no manifest; the backup is incomplete or not ours") from None
    except ValueError as exc:
        raise BackupError(f"{key}: unreadable manifest: {exc}") from None
    if data.get("format") != MANIFEST_FORMAT or data.get("key") != key:
        raise BackupError(f"{key}: the manifest does not describe this object")
    return data


def _remove_stored(storage: StorageAdapter, key: str | None) -> None:
    if not key:
        return
    for k in (manifest_key(key), key):  # manifest first: the object stops looking complete
        try:
            storage.delete(k)
        except (StorageError, OSError) as exc:
            log.error("backup cleanup: cannot delete %s: %s", k, exc)


def object_name(b: Backup, engine: str, at: datetime) -> str:
    """db/YYYY/MM/DD/neurohub-<UTC time>-<id>.dump (or .sqlite3)."""
    ext = ".dump" if engine == "postgresql" else ".sqlite3"
    return f"db/{at:%Y/%m/%d}/neurohub-{at:%Y%m%dT%H%M%SZ}-{b.id}{ext}"


def manifest_of(b: Backup) -> dict:
    """The manifest document of a done backup."""
    return {"format": MANIFEST_FORMAT, "backup_id": b.id, "kind": b.kind,
            "slot": b.slot.isoformat() if b.slot else None, "key": b.storage_key,
            "engine": b.engine, "size": b.size, "sha256": b.sha256,
            "server_version": b.server_version, "schema_revision": b.schema_revision,
            "dump_tool": b.dump_tool, "row_counts": b.row_counts,
            "started_at": b.started_at.isoformat() if b.started_at else None,
            "finished_at": b.finished_at.isoformat() if b.finished_at else None}


# -- the snapshot itself ------------------------------------------------------------------------

def outbox_key(backup_id: int) -> str:
    """The outbox key of a requested backup's snapshot message."""
    return f"backup:{backup_id}"


def _complete(storage: StorageAdapter, b: Backup) -> dict | None:
    """The manifest of ``b``'s stored object when there is one (the object is then complete)."""
    try:
        m = read_manifest(storage, b.storage_key)
    except (BackupError, StorageError):
        return None
    return m if m.get("backup_id") == b.id else None


def fail_interrupted(storage: StorageAdapter | None = None) -> int:
    """Backups left ``running`` by a dead run are failed (call under the snapshot lock only).

    A row whose object has its manifest is complete, not interrupted: the run died after the
    manifest (its last write), or the database was restored by hand from that very backup. It is
    recorded ``done`` from the manifest and its object kept, never deleted.
    """
    rows = list(db.session.scalars(select(Backup).where(Backup.state == "running")))
    for b in rows:
        manifest = _complete(storage or backup_storage(), b) if b.storage_key else None
        if manifest:
            for name in ("size", "sha256", "server_version", "schema_revision", "dump_tool",
                         "row_counts"):
                setattr(b, name, manifest.get(name))
            b.state, b.error, b.finished_at = "done", None, utcnow()
            record(SYSTEM, "backup.done", "backup", b.id,
                   after={"key": b.storage_key, "from": "its stored manifest"})
            continue
        if b.storage_key:
            _remove_stored(storage or backup_storage(), b.storage_key)
        b.state, b.finished_at = "failed", utcnow()
        b.error = "interrupted: the run that took this backup stopped before finishing"
        record(SYSTEM, "backup.failed", "backup", b.id, after={"error": b.error})
    db.session.commit()
    return len(rows)


def perform(b: Backup, *, source_url: str | None = None, storage: StorageAdapter | None = None,
            progress: Progress | None = None) -> Backup:
    """Take the snapshot for a ``running`` Backup row; it ends ``done`` or ``failed`` (committed).

    Only ``BaseException``s that are not errors (a time limit, Ctrl-C) propagate, after the row
    was marked failed and what was stored removed.
    """
    url = source_url or current_app.config["DATABASE_URL"]
    storage = storage or backup_storage()
    backup_id, started = b.id, b.started_at or utcnow()
    tmpdir, key = private_tempdir(), None  # key: what to remove from storage on failure
    try:
        engine = "postgresql" if is_postgres_url(url) else "sqlite"
        b.engine = engine
        b.storage_key = key = object_name(b, engine, started)
        db.session.commit()  # known before the upload: an orphan can always be cleaned up
        path = os.path.join(tmpdir, os.path.basename(key))
        dump = (dump_postgres if engine == "postgresql" else dump_sqlite)(url, path, progress)
        _upload_proven(storage, path, key, dump)
        check = check_archive(engine, path)  # the very bytes just proven identical
        return _record_done(storage, backup_id, key, dump, check)
    except BaseException as exc:
        b = _record_failed(storage, backup_id, key, exc, b)
        if not isinstance(exc, Exception):
            raise
        return b
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _upload_proven(storage: StorageAdapter, path: str, key: str, dump: Dump) -> None:
    """Upload the dump under ``key``; BackupError unless storage holds exactly its bytes."""
    stored = storage.upload(path, key)
    if stored.size != dump.size or (stored.sha256 and stored.sha256 != dump.sha256):
        raise BackupError(f"storage holds {stored.size} bytes sha256 {stored.sha256}, "
                          f"expected {dump.size} bytes sha256 {dump.sha256}")
    size, sha = hash_stored(storage, key)  # read back what storage really holds
    if (size, sha) != (dump.size, dump.sha256):
        raise BackupError(f"read back {size} bytes sha256 {sha}, expected {dump.size} "
                          f"bytes sha256 {dump.sha256}")


def _record_done(storage: StorageAdapter, backup_id: int, key: str, dump: Dump,
                 check: str) -> Backup:
    """Record the proven dump on its row, store the manifest (last), commit the row ``done``."""
    b = db.session.get(Backup, backup_id)
    b.size, b.sha256, b.server_version = dump.size, dump.sha256, dump.server_version
    b.schema_revision, b.dump_tool, b.row_counts = (dump.schema_revision, dump.dump_tool,
                                                    dump.row_counts)
    b.finished_at = b.verified_at = utcnow()
    manifest = json.dumps(manifest_of(b), indent=1, sort_keys=True).encode()
    storage.put(manifest_key(key), io.BytesIO(manifest))
    b.state, b.error = "done", None
    done([outbox_key(backup_id)])
    record(SYSTEM, "backup.done", "backup", backup_id, after={
        "key": key, "size": b.size, "sha256": b.sha256, "check": check,
        "rows": sum(b.row_counts.values())})
    db.session.commit()
    return b


def _record_failed(storage: StorageAdapter, backup_id: int, key: str | None,
                   exc: BaseException, b: Backup) -> Backup:
    """Remove what was stored and commit the row ``failed``; returns the row (else ``b``)."""
    db.session.rollback()
    _remove_stored(storage, key)
    error = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
    log.error("backup %s failed: %s", backup_id, error)
    try:
        b = db.session.get(Backup, backup_id)
        b.state, b.error, b.finished_at = "failed", error[:4000], utcnow()
        done([outbox_key(backup_id)])
        record(SYSTEM, "backup.failed", "backup", backup_id, after={"error": error[:500]})
        db.session.commit()
    except Exception as rec_exc:  # the database itself is gone: the next run fails it
        db.session.rollback()
        log.error("backup %s: cannot record the failure: %s", backup_id, rec_exc)
    return b


def _new_running(kind: str, requested_by: str, slot: datetime | None = None) -> Backup | None:
    b = Backup(kind=kind, slot=slot, state="running", requested_by=requested_by,
               started_at=utcnow())
    db.session.add(b)
    try:
        db.session.commit()
    except IntegrityError:  # (kind, slot) taken: that slot has its backup
        db.session.rollback()
        return None
    return b


def scheduled_snapshot(slot: str | datetime | None, progress: Progress | None = None) -> dict:
    """The beat's nightly snapshot: one per scheduled slot, never two at once."""

    def body(when: datetime) -> dict:
        fail_interrupted()
        b = _new_running("scheduled", "system:beat", when)
        if b is None:
            return {"skipped": "the slot has its backup"}
        b = perform(b, progress=progress)
        if b.state != "done":
            raise BackupError(f"backup {b.id} failed: {b.error}")
        return {"backup_id": b.id, "state": b.state, "key": b.storage_key}

    return periodic.run_once(SNAPSHOT_TASK, slot, body, lock=SNAPSHOT_LOCK)


def request_backup(actor: Actor) -> Backup:
    """A manual backup requested over the API: queued, taken by the io worker (via the outbox)."""
    b = Backup(kind="manual", state="queued", requested_by=actor.name)
    db.session.add(b)
    db.session.flush()
    enqueue(SNAPSHOT_TASK, [b.id], QUEUE, outbox_key(b.id))
    record(actor, "backup.requested", "backup", b.id)
    db.session.commit()
    return b


def run_requested(backup_id: int, retry_after: float = 15.0) -> str:
    """Take a queued manual backup (the worker side of ``request_backup``)."""
    b = db.session.get(Backup, backup_id)
    if b is None or b.state in ("done", "failed"):
        done([outbox_key(backup_id)])
        db.session.commit()
        return b.state if b else "missing"
    db.session.rollback()
    with periodic.single_run(SNAPSHOT_LOCK) as got:
        if not got:  # a snapshot is running: come back later (durably, through the outbox)
            retry_in([outbox_key(backup_id)], retry_after)
            db.session.commit()
            return "busy"
        fail_interrupted()
        claimed = db.session.execute(update(Backup).where(
            Backup.id == backup_id, Backup.state == "queued").values(
            state="running", started_at=utcnow())).rowcount
        db.session.commit()
        if not claimed:
            return db.session.get(Backup, backup_id).state
        return perform(db.session.get(Backup, backup_id)).state


def snapshot_now(actor: Actor, *, progress: Progress | None = None, wait: float = 600.0,
                 source_url: str | None = None, storage: StorageAdapter | None = None) -> Backup:
    """A manual backup taken in this process (``neurohub backup now``), waiting for the lock."""
    deadline = time.monotonic() + wait
    while True:
        with periodic.single_run(SNAPSHOT_LOCK) as got:
            if got:
                fail_interrupted(storage)
                b = _new_running("manual", actor.name)
                record(actor, "backup.requested", "backup", b.id)
                db.session.commit()
                return perform(b, source_url=source_url, storage=storage, progress=progress)
        if time.monotonic() > deadline:
            raise SnapshotBusy("another snapshot is still running; try again later")
        time.sleep(1.0)


def get_backup(backup_id: int) -> Backup:
    """The backup with this id."""
    b = db.session.get(Backup, backup_id)
    if b is None:
        raise BackupNotFound(backup_id)
    return b


# -- reading ------------------------------------------------------------------------------------

def list_backups(state: str | None, kind: str | None, cursor, limit: int):
    """A page of backups, newest first."""
    stmt = select(Backup)
    if state:
        stmt = stmt.where(Backup.state == state)
    if kind:
        stmt = stmt.where(Backup.kind == kind)
    return page(db.session, stmt, Backup.id, cursor, limit)


def newest_done() -> Backup | None:
    """The newest complete, still stored backup."""
    return db.session.scalar(select(Backup).where(Backup.state == "done",
                                                  Backup.expired_at.is_(None))
                             .order_by(Backup.finished_at.desc(), Backup.id.desc()).limit(1))


def last_drill() -> Backup | None:
    """The backup of the most recent restore drill."""
    return db.session.scalar(select(Backup).where(Backup.drill_at.is_not(None))
                             .order_by(Backup.drill_at.desc()).limit(1))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def backup_dict(b: Backup) -> dict:
    """A backup as the API shows it."""
    return {"id": b.id, "kind": b.kind, "slot": _iso(b.slot), "state": b.state,
            "engine": b.engine, "storage_key": b.storage_key, "size": b.size,
            "sha256": b.sha256, "server_version": b.server_version,
            "schema_revision": b.schema_revision, "dump_tool": b.dump_tool,
            "row_counts": b.row_counts, "error": b.error, "requested_by": b.requested_by,
            "created_at": _iso(b.created_at), "started_at": _iso(b.started_at),
            "finished_at": _iso(b.finished_at), "verified_at": _iso(b.verified_at),
            "verify_error": b.verify_error, "drill_at": _iso(b.drill_at),
            "drill_result": b.drill_result, "drill_detail": b.drill_detail,
            "expired_at": _iso(b.expired_at)}


__all__ = ["BackupError", "BackupNotFound", "BackupStateError", "SnapshotBusy", "Dump",
           "dump_postgres", "dump_sqlite", "check_archive", "perform", "scheduled_snapshot",
           "request_backup", "run_requested", "snapshot_now",
           "list_backups", "newest_done", "last_drill", "backup_dict", "get_backup",
           "backup_storage", "read_manifest", "hash_stored", "pg_tool", "pg_params",
           "is_postgres_url", "redact", "private_tempdir", "count_sqlite", "sqlite_path",
           "fail_interrupted", "manifest_key", "outbox_key"]
