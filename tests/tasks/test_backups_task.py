"""backups.snapshot, backups.verify, backups.restore_drill: what the task bodies answer."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from web.models import Backup
from web.services import backups
from web.services.audit import Actor

ADMIN = Actor(None, "test:admin")


@pytest.fixture()
def store(app, db, tmp_path, monkeypatch):
    """Backups to a folder of this test."""
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setitem(app.config, "BACKUP_TMP_DIR", str(tmp_path / "tmp"))
    return tmp_path / "backups"


def test_a_requested_snapshot_is_taken_once_however_often_its_message_comes(app, db, store):
    from tasks.backups import snapshot
    b = backups.request_backup(ADMIN)
    assert snapshot(b.id) == "done"
    assert snapshot(b.id) == "done"  # a redelivery: the backup is there already
    assert snapshot(999999999) == "missing"
    assert db.session.scalar(select(func.count()).select_from(Backup)) == 1
    assert len(list(store.rglob("*.dump"))) == 1


def test_the_scheduled_snapshot_runs_once_per_slot(app, db, store):
    from tasks.backups import snapshot
    slot = "2026-04-01T02:00:00+00:00"
    first = snapshot(slot=slot)
    assert first["state"] == "done" and first["key"].endswith(".dump")
    assert snapshot(slot=slot)["skipped"] == "slot already ran"


def test_a_failed_scheduled_snapshot_is_a_result_the_next_slot_runs_anew(app, db, store,
                                                                           tmp_path, monkeypatch):
    from tasks.backups import snapshot
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be")
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(blocker / "backups"))
    failed = snapshot(slot="2026-04-02T02:00:00+00:00")
    assert failed["state"] == "failed" and failed["error"].startswith("backup ")
    assert len(failed["error"]) <= 500
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(store))
    assert snapshot(slot="2026-04-03T02:00:00+00:00")["state"] == "done"


def test_verify_answers_for_missing_unfinished_and_stored_backups(app, db, store):
    from tasks.backups import verify
    assert verify(999999999) == {"error": "unknown backup 999999999"}
    queued = backups.request_backup(ADMIN)
    assert verify(queued.id) == {"error": f"backup {queued.id} is queued"}
    backups.run_requested(queued.id)
    assert verify(queued.id) == {"verified": True, "error": None}


def test_the_restore_drill_skips_without_a_backup_and_runs_once_per_slot(app, db, store):
    from tasks.backups import restore_drill
    slot = "2026-04-05T04:00:00+00:00"
    assert restore_drill(slot)["skipped"] == "no backup to drill"
    assert restore_drill(slot)["skipped"] == "slot already ran"
