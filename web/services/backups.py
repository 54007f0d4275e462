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
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from storage import ObjectNotFound, StorageAdapter, StorageError, get_storage
from storage.base import CHUNK_SIZE

from ..extensions import db
from ..models import Backup, OutboxMessage, utcnow
from . import periodic
from .audit import Actor, record
from .outbox import done, enqueue
from .pagination import page

log = logging.getLogger(__name__)

SNAPSHOT_TASK, VERIFY_TASK, QUEUE = "backups.snapshot", "backups.verify", "io"
SNAPSHOT_LOCK = "backups.snapshot"
SYSTEM = Actor(None, "system:backup")
MANIFEST_FORMAT = "neurohub-backup/1"
PG_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
          "sslkey": "PGSSLKEY", "options": "PGOPTIONS", "target_session_attrs":
          "PGTARGETSESSIONATTRS", "connect_timeout": "PGCONNECT_TIMEOUT"}
Progress = Callable[[int, float], Any]  # (bytes so far, seconds so far)


class BackupError(RuntimeError):
    """The snapshot, its upload or its check failed; the message says why."""


class BackupNotFound(LookupError):
    """No backup with this id."""


class BackupStateError(ValueError):
    """The backup's state does not allow this (e.g. verifying one that is not done)."""


class SnapshotBusy(RuntimeError):
    """Another snapshot is running (they take one lock)."""


@dataclass
class Dump:
    """What a dump produced: the file, its hash and what it holds."""

    path: str
    engine: str
    size: int = 0
    sha256: str = ""
    server_version: str | None = None
    schema_revision: str | None = None
    dump_tool: str | None = None
    row_counts: dict[str, int] = field(default_factory=dict)


# -- PostgreSQL connection plumbing (shared with restore) ---------------------------------------

def is_postgres_url(url: str) -> bool:
    """True for postgresql URLs (any driver)."""
    return make_url(url).get_backend_name() == "postgresql"


def pg_params(url: str) -> dict:
    """psycopg connect() keyword arguments for a SQLAlchemy URL."""
    u = make_url(url)
    params: dict[str, Any] = {k: v for k, v in u.query.items() if isinstance(v, str)}
    params.update({"host": u.host or params.get("host"), "port": u.port or params.get("port"),
                   "user": u.username, "password": u.password, "dbname": u.database})
    params.setdefault("connect_timeout", 10)
    return {k: v for k, v in params.items() if v not in (None, "")}


def pg_tool(url: str, program: str, *args: str, dbname: str | None = None) -> tuple[list, dict]:
    """argv and environment for a PostgreSQL client program; the password goes in PGPASSWORD."""
    p = pg_params(url)
    argv = [program, "--no-password"]
    if p.get("host"):
        argv += ["--host", str(p["host"])]
    if p.get("port"):
        argv += ["--port", str(p["port"])]
    if p.get("user"):
        argv += ["--username", str(p["user"])]
    argv += list(args)
    env = dict(os.environ, PGAPPNAME=f"neurohub-{os.path.basename(program)}")
    env.pop("PGPASSWORD", None)
    if p.get("password"):
        env["PGPASSWORD"] = str(p["password"])
    for key, var in PG_ENV.items():
        if key in p:
            env[var] = str(p[key])
    if dbname is not None:
        argv += [dbname]
    return argv, env


def redact(url: str) -> str:
    """A URL fit to print: the password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


def tool_version(program: str) -> str:
    """``pg_dump --version`` and friends, for the record."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()[:100]
    except OSError as exc:
        raise BackupError(f"{program} is not available: {exc}") from None


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - limit, 0))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def private_tempdir(prefix: str = "neurohub-backup-") -> str:
    """A fresh 0700 directory for dump files (never a predictable /tmp/<name>)."""
    base = current_app.config.get("BACKUP_TMP_DIR") or None
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


# -- dumping ------------------------------------------------------------------------------------

def _count_pg(cur) -> dict[str, int]:
    from psycopg import sql
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "ORDER BY tablename")
    counts = {}
    for (table,) in cur.fetchall():
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        counts[table] = cur.fetchone()[0]
    return counts


def _pipe_to_file(proc: subprocess.Popen, path: str, progress: Progress | None) -> tuple[int, str]:
    digest, size, started, last = hashlib.sha256(), 0, time.monotonic(), 0.0
    with open(path, "wb") as out:
        while True:
            chunk = proc.stdout.read(CHUNK_SIZE)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            now = time.monotonic()
            if progress and now - last >= 0.5:
                progress(size, now - started)
                last = now
        out.flush()
        os.fsync(out.fileno())
    if progress:
        progress(size, time.monotonic() - started)
    return size, digest.hexdigest()


