"""`neurohub storage sync`: local -> S3 (moto_server) and back, sha256-verified, restartable."""
from __future__ import annotations

import hashlib
import io

import pytest

from storage import LocalStorage, MemoryStorage, ObjectInfo, S3Storage
from tests.storage.conftest import aws_env, s3_bucket, s3_client, s3_endpoint  # noqa: F401
from web.services import firmware as fw_svc
from web.services.audit import Actor
from web.services.storage_sync import area_storage, hash_object, sync_area

OBJECTS = {"NH-100/1.0.0/a-fw.bin": b"A" * 300_000, "NH-100/1.1.0/b-fw.bin": b"B" * 10,
           "NH-200/2.0.0/deep/c.bin": bytes(range(256)) * 1000, "empty.bin": b""}


@pytest.fixture()
def s3_config(app, tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    """Local dirs under tmp_path, S3 settings on a fresh moto bucket (USE_S3 stays off)."""
    for k, v in {"FIRMWARE_DIR": str(tmp_path / "firmware"), "BACKUP_DIR": str(tmp_path / "bk"),
                 "S3_BUCKET": s3_bucket, "AWS_ENDPOINT_URL": s3_endpoint,
                 "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setitem(app.config, k, v)
    return app


def fill(store, objects=OBJECTS):
    for key, data in objects.items():
        store.put(key, io.BytesIO(data))


def contents(store) -> dict[str, bytes]:
    out = {}
    for info in store.list(""):
        with store.open(info.key) as fh:
            out[info.key] = fh.read()
    return out


def test_local_to_s3_round_trip_is_verified_and_a_rerun_copies_nothing(s3_config, s3_client,
                                                                      s3_bucket):
    with s3_config.app_context():
        local, s3 = area_storage("firmware", "local"), area_storage("firmware", "s3")
        assert isinstance(local, LocalStorage) and isinstance(s3, S3Storage)
        fill(local)
        seen = []
        report = sync_area(local, s3, "firmware", on_object=lambda k, w: seen.append((k, w)))
        assert (report.copied, report.skipped, report.failed) == (4, 0, [])
        assert report.bytes_copied == sum(map(len, OBJECTS.values()))
        assert sorted(seen) == sorted((k, "copied") for k in OBJECTS)
        assert contents(s3) == OBJECTS
        for key, data in OBJECTS.items():  # stored under the area prefix, sha256 in metadata
            head = s3_client.head_object(Bucket=s3_bucket, Key=f"firmware/{key}")
            assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        again = sync_area(local, s3, "firmware")
        assert (again.copied, again.skipped, again.bytes_copied) == (0, 4, 0)
        # one object changes locally and one is added: only those two are copied
        local.put("NH-100/1.1.0/b-fw.bin", io.BytesIO(b"b" * 10))
        local.put("new.bin", io.BytesIO(b"new"))
        third = sync_area(local, s3, "firmware")
        assert (third.copied, third.skipped) == (2, 3)
        assert contents(s3) == contents(local)
        # and back: S3 -> an empty local directory
        back = LocalStorage(str(s3_config.config["FIRMWARE_DIR"]) + "-restored")
        report = sync_area(s3, back, "firmware")
        assert report.copied == 5 and contents(back) == contents(local)
        assert sync_area(s3, back, "firmware").skipped == 5


def test_objects_that_do_not_match_their_record_are_reported_not_copied(s3_config):
    with s3_config.app_context():
        local, s3 = area_storage("firmware", "local"), area_storage("firmware", "s3")
        fill(local)
        expected = {k: hashlib.sha256(v).hexdigest() for k, v in OBJECTS.items()}
        expected["NH-100/1.0.0/a-fw.bin"] = "0" * 64  # the database says otherwise: corrupted
        report = sync_area(local, s3, "firmware", expected)
        assert report.copied == 3 and [k for k, _ in report.failed] == ["NH-100/1.0.0/a-fw.bin"]
        assert "record says" in report.failed[0][1] and not report.ok
        assert not s3.exists("NH-100/1.0.0/a-fw.bin")


class _FlakyDestination(MemoryStorage):
    """Stores something other than what it was given (a bad disk, a broken proxy)."""

    def put(self, key, fileobj):
        info = super().put(key, fileobj)
        super().put(key, io.BytesIO(b"garbage"))
        return ObjectInfo(key, info.size, info.sha256)


def test_a_copy_that_does_not_read_back_identical_is_removed_and_reported():
    src, dst = MemoryStorage(), _FlakyDestination()
    fill(src, {"a.bin": b"payload"})
    report = sync_area(src, dst, "firmware")
    assert report.copied == 0 and report.failed[0][0] == "a.bin"
    assert "destination copy hashes to" in report.failed[0][1]
    assert not dst.exists("a.bin")


def test_cli_storage_sync_with_firmware_records(s3_config, factory, db):
    product = factory.product(routing=[{"step": "FLASH", "name": "Flash",
                                        "requires_firmware": True}])
    data = b"firmware-bytes" * 1000
    with s3_config.app_context():
        fw = fw_svc.upload(product, "1.0.0", fw_svc.measure(io.BytesIO(data), "fw.bin"),
                           Actor(None, "t"))
        key = fw.storage_key
        area_storage("backups", "local").put("db/2026/11/26/x.dump", io.BytesIO(b"dump"))
    runner = s3_config.test_cli_runner()
    result = runner.invoke(args=["storage", "sync", "--from", "local", "--to", "s3"])
    assert result.exit_code == 0, result.output
    assert "firmware: 1 copied" in result.output and "backups: 1 copied" in result.output
    rerun = runner.invoke(args=["storage", "sync", "--from", "local", "--to", "s3",
                                "--area", "firmware"])
    assert rerun.exit_code == 0 and "firmware: 0 copied (0 bytes), 1 already identical" in \
        rerun.output and "backups" not in rerun.output
    with s3_config.app_context():
        assert hash_object(area_storage("firmware", "s3"), key)[1] == \
            hashlib.sha256(data).hexdigest()
        # the local copy is damaged: the sync refuses it and exits 1
        path = f"{s3_config.config['FIRMWARE_DIR']}/{key}"
    with open(path, "r+b") as fh:
        fh.write(b"X")
    bad = runner.invoke(args=["storage", "sync", "--from", "local", "--to", "s3",
                              "--area", "firmware"])
    assert bad.exit_code == 1 and "1 failed" in bad.output
    same = runner.invoke(args=["storage", "sync", "--from", "s3", "--to", "s3"])
    assert same.exit_code != 0 and "must differ" in same.output
