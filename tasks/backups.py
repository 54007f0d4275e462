"""backups.snapshot, backups.verify, backups.restore_drill: database backups on the io queue."""
import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from web.extensions import db
from web.services.backups import verify as backup_verify, restore
from web.services import backups

log = logging.getLogger(__name__)


@shared_task(name="backups.snapshot", soft_time_limit=3000, time_limit=3300)
def snapshot(backup_id: int | None = None, slot: str | None = None):
    """A requested backup (by id, from the outbox) or the scheduled one of ``slot`` (beat)."""
    try:
        if backup_id is not None:
            return backups.run_requested(backup_id)
        return backups.scheduled_snapshot(slot)
    except backups.BackupError as exc:  # recorded on the Backup row; the next slot runs anew
        return {"state": "failed", "error": str(exc)[:500]}
    except OperationalError as exc:  # the database is unreachable: nothing can be recorded now
        db.session.rollback()
        log.error("backups.snapshot: database unavailable: %s", exc)
        return {"state": "failed", "error": "database unavailable"}


@shared_task(name="backups.verify", soft_time_limit=1800, time_limit=1900)
def verify(backup_id: int):
    """Re-read, hash and check a stored backup; the outcome is recorded on the Backup."""
    try:
        b = backup_verify.verify(backup_id)
    except (backups.BackupNotFound, backups.BackupStateError) as exc:
        return {"error": str(exc)}
    return {"verified": b.verify_error is None, "error": b.verify_error}


@shared_task(name="backups.restore_drill", soft_time_limit=3000, time_limit=3300)
def restore_drill(slot: str | None = None):
    """Restore the newest backup into a scratch database and compare row counts (weekly)."""
    return restore.scheduled_drill(slot)
