"""Storage lifecycle: S3 rules on a real moto_server (read back), local retention on disk."""
from __future__ import annotations

import io
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage import LocalStorage, get_storage
from tests.storage.conftest import aws_env, s3_bucket, s3_client, s3_endpoint  # noqa: F401
from web.models import Backup
from web.services import backups
from web.services.backups import lifecycle
from web.services.audit import Actor

FOREIGN = {"ID": "finance-archive-glacier", "Status": "Enabled",
           "Filter": {"Prefix": "finance/"},
           "Transitions": [{"Days": 60, "StorageClass": "GLACIER"}]}


@pytest.fixture()
def s3_config(app, s3_endpoint, s3_bucket):  # noqa: F811
    return dict(app.config, USE_S3=True, S3_BUCKET=s3_bucket, AWS_REGION="us-east-1",
                AWS_ENDPOINT_URL=s3_endpoint, BACKUP_RETENTION_DAYS=14,
                NONCURRENT_VERSION_DAYS=7)


def test_s3_versioning_on_rules_read_back_and_a_foreign_rule_survives(db, s3_config, s3_client):  # noqa: F811
    bucket = s3_config["S3_BUCKET"]
    s3_client.put_bucket_lifecycle_configuration(Bucket=bucket,
                                                 LifecycleConfiguration={"Rules": [FOREIGN]})
    store = get_storage("backups", s3_config)
    result = lifecycle.apply_lifecycle(s3_config, storage=store)
    assert result["foreign_rules_kept"] == ["finance-archive-glacier"]
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = {r["ID"]: r for r in
             s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"finance-archive-glacier", "neurohub-backups", "neurohub-housekeeping"}
    assert rules["finance-archive-glacier"]["Transitions"][0]["StorageClass"] == "GLACIER"
    ours = rules["neurohub-backups"]
    assert ours["Filter"]["Prefix"] == "backups/" and ours["Expiration"]["Days"] == 14
    assert ours["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert ours["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    house = rules["neurohub-housekeeping"]
    assert house["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    # Applying again replaces our rules, never duplicates them, and still keeps the foreign one.
    lifecycle.apply_lifecycle(dict(s3_config, BACKUP_RETENTION_DAYS=21), storage=store)
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(r["ID"] for r in rules) == sorted(
        ["finance-archive-glacier", "neurohub-backups", "neurohub-housekeeping"])
    assert [r for r in rules if r["ID"] == "neurohub-backups"][0]["Expiration"]["Days"] == 21


def test_no_rule_of_ours_can_expire_firmware(db, s3_config, s3_client):  # noqa: F811
    store = get_storage("backups", s3_config)
    lifecycle.apply_lifecycle(s3_config, storage=store)
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=s3_config["S3_BUCKET"])["Rules"]
    for rule in rules:
        prefix = rule.get("Filter", {}).get("Prefix", "")
        deletes_data = ("Days" in rule.get("Expiration", {})
                        or "NoncurrentVersionExpiration" in rule)
        assert not (deletes_data and "firmware/".startswith(prefix)), rule
    bad = lifecycle.our_rules(30, 30)
    bad[0]["Filter"]["Prefix"] = ""
    with pytest.raises(lifecycle.LifecycleError, match="firmware"):
        lifecycle.check_rules(bad)


def test_snapshot_to_s3_lands_under_backups_and_restores(app, db, s3_config, s3_client,  # noqa: F811
                                                         monkeypatch, tmp_path):
    for k in ("USE_S3", "S3_BUCKET", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setitem(app.config, k, s3_config[k])
    monkeypatch.setitem(app.config, "BACKUP_TMP_DIR", str(tmp_path))
    b = backups.snapshot_now(Actor(None, "test"))
    assert b.state == "done", b.error
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_config["S3_BUCKET"])["Contents"]]
    assert sorted(keys) == sorted([f"backups/{b.storage_key}", f"backups/{b.storage_key}.json"])
    assert b.storage_key.startswith("db/")
    from web.services.backups import restore
    assert restore.drill(b.id).drill_result == "passed"


