"""Restoring backups: ``neurohub restore`` and the weekly restore drill.

Both start the same way: download the stored object into a private temp directory while hashing
it and compare with the recorded sha256 — a mismatch refuses *before* any database is touched —
then check it as an archive. A restore into PostgreSQL runs as ONE transaction
(``pg_restore -f - | psql --single-transaction``) that ends by comparing every table's row count
with the counts recorded in the snapshot: either the target holds exactly the backup, or it is
left as it was. A non-empty target is refused unless ``force``, which drops the ``public`` schema
inside that same transaction. The drill restores the newest backup into a scratch database
(``createdb`` … ``dropdb``), compares the row counts and records the result on the Backup.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from flask import current_app
from sqlalchemy.engine import make_url

from storage import StorageAdapter, StorageError
from storage.base import CHUNK_SIZE

from ...extensions import db
from ...models import Backup, utcnow
from .. import periodic
from ..audit import Actor, record
from . import (SYSTEM, BackupNotFound, backup_storage, get_backup, manifest_of, newest_done,
               read_manifest)
from .dumps import (BackupError, _count_pg, check_archive, count_sqlite, is_postgres_url,
                    pg_params, pg_tool, private_tempdir, redact, sqlite_path)
from .restored import settle_sql, settle_sqlite

log = logging.getLogger(__name__)
DRILL_TASK = "backups.restore_drill"
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
Say = Callable[[str], object]


class RestoreRefused(RuntimeError):
    """The restore was refused before the target database was touched; the message says why."""


class RestoreFailed(RuntimeError):
    """The restore ran and failed; the target was left as it was (one transaction)."""


@dataclass
class Source:
    """A backup to restore: where it is stored and what it must hash to and hold."""

    key: str
    sha256: str
    size: int
    engine: str
    row_counts: dict
    schema_revision: str | None
    backup_id: int | None
    manifest: dict | None = None  # what the restored catalog records for it (see ``restored``)


def resolve(ref: str | int, storage: StorageAdapter | None = None) -> Source:
    """A backup id from the catalog, or a storage key with its manifest (catalog lost)."""
    ref = str(ref).strip()
    if ref.isdigit():
        try:
            b = get_backup(int(ref))
        except BackupNotFound:
            raise RestoreRefused(f"no backup {ref} in the catalog; give its storage key "
                                 "(see `neurohub backup list --storage`)") from None
        if b.state != "done" or b.expired_at is not None:
            raise RestoreRefused(f"backup {ref} is {'expired' if b.expired_at else b.state}: "
                                 "nothing restorable is stored")
        return Source(b.storage_key, b.sha256, b.size, b.engine, dict(b.row_counts or {}),
                      b.schema_revision, b.id, manifest_of(b))
    try:
        m = read_manifest(storage or backup_storage(), ref)
    except (BackupError, StorageError) as exc:
        raise RestoreRefused(str(exc)) from None
    return Source(m["key"], m["sha256"], int(m["size"]), m["engine"], dict(m["row_counts"]),
                  m.get("schema_revision"), m.get("backup_id"), m)


def fetch(source: Source, storage: StorageAdapter, directory: str,
          progress: Callable[[int, int], object] | None = None) -> str:
    """Download into ``directory`` while hashing; refuse on any sha256 or size mismatch."""
    import hashlib
    path = os.path.join(directory, "restore" + (".dump" if source.engine == "postgresql"
                                                else ".sqlite3"))
    digest, size, last = hashlib.sha256(), 0, 0.0
    try:
        with storage.open(source.key) as src, open(path, "wb") as out:
            while chunk := src.read(CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if progress and time.monotonic() - last > 0.5:
                    progress(size, source.size)
                    last = time.monotonic()
    except (StorageError, OSError) as exc:
        raise RestoreRefused(f"cannot download {source.key}: {exc}") from None
    if progress:
        progress(size, source.size)
    sha = digest.hexdigest()
    if sha != source.sha256 or size != source.size:
        raise RestoreRefused(f"sha256 mismatch for {source.key}: downloaded {size} bytes sha256 "
                             f"{sha}, recorded {source.size} bytes sha256 {source.sha256}; the "
                             "backup is corrupt or was altered — refusing to restore it")
    try:
        check_archive(source.engine, path)
    except BackupError as exc:
        raise RestoreRefused(f"{source.key}: {exc}") from None
    return path


# -- PostgreSQL targets -------------------------------------------------------------------------

def pg_objects(url: str) -> int:
    """Relations (tables, views, sequences) in the target's public schema; 0 means empty."""
    import psycopg
    try:
        with psycopg.connect(**pg_params(url), autocommit=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m','S','f')"
            ).fetchone()[0]
    except psycopg.Error as exc:
        raise RestoreRefused(f"cannot connect to the target {redact(url)}: {exc}".strip()) \
            from None


def pg_counts(url: str) -> dict[str, int]:
    """Row counts of every table in the database's current schema."""
    import psycopg
    with psycopg.connect(**pg_params(url), autocommit=True) as conn, conn.cursor() as cur:
        return _count_pg(cur)


