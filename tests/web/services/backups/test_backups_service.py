"""Snapshots on the real PostgreSQL: counts from the dumped snapshot, restore, drill, faults."""
from __future__ import annotations

import io
import json
import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text

from storage import LocalStorage, StorageError
from tests.support.backupdata import counts, databases, populate, rows, scratch_database
from web.models import AuditEvent, Backup, PeriodicRun
from web.services.backups import verify as backup_verify, restore
from web.services import backups, periodic
from web.services.audit import Actor

ADMIN = Actor(None, "test:admin")


@pytest.fixture()
def store(app, db, tmp_path, monkeypatch):
    """Backups go to a storage dir of this test; temp files to a dir we can inspect."""
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setitem(app.config, "BACKUP_TMP_DIR", str(tmp_path / "tmp"))
    return LocalStorage(tmp_path / "backups")


def stored_keys(store) -> list[str]:
    return [o.key for o in store.list("")]


def tamper(store: LocalStorage, key: str, offset: int = 200) -> None:
    path = os.path.join(store.base_dir, *key.split("/"))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_snapshot_records_counts_of_the_dumped_snapshot_and_verifies(app, db, factory, store,
                                                                       pg_database):
    made = populate(app, factory)
    before = counts(pg_database)
    b = backups.snapshot_now(ADMIN, storage=store)
    assert b.state == "done", b.error
    assert b.engine == "postgresql" and b.kind == "manual" and b.slot is None
    assert b.storage_key.startswith(f"db/{b.started_at:%Y/%m/%d}/neurohub-")
    assert b.storage_key.endswith(f"-{b.id}.dump")
    head = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert b.server_version.startswith("15") and b.schema_revision == head
    assert b.dump_tool.startswith("pg_dump (PostgreSQL)")
    # counted inside the snapshot: the backup row itself was there, still "running"
    assert b.row_counts["completions"] == len(made["completions"]) == before["completions"]
    assert b.row_counts["lots"] == before["lots"] and b.row_counts["backups"] == 1
    assert set(b.row_counts) == set(before)
    info = store.stat(b.storage_key)
    assert info.size == b.size and b.verified_at is not None
    assert backups.hash_stored(store, b.storage_key) == (b.size, b.sha256)
    manifest = json.loads(store.open(b.storage_key + ".json").read())
    assert manifest["sha256"] == b.sha256 and manifest["row_counts"] == b.row_counts
    assert os.listdir(app.config["BACKUP_TMP_DIR"]) == []  # temp files cleaned up
    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity_type == "backup")).all()
    assert "backup.done" in actions


def test_snapshot_restores_into_a_fresh_database_with_identical_rows(app, db, factory, store,
                                                                      pg_database):
    populate(app, factory, lots=3, per_lot=4)
    b = backups.snapshot_now(ADMIN, storage=store)
    assert b.state == "done", b.error
    with scratch_database("nh_restore") as target:
        report = restore.restore(b.id, target, storage=store)
        restored = counts(target)
        assert restored == b.row_counts
        assert report["rows"] == sum(b.row_counts.values()) and report["forced"] is False
        for table in ("completions", "lots", "lot_units", "products", "routing_steps", "users"):
            assert rows(target, table) == rows(pg_database, table), table
            assert rows(target, table), f"{table} sample is empty"
        # audit rows written after the snapshot (backup.done) are, rightly, not in it
        older = "entity_type <> 'backup'"
        assert rows(target, "audit_events", 200, older) == rows(pg_database, "audit_events",
                                                                  200, older)


def test_drill_passes_and_leaves_no_scratch_database(app, db, factory, store):
    populate(app, factory)
    b = backups.snapshot_now(ADMIN, storage=store)
    drilled = restore.drill(b.id, storage=store)
    assert drilled.drill_result == "passed", drilled.drill_detail
    assert drilled.drill_detail["mismatches"] == {}
    assert drilled.drill_detail["rows"] == sum(b.row_counts.values())
    scratch = drilled.drill_detail["scratch_database"]
    assert scratch.startswith(f"nh_drill_{b.id}_") and databases(scratch) == []  # dropped
    assert backups.last_drill().id == b.id


