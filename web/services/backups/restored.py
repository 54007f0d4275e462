"""What a restored database must not inherit from the run that dumped it.

A dump is taken while its own ``backups`` row is ``running`` (its storage key already set) and, for
a backup requested over the API, while its ``backups.snapshot`` outbox message is pending. Left
as they are, the restored database's next snapshot would take that row for an interrupted run of
its own and delete the object and manifest: the very backup just restored, which the source
database still lists as done. So the restore settles the catalog it writes, in the same
transaction: the restored backup's row becomes ``done`` with what its manifest records (its
message then finds it done and repeats nothing), and any other ``running`` or ``queued`` row
becomes ``failed`` without touching storage: those objects belong to the database that wrote them.
"""
from __future__ import annotations

import json

from sqlalchemy import create_engine, update
from sqlalchemy.pool import NullPool

from ...models import Backup, utcnow

NOT_OURS = ("not taken by this database: it was restored from a backup taken while this run "
            "was in progress elsewhere; any stored object belongs to the database that wrote it")
_FIELDS = ("size", "sha256", "server_version", "schema_revision", "dump_tool", "row_counts",
           "finished_at")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"  # standard_conforming_strings (the default)


def settle_sql(manifest: dict) -> str:
    """SQL run at the end of a PostgreSQL restore's transaction (the restore script empties
    search_path, hence ``public.``)."""
    doc = _literal(json.dumps({k: manifest.get(k) for k in (*_FIELDS, "key")}))
    backup_id = int(manifest["backup_id"]) if manifest.get("backup_id") is not None else -1
    return "\n".join([
        "UPDATE public.backups AS b SET state = 'done', error = NULL,",
        "  size = (m.d->>'size')::bigint, sha256 = m.d->>'sha256',",
        "  server_version = m.d->>'server_version', schema_revision = m.d->>'schema_revision',",
        "  dump_tool = m.d->>'dump_tool', row_counts = m.d->'row_counts',",
        "  finished_at = COALESCE((m.d->>'finished_at')::timestamptz, now()), verified_at = now()",
        f"FROM (SELECT {doc}::jsonb AS d) AS m",
        f"WHERE b.id = {backup_id} AND b.storage_key = m.d->>'key' AND b.state = 'running';",
        f"UPDATE public.backups SET state = 'failed', finished_at = now(), error = "
        f"{_literal(NOT_OURS)} WHERE state IN ('running', 'queued');"])


def settle_sqlite(path: str, manifest: dict) -> None:
    """The same for a restored SQLite file, before it replaces the target."""
    from datetime import datetime
    t = Backup.__table__
    finished = manifest.get("finished_at")
    values = {k: manifest.get(k) for k in _FIELDS}
    values["finished_at"] = datetime.fromisoformat(finished) if finished else utcnow()
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if manifest.get("backup_id") is not None:
                conn.execute(update(t).where(
                    t.c.id == int(manifest["backup_id"]), t.c.storage_key == manifest["key"],
                    t.c.state == "running").values(state="done", error=None,
                                                   verified_at=utcnow(), **values))
            conn.execute(update(t).where(t.c.state.in_(("running", "queued"))).values(
                state="failed", finished_at=utcnow(), error=NOT_OURS))
    finally:
        engine.dispose()


__all__ = ["NOT_OURS", "settle_sql", "settle_sqlite"]
