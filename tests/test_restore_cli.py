"""`neurohub backup now|list` and `neurohub restore` as an operator runs them (real processes)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import TEST_CONFIG
from tests.support.backupdata import counts, populate, scratch_database
from tests.support.procs import ROOT, service_env

pytestmark = pytest.mark.slow  # real processes for seconds: started first under xdist


@pytest.fixture()
def cli(pg_database, redis_url, tmp_path):
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, LOG_LEVEL="WARNING",
                      BACKUP_DIR=tmp_path / "backups", BACKUP_TMP_DIR=tmp_path / "tmp",
                      NEUROHUB_DATA_DIR=tmp_path / "var", **TEST_CONFIG)

    def run(*args, limit_file_size: int | None = None, env_extra: dict | None = None, **kw):
        def pre():
            if limit_file_size:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))
        return subprocess.run([sys.executable, "-m", "web.cli", *args],
                              env={**env, **(env_extra or {})}, cwd=ROOT,
                              capture_output=True, text=True, timeout=180, preexec_fn=pre, **kw)
    return run


def _backup_id(out: str) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("backup ") and " done: " in ln)
    return line.split()[1]


def test_backup_now_prints_progress_and_the_result_and_list_shows_it(app, db, factory, cli):
    populate(app, factory)
    r = cli("backup", "now")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "dumping: " in r.stderr  # the progress line
    bid = _backup_id(r.stdout)
    assert "sha256 " in r.stdout and "counted in the dumped snapshot" in r.stdout
    listed = cli("backup", "list")
    assert listed.returncode == 0
    row = next(ln for ln in listed.stdout.splitlines() if ln.split()[0] == bid)
    assert " done " in row and " yes " in row and "db/" in row
    from_storage = cli("backup", "list", "--storage")
    assert f"id {bid}" in from_storage.stdout


def test_restore_refuses_a_non_empty_target_without_force(app, db, factory, cli):
    populate(app, factory)
    bid = _backup_id(cli("backup", "now").stdout)
    with scratch_database("nh_cli") as target:
        with psycopg.connect(target.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE TABLE keep_me (id int)")
        r = cli("restore", bid, "--target-url", target)
        assert r.returncode != 0
        assert "refused" in r.stderr and "not empty" in r.stderr and "--force" in r.stderr
        assert counts(target) == {"keep_me": 0}
        forced = cli("restore", bid, "--target-url", target, "--force")
        assert forced.returncode == 0, forced.stderr
        assert "sha256" in forced.stdout and "row counts match" in forced.stdout
        assert "keep_me" not in counts(target) and counts(target)["completions"] > 0


def test_restore_of_a_corrupted_backup_refuses_before_touching_the_database(app, db, factory,
                                                                            cli, tmp_path):
    populate(app, factory)
    r = cli("backup", "now")
    bid = _backup_id(r.stdout)
    key = next(ln for ln in r.stdout.splitlines() if " done: " in ln).split(" done: ")[1]
    path = tmp_path / "backups" / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with scratch_database("nh_corrupt") as target:
        out = cli("restore", bid, "--target-url", target)
        assert out.returncode != 0 and "sha256 mismatch" in out.stderr
        assert "target:" not in out.stdout  # it never got as far as the database
        assert counts(target) == {}


def test_a_full_disk_fails_the_backup_cleanly_and_the_next_run_works(app, db, factory, cli,
                                                                     tmp_path):
    from web.models import Backup
    populate(app, factory)
    r = cli("backup", "now", limit_file_size=20_000)  # the dump cannot grow past 20 kB
    assert r.returncode != 0
    assert "File too large" in r.stderr, r.stderr
    b = db.session.query(Backup).one()
    assert b.state == "failed" and "File too large" in b.error and b.finished_at
    assert list((tmp_path / "backups").rglob("*.*")) == []  # no partial object stored
    assert os.listdir(tmp_path / "tmp") == []  # no temp file left behind
    db.session.rollback()
    again = cli("backup", "now")
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "backups").rglob("*.dump"))) == 1


def test_a_backup_on_the_restored_database_keeps_the_backup_it_was_restored_from(
        app, db, factory, cli, tmp_path, monkeypatch):
    """restore BACKUP --target-url NEW, then DATABASE_URL=NEW backup now, one shared store."""
    from sqlalchemy import select

    from web.models import Backup, OutboxMessage
    from web.services.backups import verify as backup_verify
    from web.services import backups
    from web.services.audit import Actor
    populate(app, factory)
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))  # the CLI's store
    monkeypatch.setitem(app.config, "BACKUP_TMP_DIR", str(tmp_path / "tmp"))
    b = backups.request_backup(Actor(None, "test:admin"))  # over the API: an outbox message
    assert backups.run_requested(b.id) == "done"
    key = b.storage_key
    store = tmp_path / "backups"
    with scratch_database("nh_restored") as target:
        r = cli("restore", str(b.id), "--target-url", target)
        assert r.returncode == 0, r.stderr
        with psycopg.connect(target.replace("+psycopg", ""), autocommit=True) as conn:
            state, sha = conn.execute("SELECT state, sha256 FROM backups WHERE id = %s",
                                      (b.id,)).fetchone()
        assert (state, sha) == ("done", b.sha256)  # the restored catalog knows it is complete
        again = cli("backup", "now", env_extra={"DATABASE_URL": target})
        assert again.returncode == 0, again.stderr
        assert (store / key).exists() and (store / (key + ".json")).exists()
        # the message restored with the dump repeats nothing on the restored database
        on_target = cli("backup", "list", env_extra={"DATABASE_URL": target})
        assert f"{b.id} " in on_target.stdout and len(list(store.rglob("*.dump"))) == 2
    db.session.rollback()
    assert backup_verify.verify(b.id).verify_error is None
    assert db.session.get(Backup, b.id).verified_at is not None
    assert db.session.scalar(select(OutboxMessage).where(
        OutboxMessage.dedup_key == backups.outbox_key(b.id))) is None
    with scratch_database("nh_restored_again") as other:
        r = cli("restore", str(b.id), "--target-url", other)
        assert r.returncode == 0 and "row counts match" in r.stdout, r.stderr