def dump_postgres(url: str, path: str, progress: Progress | None = None) -> Dump:
    """pg_dump -Fc of an exported REPEATABLE READ snapshot, with row counts from that snapshot."""
    import psycopg
    dump = Dump(path=path, engine="postgresql", dump_tool=tool_version("pg_dump"))
    try:
        conn = psycopg.connect(**pg_params(url), autocommit=True)
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to the database {redact(url)}: {exc}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
            snapshot, dump.server_version = cur.fetchone()
            dump.row_counts = _count_pg(cur)
            if "alembic_version" in dump.row_counts:
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
                dump.schema_revision = row[0] if row else None
            argv, env = pg_tool(url, "pg_dump", "--format=custom", f"--snapshot={snapshot}",
                                dbname=pg_params(url)["dbname"])
            errlog = path + ".stderr"
            with open(errlog, "wb") as err:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
            try:
                dump.size, dump.sha256 = _pipe_to_file(proc, path, progress)
                rc = proc.wait()
            finally:
                if proc.poll() is None:  # our side failed (disk full, time limit): stop it
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            if rc != 0:
                raise BackupError(f"pg_dump exited with {rc}: {_tail(errlog)}")
            cur.execute("COMMIT")  # the snapshot had to live until pg_dump was done
    except psycopg.Error as exc:
        raise BackupError(f"database error during the snapshot: {exc}") from None
    finally:
        conn.close()
    return dump


def sqlite_path(url: str) -> str:
    """The file of a sqlite:/// URL."""
    path = make_url(url).database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return path


def count_sqlite(path: str) -> tuple[dict[str, int], str | None]:
    """Row counts of every table of a SQLite file, and its Alembic revision."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        revision = None
        if "alembic_version" in counts:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        return counts, revision
    finally:
        conn.close()


def hash_file(path: str) -> tuple[int, str]:
    """(size, sha256) of a local file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def dump_sqlite(url: str, path: str, progress: Progress | None = None) -> Dump:
    """The online backup API into ``path``, then the rows of that copy counted."""
    started = time.monotonic()
    try:
        src = sqlite3.connect(sqlite_path(url), timeout=30)
        dst = sqlite3.connect(path)
        try:
            src.backup(dst, pages=1024,
                       progress=(lambda _s, remaining, total: progress(
                           (total - remaining) * 4096, time.monotonic() - started))
                       if progress else None)
        finally:
            dst.close()
            src.close()
        counts, revision = count_sqlite(path)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup failed: {exc}") from None
    size, sha = hash_file(path)
    return Dump(path=path, engine="sqlite", size=size, sha256=sha, row_counts=counts,
                schema_revision=revision, server_version=f"SQLite {sqlite3.sqlite_version}",
                dump_tool="sqlite3 online backup API")


def check_archive(engine: str, path: str) -> str:
    """Prove the file is a readable archive: ``pg_restore --list`` / ``integrity_check``."""
    if engine == "postgresql":
        out = subprocess.run(["pg_restore", "--list", path], capture_output=True, timeout=600)
        if out.returncode != 0:
            raise BackupError("pg_restore --list failed: "
                              + out.stderr.decode("utf-8", "replace").strip()[-1000:])
        entries = sum(1 for line in out.stdout.splitlines() if line and not line.startswith(b";"))
        if entries == 0:
            raise BackupError("pg_restore --list shows an empty archive")
        return f"pg_restore --list: {entries} entries"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"not a readable SQLite database: {exc}") from None
    if result != "ok":
        raise BackupError(f"SQLite integrity_check: {result}")
    return "integrity_check: ok"


# -- storage ------------------------------------------------------------------------------------

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


