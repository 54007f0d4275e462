"""Backups (admin): the list with verification and restore-drill results, "back up now",
re-verify, and download (streamed, or a short-lived URL on S3, as the API does)."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from ...api import actor
from ...api.firmware import send_stored
from ...services import backups as svc
from ...services.backups.verify import request_verify
from ...services.storage_sync import area_storage
from ..blueprint import attempt, bp
from ..session import login_required

SHOWN = 50


@bp.get("/backups")
@login_required("admin")
def backups():
    """Backups, newest first, with their verification and restore-drill results."""
    rows, nxt = svc.list_backups(None, None, request.args.get("cursor") or None, SHOWN)
    return render_template("console/backups.html", rows=rows, next_cursor=nxt)


@bp.post("/backups")
@login_required("admin")
def backup_now():
    """Request a snapshot now (the io worker takes it)."""
    b = svc.request_backup(actor())
    flash(("ok", "backups.requested"))
    return redirect(url_for("console.backups", _anchor=f"backup-{b.id}"))


@bp.post("/backups/<int:backup_id>/verify")
@login_required("admin")
def backup_verify(backup_id: int):
    """Re-read and hash a stored backup and check it as an archive (by the io worker)."""
    attempt(lambda: request_verify(backup_id, actor()), "backups.verify_requested")
    return redirect(url_for("console.backups"))


@bp.get("/backups/<int:backup_id>/download")
@login_required("admin")
def backup_download(backup_id: int):
    """The stored snapshot file."""
    b = svc.get_backup(backup_id)
    if b.state != "done" or not b.storage_key or b.expired_at is not None:
        abort(404, f"backup {backup_id} has no stored file")
    return send_stored(area_storage("backups"), b.storage_key, b.sha256 or "",
                       b.storage_key.rsplit("/", 1)[-1], b.size or 0)