def _quote(table: str) -> str:
    if not _TABLE.match(table):
        raise RestoreRefused(f"unexpected table name in the backup record: {table!r}")
    return f'public."{table}"'  # the restore script empties search_path


def count_check_sql(expected: dict[str, int]) -> str:
    """A DO block that aborts the restore transaction when any row count differs."""
    lines = ["DO $neurohub$ DECLARE n bigint; BEGIN"]
    for table, rows in sorted(expected.items()):
        q = _quote(table)
        lines.append(f"  SELECT count(*) INTO n FROM {q}; IF n <> {int(rows)} THEN RAISE "
                     f"EXCEPTION 'row count check: {table} has % rows, the backup recorded "
                     f"{int(rows)}', n; END IF;")
    lines.append("END $neurohub$;")
    return "\n".join(lines)


def pg_restore_into(url: str, path: str, *, replace: bool = False,
                    expected: dict[str, int] | None = None, then: str | None = None) -> None:
    """pg_restore -f - | psql --single-transaction (dropping public first when ``replace``;
    ``then``: SQL run last in that transaction)."""
    dbname = pg_params(url)["dbname"]
    restore_argv = ["pg_restore", "--no-owner", "--no-privileges", "--file=-", path]
    psql_argv, env = pg_tool(url, "psql", "-X", "--quiet", "--single-transaction",
                             "--set", "ON_ERROR_STOP=1", "--dbname", dbname)
    if replace:
        psql_argv += ["-c", "DROP SCHEMA IF EXISTS public CASCADE", "-c", "CREATE SCHEMA public"]
    psql_argv += ["-f", "-"]
    if expected:
        psql_argv += ["-c", count_check_sql(expected)]
    if then:
        psql_argv += ["-c", then]
    tmp = os.path.dirname(path)
    with open(os.path.join(tmp, "pg_restore.err"), "wb") as e1, \
            open(os.path.join(tmp, "psql.err"), "wb") as e2:
        producer = subprocess.Popen(restore_argv, stdout=subprocess.PIPE, stderr=e1)
        consumer = subprocess.Popen(psql_argv, stdin=producer.stdout, stdout=subprocess.DEVNULL,
                                    stderr=e2, env=env)
        producer.stdout.close()  # psql owns the read end now
        rc_psql, rc_restore = consumer.wait(), producer.wait()
    err = ""
    for name in ("psql.err", "pg_restore.err"):
        with open(os.path.join(tmp, name), "rb") as fh:
            err += fh.read().decode("utf-8", "replace").strip()[-1500:]
    if rc_psql != 0 or rc_restore != 0:
        raise RestoreFailed(f"restore rolled back (pg_restore {rc_restore}, psql {rc_psql}): "
                            f"{err}")


def _createdb(admin_url: str, name: str) -> None:
    maint = pg_params(admin_url)["dbname"]
    argv, env = pg_tool(admin_url, "createdb", "--maintenance-db", maint, dbname=name)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise BackupError(f"createdb {name} failed: {out.stderr.strip()[-500:]}")


def _dropdb(admin_url: str, name: str) -> None:
    maint = pg_params(admin_url)["dbname"]
    argv, env = pg_tool(admin_url, "dropdb", "--if-exists", "--force", "--maintenance-db",
                        maint, dbname=name)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        log.error("dropdb %s failed: %s", name, out.stderr.strip())


# -- the restore command ------------------------------------------------------------------------

def _sqlite_restore(path: str, target: str, force: bool, expected: dict,
                    manifest: dict | None) -> None:
    counts, _ = count_sqlite(path)
    if counts != expected:
        raise RestoreRefused(f"row counts of the downloaded copy differ from the record: "
                             f"{_mismatches(expected, counts)}")
    if os.path.exists(target):
        conn = sqlite3.connect(target)
        try:
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite_%'").fetchone()[0]
        finally:
            conn.close()
        if tables and not force:
            raise RestoreRefused(f"the target {target} holds {tables} tables; refusing to "
                                 "overwrite it without --force")
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    staged = target + ".restoring"
    shutil.copyfile(path, staged)
    if manifest:
        settle_sqlite(staged, manifest)
    for suffix in ("-wal", "-shm"):  # the old database's journal must not replay onto the new
        try:
            os.unlink(target + suffix)
        except FileNotFoundError:
            pass
    os.replace(staged, target)


def _mismatches(expected: dict, actual: dict) -> dict:
    return {t: {"expected": expected.get(t), "actual": actual.get(t)}
            for t in sorted(set(expected) | set(actual)) if expected.get(t) != actual.get(t)}