def test_s3_upload_failure_fails_the_backup_then_the_next_run_works(app, db, s3_config,  # noqa: F811
                                                                    s3_client, monkeypatch,
                                                                    tmp_path):
    for k in ("USE_S3", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setitem(app.config, k, s3_config[k])
    monkeypatch.setitem(app.config, "S3_BUCKET", s3_config["S3_BUCKET"] + "-missing")
    monkeypatch.setitem(app.config, "BACKUP_TMP_DIR", str(tmp_path))
    b = backups.snapshot_now(Actor(None, "test"))
    assert b.state == "failed" and "NoSuchBucket" in b.error
    assert os.listdir(tmp_path) == []
    monkeypatch.setitem(app.config, "S3_BUCKET", s3_config["S3_BUCKET"])
    assert backups.snapshot_now(Actor(None, "test")).state == "done"


def _age(store: LocalStorage, key: str, days: float) -> None:
    path = os.path.join(store.base_dir, *key.split("/"))
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_local_retention_deletes_exactly_the_old_backups_keeping_the_newest(app, db, tmp_path):
    store = LocalStorage(tmp_path / "backups")
    firmware = LocalStorage(tmp_path / "firmware")
    ages = {"db/2026/01/01/a.dump": 100, "db/2026/01/02/b.dump": 60, "db/2026/02/01/c.dump": 31,
            "db/2026/03/01/d.dump": 29, "db/2026/03/02/e.dump": 1}
    for key, days in ages.items():
        store.put(key, io.BytesIO(key.encode()))
        store.put(key + ".json", io.BytesIO(b"{}"))
        _age(store, key, days)
    store.put("notes/readme.txt", io.BytesIO(b"not ours"))
    _age(store, "notes/readme.txt", 400)
    firmware.put("NH-100/1.0.0/fw.bin", io.BytesIO(b"\x7fELF"))
    _age(firmware, "NH-100/1.0.0/fw.bin", 900)
    cfg = dict(app.config, BACKUP_DIR=str(tmp_path / "backups"),
               FIRMWARE_DIR=str(tmp_path / "firmware"), BACKUP_RETENTION_DAYS=30,
               BACKUP_KEEP_MIN=2)
    result = lifecycle.apply_lifecycle(cfg, storage=store)
    assert sorted(result["deleted"]) == ["db/2026/01/01/a.dump", "db/2026/01/02/b.dump",
                                         "db/2026/02/01/c.dump"]
    left = sorted(o.key for o in store.list(""))
    assert left == ["db/2026/03/01/d.dump", "db/2026/03/01/d.dump.json",
                    "db/2026/03/02/e.dump", "db/2026/03/02/e.dump.json", "notes/readme.txt"]
    assert firmware.exists("NH-100/1.0.0/fw.bin")


def test_local_retention_always_keeps_the_newest_even_when_all_are_old(app, db, tmp_path):
    store = LocalStorage(tmp_path / "backups")
    for i, key in enumerate(["db/2025/01/01/x.dump", "db/2025/01/02/y.dump",
                             "db/2025/01/03/z.dump"]):
        store.put(key, io.BytesIO(b"dump"))
        _age(store, key, 300 - i)
    result = lifecycle.apply_local(store, retention_days=30, keep_min=2)
    assert result["deleted"] == ["db/2025/01/01/x.dump"]
    assert sorted(o.key for o in store.list("db/")) == ["db/2025/01/02/y.dump",
                                                         "db/2025/01/03/z.dump"]


def test_backups_whose_object_is_gone_are_marked_expired(app, db, tmp_path):
    store = LocalStorage(tmp_path / "backups")
    store.put("db/2026/01/01/kept.dump", io.BytesIO(b"x"))
    gone = Backup(kind="manual", state="done", storage_key="db/2026/01/01/gone.dump")
    kept = Backup(kind="manual", state="done", storage_key="db/2026/01/01/kept.dump")
    db.session.add_all([gone, kept])
    db.session.commit()
    assert lifecycle.mark_expired(store) == [gone.id]
    assert gone.expired_at is not None and kept.expired_at is None
    assert backups.newest_done().id == kept.id


def test_firmware_dir_inside_the_backups_is_refused(app, db, tmp_path):
    cfg = dict(app.config, BACKUP_DIR=str(tmp_path / "b"), FIRMWARE_DIR=str(tmp_path / "b" / "db"))
    with pytest.raises(lifecycle.LifecycleError, match="FIRMWARE_DIR"):
        lifecycle.apply_lifecycle(cfg, storage=LocalStorage(tmp_path / "b"))


def test_scheduled_lifecycle_runs_once_per_slot(app, db, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    slot = datetime(2026, 3, 1, 3, 30, tzinfo=timezone.utc)
    first = lifecycle.scheduled_lifecycle(slot - timedelta(days=1))
    assert first["backend"] == "local"
    assert lifecycle.scheduled_lifecycle(slot)["backend"] == "local"
    assert lifecycle.scheduled_lifecycle(slot)["skipped"] == "slot already ran"
    assert lifecycle.scheduled_lifecycle(slot - timedelta(days=1))["skipped"]  # never backwards


def test_the_daily_pass_sweeps_dead_temp_files_from_both_stores(app, db, tmp_path):
    from web.services.storage_sync import area_storage
    store = LocalStorage(tmp_path / "backups")
    store.put("db/2026/03/02/e.dump", io.BytesIO(b"dump"))
    with app.app_context():
        firmware = area_storage("firmware")
        fw_dir = Path(firmware.staging_dir())
        dead = [tmp_path / "backups" / "db" / ".tmp-crashed", fw_dir / ".tmp-upload-crashed"]
        for path in dead:
            path.write_bytes(b"half")
            os.utime(path, (1, 1))
        (fw_dir / ".tmp-upload-running").write_bytes(b"in flight")
        cfg = dict(app.config, BACKUP_DIR=str(tmp_path / "backups"), BACKUP_RETENTION_DAYS=30,
                   BACKUP_KEEP_MIN=2)
        result = lifecycle.apply_lifecycle(cfg, storage=store)
    assert result["temp_swept"] == {"firmware": [".tmp-upload-crashed"],
                                    "backups": ["db/.tmp-crashed"]}
    assert not any(p.exists() for p in dead) and (fw_dir / ".tmp-upload-running").exists()
    assert store.exists("db/2026/03/02/e.dump")