def fail_interrupted(storage: StorageAdapter | None = None) -> int:
    """Backups left ``running`` by a dead run are failed (call under the snapshot lock only)."""
    rows = list(db.session.scalars(select(Backup).where(Backup.state == "running")))
    for b in rows:
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
    cfg = current_app.config
    url = source_url or cfg["DATABASE_URL"]
    storage = storage or backup_storage()
    backup_id, started = b.id, b.started_at or utcnow()
    tmpdir = private_tempdir()
    key = None
    try:
        engine = "postgresql" if is_postgres_url(url) else "sqlite"
        b.engine = engine
        b.storage_key = key = object_name(b, engine, started)
        db.session.commit()  # known before the upload: an orphan can always be cleaned up
        path = os.path.join(tmpdir, os.path.basename(key))
        dump = (dump_postgres if engine == "postgresql" else dump_sqlite)(url, path, progress)
        stored = storage.upload(path, key)
        if stored.size != dump.size or (stored.sha256 and stored.sha256 != dump.sha256):
            raise BackupError(f"storage holds {stored.size} bytes sha256 {stored.sha256}, "
                              f"expected {dump.size} bytes sha256 {dump.sha256}")
        size, sha = hash_stored(storage, key)  # read back what storage really holds
        if (size, sha) != (dump.size, dump.sha256):
            raise BackupError(f"read back {size} bytes sha256 {sha}, expected {dump.size} "
                              f"bytes sha256 {dump.sha256}")
        check = check_archive(engine, path)  # the very bytes just proven identical
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
    except BaseException as exc:
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
        if not isinstance(exc, Exception):
            raise
        return b
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


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
            _reschedule(outbox_key(backup_id), retry_after)
            return "busy"
        fail_interrupted()
        claimed = db.session.execute(update(Backup).where(
            Backup.id == backup_id, Backup.state == "queued").values(
            state="running", started_at=utcnow())).rowcount
        db.session.commit()
        if not claimed:
            return db.session.get(Backup, backup_id).state
        return perform(db.session.get(Backup, backup_id)).state


def _reschedule(dedup_key: str, seconds: float) -> None:
    from datetime import timedelta
    db.session.execute(update(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key).values(
        available_at=utcnow() + timedelta(seconds=seconds), dispatched_at=None))
    db.session.commit()


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


# -- verification -------------------------------------------------------------------------------

def get_backup(backup_id: int) -> Backup:
    """The backup with this id."""
    b = db.session.get(Backup, backup_id)
    if b is None:
        raise BackupNotFound(backup_id)
    return b


def verify_key(backup_id: int) -> str:
    """The outbox key of a verify request."""
    return f"backup-verify:{backup_id}"


def request_verify(backup_id: int, actor: Actor) -> Backup:
    """Queue a verification of a done backup (idempotent while one is pending)."""
    b = get_backup(backup_id)
    if b.state != "done" or b.expired_at is not None:
        raise BackupStateError(f"backup {backup_id} is {'expired' if b.expired_at else b.state}; "
                               "only stored, done backups can be verified")
    pending = db.session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.dedup_key == verify_key(backup_id)))
    if pending is None:
        enqueue(VERIFY_TASK, [backup_id], QUEUE, verify_key(backup_id))
        record(actor, "backup.verify_requested", "backup", backup_id)
    db.session.commit()
    return b


def verify(backup_id: int, storage: StorageAdapter | None = None) -> Backup:
    """Re-read and hash the stored object, then check it as an archive; recorded either way."""
    b = get_backup(backup_id)
    done([verify_key(backup_id)])
    if b.state != "done" or not b.storage_key:
        db.session.commit()
        raise BackupStateError(f"backup {backup_id} is {b.state}")
    storage = storage or backup_storage()
    tmpdir = private_tempdir("neurohub-verify-")
    try:
        path = os.path.join(tmpdir, "backup")
        size, sha = hash_stored(storage, b.storage_key, copy_to=path)
        if sha != b.sha256 or size != b.size:
            raise BackupError(f"sha256 mismatch: stored object has {size} bytes sha256 {sha}, "
                              f"recorded {b.size} bytes sha256 {b.sha256}")
        check = check_archive(b.engine, path)
    except (BackupError, StorageError, OSError) as exc:
        b.verify_error, b.verified_at = str(exc)[:4000], None  # no longer proven
        record(SYSTEM, "backup.verify_failed", "backup", b.id, after={"error": str(exc)[:500]})
        db.session.commit()
        return b
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    b.verified_at, b.verify_error = utcnow(), None
    record(SYSTEM, "backup.verified", "backup", b.id, after={"sha256": sha, "check": check})
    db.session.commit()
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
           "request_backup", "run_requested", "snapshot_now", "request_verify", "verify",
           "list_backups", "newest_done", "last_drill", "backup_dict", "get_backup",
           "backup_storage", "read_manifest", "hash_stored", "pg_tool", "pg_params",
           "is_postgres_url", "redact", "private_tempdir", "count_sqlite", "sqlite_path",
           "fail_interrupted", "manifest_key", "outbox_key"]
