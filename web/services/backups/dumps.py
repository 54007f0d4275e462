"""Dumping a database to a file: pg_dump of an exported snapshot, or SQLite's backup API.

Split from backups.py: the tools (pg_dump, pg_restore, sqlite3) and their plumbing, no catalog.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import current_app
from sqlalchemy.engine import make_url

from storage.base import CHUNK_SIZE


log = logging.getLogger(__name__)

PG_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
          "sslkey": "PGSSLKEY", "options": "PGOPTIONS", "target_session_attrs":
          "PGTARGETSESSIONATTRS", "connect_timeout": "PGCONNECT_TIMEOUT"}
Progress = Callable[[int, float], Any]  # (bytes so far, seconds so far)


class BackupError(RuntimeError):
    """The snapshot, its upload or its check failed; the message says why."""


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

