"""Verifying a stored backup: re-read and hash the object, then check it as an archive.

A verification is requested through the outbox (``backups.verify`` on the io queue) and recorded
on the Backup either way: ``verified_at`` when the object still matches its recorded sha256 and
size and passes the archive check, ``verify_error`` (and no longer proven) when it does not.
"""
from __future__ import annotations

import os
import shutil

from storage import StorageAdapter, StorageError

from ...extensions import db
from ...models import Backup, utcnow
from ..audit import Actor, record
from . import QUEUE, SYSTEM, BackupStateError, backup_storage, get_backup, hash_stored
from .dumps import BackupError, check_archive, private_tempdir
from ..outbox import done, enqueue, pending_keys

VERIFY_TASK = "backups.verify"


def verify_key(backup_id: int) -> str:
    """The outbox key of a verify request."""
    return f"backup-verify:{backup_id}"


def request_verify(backup_id: int, actor: Actor) -> Backup:
    """Queue a verification of a done backup (idempotent while one is pending)."""
    b = get_backup(backup_id)
    if b.state != "done" or b.expired_at is not None:
        raise BackupStateError(f"backup {backup_id} is {'expired' if b.expired_at else b.state}; "
                               "only stored, done backups can be verified")
    if not pending_keys([verify_key(backup_id)]):
        enqueue(VERIFY_TASK, [backup_id], QUEUE, verify_key(backup_id))
        record(actor, "backup.verify_requested", "backup", backup_id)
    db.session.commit()
    return b


def verify(backup_id: int, storage: StorageAdapter | None = None) -> Backup:
    """Re-read and hash the stored object, then check it as an archive; recorded either way."""
    b = get_backup(backup_id)
    done([verify_key(backup_id)])
    if b.state != "done" or not b.storage_key:
        db.session.commit()
        raise BackupStateError(f"backup {backup_id} is {b.state}")
    storage = storage or backup_storage()
    tmpdir = private_tempdir("neurohub-verify-")
    try:
        path = os.path.join(tmpdir, "backup")
        size, sha = hash_stored(storage, b.storage_key, copy_to=path)
        if sha != b.sha256 or size != b.size:
            raise BackupError(f"sha256 mismatch: stored object has {size} bytes sha256 {sha}, "
                              f"recorded {b.size} bytes sha256 {b.sha256}")
        check = check_archive(b.engine, path)
    except (BackupError, StorageError, OSError) as exc:
        b.verify_error, b.verified_at = str(exc)[:4000], None  # no longer proven
        record(SYSTEM, "backup.verify_failed", "backup", b.id, after={"error": str(exc)[:500]})
        db.session.commit()
        return b
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    b.verified_at, b.verify_error = utcnow(), None
    record(SYSTEM, "backup.verified", "backup", b.id, after={"sha256": sha, "check": check})
    db.session.commit()
    return b