def restore(ref: str | int, target_url: str | None = None, *, force: bool = False,
            actor: Actor = SYSTEM, say: Say = log.info,
            progress: Callable[[int, int], object] | None = None,
            storage: StorageAdapter | None = None) -> dict:
    """Restore a backup into ``target_url`` (default: this app's database); returns a report."""
    cfg = current_app.config
    target = target_url or cfg["DATABASE_URL"]
    storage = storage or backup_storage()
    source = resolve(ref, storage)
    say(f"backup: {source.key} ({source.size} bytes, {source.engine}, schema "
        f"{source.schema_revision}, {sum(source.row_counts.values())} rows in "
        f"{len(source.row_counts)} tables)")
    target_engine = "postgresql" if is_postgres_url(target) else "sqlite"
    if target_engine != source.engine:
        raise RestoreRefused(f"a {source.engine} backup cannot be restored into {target_engine}")
    existing = pg_objects(target) if source.engine == "postgresql" else 0
    if existing and not force:  # asked first (a read): no pointless download
        raise RestoreRefused(f"the target {redact(target)} is not empty ({existing} tables, "
                             "views or sequences); refusing to overwrite it without --force")
    tmpdir = private_tempdir("neurohub-restore-")
    started = time.monotonic()
    try:
        path = fetch(source, storage, tmpdir, progress)
        say(f"downloaded and verified: sha256 {source.sha256} matches the record")
        if source.engine == "postgresql":
            state = f"{existing} objects, dropped and replaced (--force)" if existing else "empty"
            say(f"target: {redact(target)} ({state}); restoring in one transaction")
            db.engine.dispose()  # pooled connections must not hold locks on the old schema
            pg_restore_into(target, path, replace=bool(existing), expected=source.row_counts,
                            then=settle_sql(source.manifest) if source.manifest else None)
            counts = pg_counts(target)
        else:
            file = sqlite_path(target)
            say(f"target: {file}")
            db.engine.dispose()
            _sqlite_restore(path, file, force, source.row_counts, source.manifest)
            counts, _ = count_sqlite(file)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    seconds = round(time.monotonic() - started, 2)
    mismatches = _mismatches(source.row_counts, counts)
    if mismatches:  # cannot happen after the in-transaction check; reported if it ever does
        raise RestoreFailed(f"row counts differ after the restore: {mismatches}")
    say(f"restored in {seconds}s; row counts match the backup in all {len(counts)} tables "
        f"({sum(counts.values())} rows)")
    report = {"backup_id": source.backup_id, "key": source.key, "sha256": source.sha256,
              "target": redact(target), "forced": force, "seconds": seconds,
              "tables": len(counts), "rows": sum(counts.values()),
              "schema_revision": source.schema_revision}
    try:
        record(actor, "backup.restored", "backup", source.backup_id or source.key, after=report)
        db.session.commit()
    except Exception as exc:  # e.g. restored elsewhere while this app's database is down
        db.session.rollback()
        say(f"note: could not write the audit event to this app's database: {exc}")
    return report


# -- the restore drill --------------------------------------------------------------------------

def drill(backup_id: int, storage: StorageAdapter | None = None) -> Backup:
    """Restore a backup into a scratch database, compare row counts, drop it, record the result."""
    b = get_backup(backup_id)
    storage = storage or backup_storage()
    tmpdir = private_tempdir("neurohub-drill-")
    started = time.monotonic()
    detail: dict = {"key": b.storage_key}
    try:
        source = Source(b.storage_key, b.sha256, b.size, b.engine, dict(b.row_counts or {}),
                        b.schema_revision, b.id)
        path = fetch(source, storage, tmpdir)
        if b.engine == "postgresql":
            admin = current_app.config.get("RESTORE_DRILL_URL") or current_app.config[
                "DATABASE_URL"]
            scratch = f"nh_drill_{b.id}_{secrets.token_hex(4)}"
            detail["scratch_database"] = scratch
            _createdb(admin, scratch)
            try:
                url = make_url(admin).set(database=scratch).render_as_string(hide_password=False)
                pg_restore_into(url, path)
                counts = pg_counts(url)
            finally:
                _dropdb(admin, scratch)
        else:
            counts, _ = count_sqlite(path)
        mismatches = _mismatches(source.row_counts, counts)
        detail.update(tables=len(counts), rows=sum(counts.values()), mismatches=mismatches)
        result = "failed" if mismatches else "passed"
    except (RestoreRefused, RestoreFailed, BackupError, StorageError, OSError,
            subprocess.SubprocessError) as exc:
        result, detail["error"] = "failed", str(exc)[:2000]
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    detail["seconds"] = round(time.monotonic() - started, 2)
    b = get_backup(backup_id)
    b.drill_at, b.drill_result, b.drill_detail = utcnow(), result, detail
    if result == "passed":
        b.verified_at = b.drill_at
    record(SYSTEM, f"backup.drill_{result}", "backup", b.id,
           after={k: v for k, v in detail.items() if k != "mismatches"} | {
               "mismatches": len(detail.get("mismatches") or {})})
    db.session.commit()
    return b


def scheduled_drill(slot: str | datetime | None) -> dict:
    """The weekly drill: the newest stored backup, once per slot."""

    def body(when: datetime) -> dict:
        b = newest_done()
        if b is None:
            return {"skipped": "no backup to drill"}
        b = drill(b.id)
        return {"backup_id": b.id, "result": b.drill_result,
                "seconds": (b.drill_detail or {}).get("seconds")}

    return periodic.run_once(DRILL_TASK, slot, body)


__all__ = ["RestoreRefused", "RestoreFailed", "Source", "resolve", "fetch", "restore", "drill",
           "scheduled_drill", "pg_restore_into", "pg_objects", "pg_counts", "count_check_sql"]
