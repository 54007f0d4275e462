"""get_storage(area, config) and storage_from_uri()."""

from __future__ import annotations

import io

import pytest

from storage import LocalStorage, MemoryStorage, S3Storage, get_storage, storage_from_uri


@pytest.fixture
def local_config(tmp_path):
    """A config that selects local storage."""
    return {
        "USE_S3": False,
        "FIRMWARE_DIR": str(tmp_path / "fw"),
        "BACKUP_DIR": str(tmp_path / "bk"),
    }


@pytest.fixture
def s3_config(s3_endpoint, s3_bucket):
    """A config that selects S3 on the moto server."""
    return {
        "USE_S3": "true",
        "S3_BUCKET": s3_bucket,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "FIRMWARE_DIR": "/nonexistent/fw",
        "BACKUP_DIR": "/nonexistent/bk",
    }


def test_local_areas_use_their_own_directories(local_config, tmp_path):
    firmware = get_storage("firmware", local_config)
    backups = get_storage("backups", local_config)
    assert isinstance(firmware, LocalStorage) and isinstance(backups, LocalStorage)
    assert firmware.base_dir == str(tmp_path / "fw")
    assert backups.base_dir == str(tmp_path / "bk")

    firmware.put("same.bin", io.BytesIO(b"firmware"))
    backups.put("same.bin", io.BytesIO(b"backup"))
    assert (tmp_path / "fw" / "same.bin").read_bytes() == b"firmware"
    assert (tmp_path / "bk" / "same.bin").read_bytes() == b"backup"


@pytest.mark.parametrize("flag", [False, None, "false", "0", "no", "", 0, "False"])
def test_use_s3_false_values_select_local(local_config, flag):
    local_config["USE_S3"] = flag
    assert isinstance(get_storage("firmware", local_config), LocalStorage)


def test_use_s3_missing_selects_local(local_config):
    del local_config["USE_S3"]
    assert isinstance(get_storage("backups", local_config), LocalStorage)


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "1", "yes", " Yes ", 1])
def test_use_s3_true_values_select_s3(flag, aws_env):
    config = {"USE_S3": flag, "S3_BUCKET": "some-bucket", "AWS_REGION": "eu-west-1"}
    store = get_storage("firmware", config)
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix) == ("some-bucket", "firmware/")
    assert store.client.meta.region_name == "eu-west-1"


def test_use_s3_garbage_is_rejected(local_config):
    local_config["USE_S3"] = "ture"
    with pytest.raises(ValueError):
        get_storage("firmware", local_config)


def test_s3_areas_are_isolated_by_prefix(s3_config, s3_client, s3_bucket):
    firmware = get_storage("firmware", s3_config)
    backups = get_storage("backups", s3_config)
    assert isinstance(firmware, S3Storage) and isinstance(backups, S3Storage)
    assert (firmware.prefix, backups.prefix) == ("firmware/", "backups/")
    assert firmware.endpoint_url == s3_config["AWS_ENDPOINT_URL"]

    firmware.put("same.bin", io.BytesIO(b"firmware"))
    backups.put("same.bin", io.BytesIO(b"backup"))
    backups.put("nightly/2024-01-01.dump", io.BytesIO(b"dump"))

    raw = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert raw == ["backups/nightly/2024-01-01.dump", "backups/same.bin", "firmware/same.bin"]
    assert [o.key for o in firmware.list()] == ["same.bin"]
    assert [o.key for o in backups.list()] == ["nightly/2024-01-01.dump", "same.bin"]
    with firmware.open("same.bin") as fh:
        assert fh.read() == b"firmware"
    with backups.open("same.bin") as fh:
        assert fh.read() == b"backup"
    firmware.delete("same.bin")
    assert backups.exists("same.bin") and not firmware.exists("same.bin")


@pytest.mark.parametrize("area", ["logs", "", "Firmware", "firmware/"])
def test_unknown_area_rejected(area, local_config):
    with pytest.raises(ValueError):
        get_storage(area, local_config)


def test_missing_settings_rejected(local_config):
    with pytest.raises(ValueError):
        get_storage("firmware", {"USE_S3": "yes"})  # no bucket
    with pytest.raises(ValueError):
        get_storage("backups", {"FIRMWARE_DIR": "/x"})  # no BACKUP_DIR


def test_storage_from_uri_file_and_memory(tmp_path):
    store = storage_from_uri(f"file://{tmp_path}/my%20dir")
    assert isinstance(store, LocalStorage)
    assert store.base_dir == str(tmp_path / "my dir")
    store.put("k", io.BytesIO(b"v"))
    assert (tmp_path / "my dir" / "k").read_bytes() == b"v"

    assert isinstance(storage_from_uri("memory://"), MemoryStorage)
    assert storage_from_uri("memory://") is not storage_from_uri("memory://")


@pytest.mark.parametrize(
    "uri", ["file://relative/dir", "file:relative", "s3://", "ftp://host/x", "/plain/path", ""]
)
def test_storage_from_uri_rejects_bad_uris(uri):
    with pytest.raises(ValueError):
        storage_from_uri(uri)


def test_storage_from_uri_s3_honours_endpoint_env(s3_endpoint, s3_bucket, s3_client, monkeypatch):
    # Only the standard env var tells the adapter where S3 is: this proves it is honoured.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    store = storage_from_uri(f"s3://{s3_bucket}/site/a")
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix) == (s3_bucket, "site/a/")
    store.put("obj.bin", io.BytesIO(b"via env endpoint"))
    body = s3_client.get_object(Bucket=s3_bucket, Key="site/a/obj.bin")["Body"].read()
    assert body == b"via env endpoint"


def test_storage_from_uri_s3_bucket_root(aws_env):
    store = storage_from_uri("s3://bucket-only", region="us-east-1")
    assert (store.bucket, store.prefix) == ("bucket-only", "")
