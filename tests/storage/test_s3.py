"""S3Storage specifics against the real moto server: metadata, errors, bucket administration."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys

import pytest

from storage import InvalidKey, ObjectNotFound, S3Storage, StorageError


@pytest.fixture
def s3(s3_endpoint, s3_bucket):
    """An S3Storage with a prefix on a fresh bucket."""
    return S3Storage(s3_bucket, prefix="firmware/", region="us-east-1", endpoint_url=s3_endpoint)


def test_import_does_not_load_boto3_or_app_frameworks():
    code = (
        "import sys, storage\n"
        "loaded = [m for m in ('boto3', 'botocore', 'flask', 'celery', 'sqlalchemy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sha256_metadata_and_checksum_stored(s3, s3_client, s3_bucket):
    data = b"\x01\x02firmware" * 4096
    s3.put("dev/fw.bin", io.BytesIO(data))
    head = s3_client.head_object(Bucket=s3_bucket, Key="firmware/dev/fw.bin", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "ChecksumSHA256" in head  # the upload was integrity-checked by the server


def test_stat_without_metadata_gives_none_sha(s3, s3_client, s3_bucket):
    # Objects written by other tools have no sha256 metadata: stat must not invent one.
    s3_client.put_object(Bucket=s3_bucket, Key="firmware/foreign.bin", Body=b"abc")
    info = s3.stat("foreign.bin")
    assert (info.size, info.sha256) == (3, None)


def test_list_skips_keys_that_are_not_valid(s3, s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="firmware/dir/", Body=b"")  # console "folder"
    s3_client.put_object(Bucket=s3_bucket, Key="firmware/ok.bin", Body=b"1")
    s3_client.put_object(Bucket=s3_bucket, Key="firmwareX/other.bin", Body=b"1")  # outside prefix
    assert [o.key for o in s3.list()] == ["ok.bin"]


def test_missing_bucket_raises_storage_error(s3_endpoint):
    store = S3Storage("no-such-bucket-here", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(StorageError) as excinfo:
        store.put("x", io.BytesIO(b"x"))
    assert not isinstance(excinfo.value, ObjectNotFound)
    with pytest.raises(StorageError):
        list(store.list())
    with pytest.raises(StorageError):
        store.open("x")


def test_reader_is_a_streaming_context_manager(s3):
    data = bytes(range(256)) * 10_000
    s3.put("stream.bin", io.BytesIO(data))
    with s3.open("stream.bin") as fh:
        assert fh.readable()
        chunks = []
        while True:
            chunk = fh.read(100_000)
            if not chunk:
                break
            assert len(chunk) <= 100_000
            chunks.append(chunk)
    assert fh.closed
    assert b"".join(chunks) == data


def test_versioning(s3, s3_client, s3_bucket):
    assert s3_client.get_bucket_versioning(Bucket=s3_bucket).get("Status") is None
    s3.enable_versioning()
    assert s3_client.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    s3.put("v.bin", io.BytesIO(b"one"))
    s3.put("v.bin", io.BytesIO(b"two"))
    versions = s3_client.list_object_versions(Bucket=s3_bucket, Prefix="firmware/v.bin")["Versions"]
    assert len(versions) == 2
    with s3.open("v.bin") as fh:
        assert fh.read() == b"two"


def test_lifecycle_rules_roundtrip(s3):
    assert s3.get_lifecycle_rules() == []  # NoSuchLifecycleConfiguration -> []
    rules = [
        {
            "ID": "expire-old-backups",
            "Filter": {"Prefix": "backups/"},
            "Status": "Enabled",
            "Expiration": {"Days": 30},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
        }
    ]
    s3.put_lifecycle_rules(rules)
    got = s3.get_lifecycle_rules()
    assert len(got) == 1
    assert got[0]["ID"] == "expire-old-backups"
    assert got[0]["Expiration"] == {"Days": 30}
    assert got[0]["Filter"] == {"Prefix": "backups/"}
    s3.put_lifecycle_rules([])
    assert s3.get_lifecycle_rules() == []


def test_lifecycle_on_missing_bucket_is_an_error(s3_endpoint):
    store = S3Storage("no-such-bucket-here", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(StorageError):
        store.get_lifecycle_rules()


def test_multipart_threshold_is_configurable(s3_endpoint, s3_bucket, s3_client, make_stream):
    store = S3Storage(s3_bucket, endpoint_url=s3_endpoint, multipart_threshold=6 * 1024 * 1024)
    source = make_stream(13 * 1024 * 1024, seed=3)
    info = store.put("m.bin", source)
    assert info.sha256 == source.sha256
    etag = s3_client.head_object(Bucket=s3_bucket, Key="m.bin")["ETag"].strip('"')
    assert etag.endswith("-3")  # 13 MiB in 6 MiB parts


def test_upload_detects_file_changed_during_upload(s3, tmp_path, monkeypatch):
    src = tmp_path / "growing.log"
    src.write_bytes(b"initial")
    original = s3._upload_path

    def upload_then_modify(file_path, key, sha256):
        original(file_path, key, sha256)
        with open(src, "ab") as fh:  # someone appends while we upload
            fh.write(b" more")

    monkeypatch.setattr(s3, "_upload_path", upload_then_modify)
    with pytest.raises(StorageError, match="changed"):
        s3.upload(src, "growing.log")
    assert not s3.exists("growing.log")  # no object with stale sha256 metadata is left


def test_adopt_sends_a_hashed_file_as_it_is(s3, s3_client, s3_bucket, tmp_path, monkeypatch):
    data = os.urandom(9 * 1024 * 1024 + 5)  # above the multipart threshold
    src = tmp_path / "spool"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr("storage.s3.copy_stream", lambda *a: pytest.fail("hashed a second time"))
    info = s3.adopt(src, "dev/fw.bin", sha)
    assert (info.size, info.sha256) == (len(data), sha)
    assert src.read_bytes() == data  # a remote store leaves the file to the caller
    head = s3_client.head_object(Bucket=s3_bucket, Key="firmware/dev/fw.bin")
    assert head["Metadata"]["sha256"] == sha
    with s3.open("dev/fw.bin") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha
    with pytest.raises(InvalidKey):
        s3.adopt(src, "../x", sha)
