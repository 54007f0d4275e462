"""A restored database never deletes the backup it came from (web/services/backups/restored.py)."""
from __future__ import annotations

from sqlalchemy import select, update

from storage import LocalStorage
from tests.storage.conftest import aws_env, s3_bucket, s3_client, s3_endpoint  # noqa: F401
from web.models import Backup
from web.services import backups
from web.services.backups import restore
from web.services.audit import Actor

ADMIN = Actor(None, "test:admin")


def test_a_running_row_whose_object_has_its_manifest_is_done_not_deleted(app, db, tmp_path,
                                                                          monkeypatch):
    """A database restored by hand (pg_restore of the dump) still shows that backup running."""
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    store = LocalStorage(tmp_path / "backups")
    b = backups.snapshot_now(ADMIN, storage=store)
    assert b.state == "done", b.error
    done = {k: getattr(b, k) for k in ("size", "sha256", "row_counts", "schema_revision")}
    db.session.execute(update(Backup).where(Backup.id == b.id).values(
        state="running", size=None, sha256=None, row_counts=None, finished_at=None))
    db.session.commit()
    nxt = backups.snapshot_now(ADMIN, storage=store)
    assert nxt.state == "done", nxt.error
    db.session.expire_all()
    again = db.session.get(Backup, b.id)
    assert again.state == "done" and again.error is None
    assert {k: getattr(again, k) for k in done} == done
    assert store.exists(b.storage_key) and store.exists(b.storage_key + ".json")
    assert backups.hash_stored(store, b.storage_key) == (b.size, b.sha256)


def test_sqlite_restore_then_backup_keeps_the_restored_backup(tmp_path, redis_url):
    """The embedded default: restore into a new file, back that database up, same store."""
    from flask_migrate import upgrade

    from tests.conftest import TEST_CONFIG
    from web import create_app
    from web.extensions import db as _db
    from web.services import users
    shared = {"BACKUP_DIR": str(tmp_path / "store"), **TEST_CONFIG}
    source = create_app(dict(shared, NEUROHUB_DATA_DIR=str(tmp_path / "source")))
    with source.app_context():
        upgrade()
        users.create_user("sqlite-admin", "correct-horse-battery", "admin", ADMIN)
        b = backups.request_backup(ADMIN)
        assert backups.run_requested(b.id) == "done"
        b = backups.get_backup(b.id)
        bid, key, sha, size = b.id, b.storage_key, b.sha256, b.size
        target = tmp_path / "restored" / "neurohub.sqlite3"
        restore.restore(b.id, f"sqlite:///{target}")
        _db.session.remove()
        _db.engine.dispose()
    copy = create_app(dict(shared, NEUROHUB_DATA_DIR=str(tmp_path / "restored")))
    with copy.app_context():
        assert _db.session.get(Backup, bid).state == "done"
        assert backups.run_requested(bid) == "done"  # the restored message: no repeat
        nxt = backups.snapshot_now(ADMIN)
        assert nxt.state == "done", nxt.error
        assert len(_db.session.scalars(select(Backup)).all()) == 2
        _db.session.remove()
        _db.engine.dispose()
    store = LocalStorage(tmp_path / "store")
    assert store.exists(key) and store.exists(key + ".json")
    with source.app_context():
        assert backups.hash_stored(store, key) == (size, sha)
        report = restore.restore(bid, f"sqlite:///{tmp_path / 'again.sqlite3'}")
        assert report["sha256"] == sha
        _db.session.remove()
        _db.engine.dispose()


def test_on_s3_a_backup_of_the_restored_database_keeps_the_original(
        app, db, factory, pg_database, redis_url, s3_endpoint, s3_bucket, tmp_path,  # noqa: F811
        monkeypatch):
    """PostgreSQL + S3 shared by the source and the restored database."""
    from storage import get_storage
    from tests.conftest import TEST_CONFIG
    from tests.support.backupdata import populate, scratch_database
    from web import create_app
    from web.extensions import db as _db
    s3 = dict(USE_S3=True, S3_BUCKET=s3_bucket, AWS_REGION="us-east-1",
              AWS_ENDPOINT_URL=s3_endpoint, BACKUP_TMP_DIR=str(tmp_path / "tmp"))
    for k, v in s3.items():
        monkeypatch.setitem(app.config, k, v)
    store = get_storage("backups", app.config)
    populate(app, factory)
    b = backups.request_backup(ADMIN)
    assert backups.run_requested(b.id) == "done"
    b = backups.get_backup(b.id)
    bid, key, sha, size = b.id, b.storage_key, b.sha256, b.size
    with scratch_database("nh_restored_s3") as target:
        restore.restore(bid, target, storage=store)
        copy = create_app(dict(TEST_CONFIG, DATABASE_URL=target, REDIS_URL=redis_url, **s3))
        with copy.app_context():
            assert backups.run_requested(bid) == "done"
            nxt = backups.snapshot_now(ADMIN)
            assert nxt.state == "done", nxt.error
            _db.session.remove()
            _db.engine.dispose()
    with app.app_context():
        assert store.exists(key) and store.exists(key + ".json")
        assert backups.hash_stored(store, key) == (size, sha)
        with scratch_database("nh_restored_s3_again") as again:
            assert restore.restore(bid, again, storage=store)["sha256"] == sha
