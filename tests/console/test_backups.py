"""The backups page (admin): the list with verification and drill results, back up now,
re-verify, download of the stored file."""
from __future__ import annotations

import hashlib
import io

from sqlalchemy import select

from web.models import Backup, OutboxMessage, utcnow
from web.services.storage_sync import area_storage

from .conftest import csrf_token


def test_backups_page(app, console, db, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    app.extensions.pop("neurohub.storage", None)  # the adapter for this test's folder
    payload = b"PGDMP fake dump for the console test"
    with app.app_context():
        area_storage("backups").put("db/2026/03/01/snap.dump", io.BytesIO(payload))
    now = utcnow()
    done = Backup(kind="scheduled", state="done", storage_key="db/2026/03/01/snap.dump",
                  size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                  created_at=now, finished_at=now, verified_at=now, drill_at=now,
                  drill_result="passed")
    failed = Backup(kind="manual", state="failed", error="pg_dump: connection refused",
                    created_at=now)
    db.session.add_all([done, failed])
    db.session.commit()
    client = console("admin")
    page = client.get("/console/backups").get_data(as_text=True)
    assert f'id="backup-{done.id}"' in page and "passed" in page
    assert "pg_dump: connection refused" in page
    resp = client.get(f"/console/backups/{done.id}/download")
    assert resp.status_code == 200 and resp.data == payload
    assert client.get(f"/console/backups/{failed.id}/download").status_code == 404
    token = csrf_token(client, "/console/backups")
    assert client.post("/console/backups", data={"csrf_token": token}).status_code == 302
    queued = db.session.scalar(select(Backup).where(Backup.state == "queued"))
    assert queued is not None and queued.requested_by == client.console_user
    assert db.session.scalar(select(OutboxMessage.task).where(
        OutboxMessage.dedup_key.like(f"%{queued.id}%"))) is not None
    assert client.post(f"/console/backups/{done.id}/verify",
                       data={"csrf_token": token}).status_code == 302
    app.extensions.pop("neurohub.storage", None)


def test_only_admins_see_backups(console, db):
    client = console("supervisor")
    assert client.get("/console/backups").status_code == 403
    assert "/console/backups" not in client.get("/console/").get_data(as_text=True)