def test_tampered_backup_fails_verify_the_drill_and_the_restore(app, db, factory, store):
    populate(app, factory)
    b = backups.snapshot_now(ADMIN, storage=store)
    assert backup_verify.verify(b.id, storage=store).verify_error is None
    tamper(store, b.storage_key)
    v = backup_verify.verify(b.id, storage=store)
    assert "sha256 mismatch" in v.verify_error and v.verified_at is None
    d = restore.drill(b.id, storage=store)
    assert d.drill_result == "failed" and "sha256 mismatch" in d.drill_detail["error"]
    assert "scratch_database" not in d.drill_detail  # refused before any database was created
    with scratch_database("nh_tamper") as target:
        with pytest.raises(restore.RestoreRefused, match="sha256 mismatch"):
            restore.restore(b.id, target, storage=store)
        assert counts(target) == {}  # never touched


def test_restore_refuses_a_non_empty_target_unless_forced(app, db, factory, store, pg_database):
    populate(app, factory)
    b = backups.snapshot_now(ADMIN, storage=store)
    with scratch_database("nh_force") as target:
        import psycopg
        with psycopg.connect(target.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE TABLE precious (id int)")
            conn.execute("INSERT INTO precious VALUES (1)")
        with pytest.raises(restore.RestoreRefused, match="not empty"):
            restore.restore(b.id, target, storage=store)
        assert counts(target) == {"precious": 1}
        report = restore.restore(b.id, target, force=True, storage=store)
        assert report["forced"] is True
        assert counts(target) == b.row_counts  # replaced: the foreign table is gone


def test_restore_from_storage_key_when_the_catalog_is_lost(app, db, factory, store):
    populate(app, factory)
    b = backups.snapshot_now(ADMIN, storage=store)
    key, expected = b.storage_key, dict(b.row_counts)
    db.session.delete(b)
    db.session.commit()
    with pytest.raises(restore.RestoreRefused, match="no backup"):
        restore.resolve(str(b.id), store)
    with scratch_database("nh_bykey") as target:
        restore.restore(key, target, storage=store)
        assert counts(target) == expected
    store.delete(key + ".json")
    with pytest.raises(restore.RestoreRefused, match="no manifest"):
        restore.resolve(key, store)


def test_unreachable_database_fails_cleanly_and_the_next_run_works(app, db, store):
    b = backups.snapshot_now(ADMIN, storage=store,
                             source_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert b.state == "failed" and "cannot connect" in b.error and b.finished_at
    assert stored_keys(store) == []
    assert os.listdir(app.config["BACKUP_TMP_DIR"]) == []
    again = backups.snapshot_now(ADMIN, storage=store)
    assert again.state == "done" and stored_keys(store) == [again.storage_key,
                                                            again.storage_key + ".json"]


class FailingStorage(LocalStorage):
    """Local storage whose writes fail for keys matching ``when`` after a part was written."""

    def __init__(self, base, when):
        super().__init__(base)
        self.when = when

    def put(self, key, fileobj):
        if self.when(key):
            fileobj.read(1000)
            raise StorageError(f"injected: upload of {key} broke off")
        return super().put(key, fileobj)


@pytest.mark.parametrize("which", ["dump", "manifest"])
def test_storage_failure_leaves_no_object_and_the_next_run_works(app, db, store, tmp_path, which):
    failing = FailingStorage(store.base_dir, (lambda k: k.endswith(".dump")) if which == "dump"
                             else (lambda k: k.endswith(".json")))
    b = backups.snapshot_now(ADMIN, storage=failing)
    assert b.state == "failed" and "injected" in b.error
    assert stored_keys(store) == []  # the dump that did upload was removed with its manifest
    assert backups.snapshot_now(ADMIN, storage=store).state == "done"


def test_an_interrupted_backup_is_failed_and_its_object_removed_by_the_next_run(app, db, store):
    orphan = Backup(kind="manual", state="running", storage_key="db/2026/01/01/orphan.dump",
                    started_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    db.session.add(orphan)
    db.session.commit()
    store.put(orphan.storage_key, io.BytesIO(b"half a dump"))
    b = backups.snapshot_now(ADMIN, storage=store)
    assert b.state == "done"
    db.session.refresh(orphan)
    assert orphan.state == "failed" and orphan.error.startswith("interrupted")
    assert not store.exists("db/2026/01/01/orphan.dump")


def test_scheduled_snapshot_runs_once_per_slot(app, db, store):
    slot = "2026-03-01T02:00:00+00:00"
    first = backups.scheduled_snapshot(slot)
    assert first["state"] == "done"
    again = backups.scheduled_snapshot(slot)
    assert again["skipped"] == "slot already ran"
    run = db.session.get(PeriodicRun, "backups.snapshot")
    assert run.skipped == 1 and run.runs == 1 and run.state == "done"
    assert db.session.scalar(select(func.count()).select_from(Backup)) == 1
    b = db.session.scalar(select(Backup))
    assert b.kind == "scheduled" and b.slot == datetime(2026, 3, 1, 2, tzinfo=timezone.utc)


def test_scheduled_snapshot_skips_while_another_holds_the_lock(app, db, store):
    with periodic.single_run(backups.SNAPSHOT_LOCK) as got:
        assert got
        result = backups.scheduled_snapshot("2026-03-02T02:00:00+00:00")
    assert result["skipped"] == "locked"
    assert db.session.scalar(select(func.count()).select_from(Backup)) == 0


def test_the_unique_slot_holds_even_when_the_run_record_was_lost(app, db, store):
    slot = datetime(2026, 3, 3, 2, tzinfo=timezone.utc)
    db.session.add(Backup(kind="scheduled", slot=slot, state="done"))
    db.session.commit()
    result = backups.scheduled_snapshot(slot.isoformat())  # periodic_runs knows nothing of it
    assert result["skipped"] == "the slot has its backup"
    assert db.session.scalar(select(func.count()).select_from(Backup)) == 1


def test_requested_backup_runs_through_its_outbox_message(app, db, store):
    from web.models import OutboxMessage
    b = backups.request_backup(ADMIN)
    msg = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key ==
                                                        backups.outbox_key(b.id)))
    assert b.state == "queued" and msg.task == "backups.snapshot" and msg.queue == "io"
    assert msg.args == [b.id]
    assert backups.run_requested(b.id) == "done"
    assert backups.run_requested(b.id) == "done"  # a redelivery changes nothing
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert len([k for k in stored_keys(store) if k.endswith(".dump")]) == 1


def test_requested_backup_waits_while_a_snapshot_runs(app, db, store):
    from web.models import OutboxMessage
    b = backups.request_backup(ADMIN)
    with periodic.single_run(backups.SNAPSHOT_LOCK):
        assert backups.run_requested(b.id) == "busy"
    msg = db.session.scalar(select(OutboxMessage))
    assert msg.available_at > msg.created_at and msg.dispatched_at is None
    assert db.session.get(Backup, b.id).state == "queued"


def test_pg_dump_gets_the_password_from_the_environment_only():
    argv, env = backups.pg_tool("postgresql+psycopg://neuro:s3cr%40t@db.example:6543/mes"
                                "?sslmode=require", "pg_dump", "--format=custom", dbname="mes")
    assert "s3cr@t" not in " ".join(argv) and env["PGPASSWORD"] == "s3cr@t"
    assert argv[argv.index("--host") + 1] == "db.example" and "--no-password" in argv
    assert argv[argv.index("--port") + 1] == "6543" and env["PGSSLMODE"] == "require"


def test_sqlite_snapshot_drill_and_restore(tmp_path, redis_url):
    """The embedded default: the online backup API, counts of the copy, restore of the file."""
    from flask_migrate import upgrade

    from tests.conftest import TEST_CONFIG
    from web import create_app
    from web.extensions import db as _db
    from web.services import users
    data = tmp_path / "var"
    app2 = create_app(dict(TEST_CONFIG, NEUROHUB_DATA_DIR=str(data)))
    assert app2.config["EMBEDDED"]
    with app2.app_context():
        upgrade()
        users.create_user("sqlite-admin", "correct-horse-battery", "admin", ADMIN)
        b = backups.snapshot_now(ADMIN)
        assert b.state == "done", b.error
        assert b.engine == "sqlite" and b.storage_key.endswith(".sqlite3")
        assert b.row_counts["users"] == 1 and b.row_counts["backups"] == 1
        assert (data / "backups" / b.storage_key).exists()
        assert restore.drill(b.id).drill_result == "passed"
        target = tmp_path / "restored.sqlite3"
        report = restore.restore(b.id, f"sqlite:///{target}")
        assert report["rows"] == sum(b.row_counts.values())
        with pytest.raises(restore.RestoreRefused, match="without --force"):
            restore.restore(b.id, f"sqlite:///{target}")
        tamper(backups.backup_storage(), b.storage_key, offset=5000)
        assert restore.drill(b.id).drill_result == "failed"
        _db.session.remove()
        _db.engine.dispose()
