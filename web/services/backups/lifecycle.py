"""Storage lifecycle (daily): backups expire, firmware never does.

S3: versioning on, then the bucket's lifecycle configuration read, modified and written back —
``put_bucket_lifecycle_configuration`` replaces the WHOLE configuration, so every rule this product
does not own (ids without our prefix) is kept as it was. Ours:

* ``neurohub-backups``: objects under ``backups/`` expire after ``BACKUP_RETENTION_DAYS``, their
  noncurrent versions after ``NONCURRENT_VERSION_DAYS``, unfinished multipart uploads are aborted;
* ``neurohub-housekeeping``: expired delete markers are removed and unfinished multipart uploads
  aborted bucket-wide (neither ever removes data).

No rule of ours ever expires ``firmware/``: released firmware may be in production for years (the
seed document's 90-day expiry on the firmware bucket would delete it — deliberately not copied).

Local disk: backups older than the retention are deleted, always keeping the newest
``BACKUP_KEEP_MIN``; only ``db/`` inside ``BACKUP_DIR`` is ever looked at. Backup rows whose object
is gone are marked expired (restore and verify then say so instead of failing on a missing key).
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any, Mapping

from flask import current_app
from sqlalchemy import select

from storage import LocalStorage, ObjectNotFound, S3Storage, StorageAdapter

from ...extensions import db
from ...models import Backup, utcnow
from .. import periodic
from ..audit import Actor, record
from . import backup_storage, manifest_key
from ..storage_sync import area_storage

log = logging.getLogger(__name__)
LIFECYCLE_TASK = "storage.apply_lifecycle"
RULE_PREFIX = "neurohub-"
BACKUPS_PREFIX = "backups/"
PROTECTED_PREFIXES = ("firmware/",)
LIFECYCLE = Actor(None, "system:lifecycle")
DUMP_SUFFIXES = (".dump", ".sqlite3")


class LifecycleError(RuntimeError):
    """The configuration would break a rule of ours (e.g. touch firmware)."""


def our_rules(retention_days: int, noncurrent_days: int) -> list[dict]:
    """The lifecycle rules this product owns."""
    return [
        {"ID": f"{RULE_PREFIX}backups", "Status": "Enabled",
         "Filter": {"Prefix": BACKUPS_PREFIX},
         "Expiration": {"Days": int(retention_days)},
         "NoncurrentVersionExpiration": {"NoncurrentDays": int(noncurrent_days)},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        {"ID": f"{RULE_PREFIX}housekeeping", "Status": "Enabled",
         "Filter": {"Prefix": ""},
         "Expiration": {"ExpiredObjectDeleteMarker": True},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]


def _prefix(rule: dict) -> str:
    f = rule.get("Filter") or {}
    if "Prefix" in f:
        return f["Prefix"]
    if "And" in f:
        return f["And"].get("Prefix", "")
    return rule.get("Prefix", "")


def check_rules(rules: list[dict]) -> None:
    """Refuse any rule of ours that could delete data under a protected prefix."""
    for rule in rules:
        if not rule.get("ID", "").startswith(RULE_PREFIX):
            continue
        prefix = _prefix(rule)
        deletes = ("Days" in rule.get("Expiration", {}) or "Date" in rule.get("Expiration", {})
                   or "NoncurrentVersionExpiration" in rule or "Transitions" in rule)
        covers = any(p.startswith(prefix) for p in PROTECTED_PREFIXES)
        if deletes and covers:
            raise LifecycleError(f"rule {rule['ID']} would expire data under {prefix!r}, which "
                                 f"covers {PROTECTED_PREFIXES}")


def merge_rules(current: list[dict], ours: list[dict]) -> list[dict]:
    """Foreign rules as they are, then ours (replacing any previous version of ours)."""
    foreign = [r for r in current if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
    return foreign + ours


def apply_s3(storage: S3Storage, retention_days: int, noncurrent_days: int) -> dict:
    """Versioning on, our rules merged into the bucket's configuration (read-modify-write)."""
    storage.enable_versioning()
    current = storage.get_lifecycle_rules()
    rules = merge_rules(current, our_rules(retention_days, noncurrent_days))
    check_rules(rules)
    storage.put_lifecycle_rules(rules)
    foreign = [r.get("ID") for r in rules if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
    return {"backend": "s3", "bucket": storage.bucket, "versioning": "Enabled",
            "rules": [r["ID"] for r in rules], "foreign_rules_kept": foreign}


def _dumps(storage: StorageAdapter) -> list:
    return [o for o in storage.list("db/") if o.key.endswith(DUMP_SUFFIXES)]


def apply_local(storage: StorageAdapter, retention_days: int, keep_min: int,
                now: datetime | None = None) -> dict:
    """Delete backups older than the retention, always keeping the newest ``keep_min``."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    dumps = sorted(_dumps(storage), key=lambda o: (o.modified, o.key), reverse=True)
    deleted = []
    for obj in dumps[max(keep_min, 0):]:
        if obj.modified is not None and obj.modified < cutoff:
            storage.delete(manifest_key(obj.key))  # manifest first: never "complete" half-gone
            storage.delete(obj.key)
            deleted.append(obj.key)
    return {"backend": "local", "deleted": deleted, "kept": len(dumps) - len(deleted),
            "retention_days": retention_days, "keep_min": keep_min}


def mark_expired(storage: StorageAdapter) -> list[int]:
    """Done backups whose object is gone are marked expired (audited)."""
    expired = []
    for b in db.session.scalars(select(Backup).where(Backup.state == "done",
                                                     Backup.expired_at.is_(None))):
        try:
            storage.stat(b.storage_key)
            continue
        except ObjectNotFound:
            pass
        b.expired_at = utcnow()
        record(LIFECYCLE, "backup.expired", "backup", b.id, after={"key": b.storage_key})
        expired.append(b.id)
    db.session.commit()
    return expired


def apply_lifecycle(config: Mapping[str, Any] | None = None,
                    storage: StorageAdapter | None = None) -> dict:
    """One lifecycle pass over the backups area of this configuration."""
    cfg = config or current_app.config
    storage = storage or backup_storage()
    retention = int(cfg["BACKUP_RETENTION_DAYS"])
    if isinstance(storage, S3Storage):
        result = apply_s3(storage, retention, int(cfg["NONCURRENT_VERSION_DAYS"]))
    else:
        if isinstance(storage, LocalStorage) and cfg.get("FIRMWARE_DIR"):
            ours = os.path.realpath(os.path.join(storage.base_dir, "db"))
            firmware = os.path.realpath(cfg["FIRMWARE_DIR"])
            if firmware == ours or firmware.startswith(ours + os.sep):
                raise LifecycleError(f"FIRMWARE_DIR {firmware} lies inside the backups' db/ "
                                     "folder; refusing to apply the backup retention there")
        result = apply_local(storage, retention, int(cfg["BACKUP_KEEP_MIN"]))
    result["expired_backups"] = mark_expired(storage)
    result["temp_swept"] = sweep_temp_files(storage)
    return result


TEMP_MAX_AGE = 24 * 3600.0  # an upload or dump still writing after a day is a dead one


def sweep_temp_files(backups: StorageAdapter | None = None) -> dict[str, list[str]]:
    """Remove what crashed writes left in the firmware and backups stores (logged)."""
    swept = {}
    for area, store in (("firmware", area_storage("firmware")),
                        ("backups", backups or backup_storage())):
        swept[area] = store.sweep_temp(TEMP_MAX_AGE)
        if swept[area]:
            log.warning("removed %d stale temp file(s) from the %s store: %s", len(swept[area]),
                        area, ", ".join(swept[area][:10]))
    return swept


def scheduled_lifecycle(slot: str | datetime | None) -> dict:
    """The daily lifecycle pass, once per slot."""
    return periodic.run_once(LIFECYCLE_TASK, slot, lambda when: apply_lifecycle())


__all__ = ["our_rules", "merge_rules", "check_rules", "apply_s3", "apply_local", "mark_expired",
           "apply_lifecycle", "scheduled_lifecycle", "sweep_temp_files", "LifecycleError",
           "RULE_PREFIX"]
