"""One contract suite run against every adapter: local disk, memory and S3 (real moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from storage import (
    InvalidKey,
    LocalStorage,
    MemoryStorage,
    ObjectInfo,
    ObjectNotFound,
    S3Storage,
    StorageError,
)

MIB = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

INVALID_KEYS = [
    "../x",
    "/abs",
    "a/../../b",
    "a\\b",
    "a\x00b",
    "C:/x",
    "",
    "a//b",
    "a/./b",
    "./a",
    "a/",
    "~/x",
    "a\nb",
    "a\x7fb",
    ".tmp-x",
    "x" * 1025,
]


@pytest.fixture(params=["local", "memory", "s3"])
def kind(request):
    """Name of the adapter under test."""
    return request.param


@pytest.fixture
def store(kind, tmp_path, request):
    """A fresh, empty adapter of the kind under test."""
    if kind == "local":
        return LocalStorage(tmp_path / "store")
    if kind == "memory":
        return MemoryStorage()
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    # A prefix is used so the contract also covers prefix handling.
    return S3Storage(bucket, prefix="area", region="us-east-1", endpoint_url=endpoint)


def _no_temp_files(directory) -> list[str]:
    """Names of leftover download temp files in a directory."""
    return [name for name in os.listdir(directory) if name.startswith(".tmp-")]


def test_put_stat_open_download_roundtrip(store, kind, tmp_path):
    data = os.urandom(300_000) + b"\x00\xff tail"
    expected = hashlib.sha256(data).hexdigest()

    info = store.put("fw/v1/image.bin", io.BytesIO(data))
    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size, info.sha256) == ("fw/v1/image.bin", len(data), expected)

    st = store.stat("fw/v1/image.bin")
    assert st.key == "fw/v1/image.bin"
    assert st.size == len(data)
    if kind == "local":
        assert st.sha256 is None  # not stored on disk: computing it would mean re-reading
    else:
        assert st.sha256 == expected
    assert st.modified is not None and st.modified.tzinfo is not None
    assert st.modified.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - st.modified) < timedelta(minutes=5)

    with store.open("fw/v1/image.bin") as fh:
        assert fh.read(10) == data[:10]  # partial reads work (streaming)
        assert fh.read() == data[10:]
    assert fh.closed

    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    target = out_dir / "image.bin"
    target.write_bytes(b"stale content that must be replaced")
    got = store.download("fw/v1/image.bin", target)
    assert target.read_bytes() == data
    assert (got.size, got.sha256) == (len(data), expected)
    assert _no_temp_files(out_dir) == []


def test_upload_from_file_path(store, tmp_path):
    src = tmp_path / "source.bin"
    data = os.urandom(50_000)
    src.write_bytes(data)
    info = store.upload(src, "backups/db.dump")
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    with store.open("backups/db.dump") as fh:
        assert fh.read() == data


def test_empty_object(store):
    info = store.put("empty", io.BytesIO(b""))
    assert (info.size, info.sha256) == (0, EMPTY_SHA256)
    assert store.stat("empty").size == 0
    with store.open("empty") as fh:
        assert fh.read() == b""


def test_large_object_streams_and_uses_multipart(store, kind, make_stream, stream_sha256, tmp_path):
    size = 20 * MIB + 12345  # above the 8 MiB threshold: 3 parts on S3
    source = make_stream(size, seed=7)
    info = store.put("big/blob.bin", source)

    assert source.remaining == 0
    # The adapter must read in bounded chunks, never read() the whole stream at once.
    assert 0 < source.max_request <= 8 * MIB
    assert (info.size, info.sha256) == (size, source.sha256)
    assert store.stat("big/blob.bin").size == size

    with store.open("big/blob.bin") as fh:
        assert stream_sha256(fh) == (size, source.sha256)

    target = tmp_path / "big.bin"
    assert store.download("big/blob.bin", target).sha256 == source.sha256
    assert target.stat().st_size == size

    if kind == "s3":
        head = store.client.head_object(Bucket=store.bucket, Key="area/big/blob.bin")
        # A multipart ETag is "<md5-of-part-md5s>-<number of parts>".
        assert head["ETag"].strip('"').endswith("-3")
        assert head["Metadata"]["sha256"] == source.sha256


def test_exists_and_idempotent_delete(store):
    assert store.exists("a/b.bin") is False
    store.put("a/b.bin", io.BytesIO(b"payload"))
    assert store.exists("a/b.bin") is True
    assert store.exists("a") is False  # a "directory" is not an object

    store.delete("a/b.bin")
    assert store.exists("a/b.bin") is False
    store.delete("a/b.bin")  # second delete is a no-op
    store.delete("never/existed")
    with pytest.raises(ObjectNotFound):
        store.stat("a/b.bin")


def test_list_prefix_and_ordering(store):
    sizes = {"a/1.bin": 1, "a/2.bin": 2, "a/sub/z": 3, "a-b": 4, "ab": 5, "b/x/y": 6}
    # Insert in non-sorted order so ordering has to come from the adapter.
    for key in ["b/x/y", "ab", "a/sub/z", "a-b", "a/2.bin", "a/1.bin"]:
        store.put(key, io.BytesIO(b"x" * sizes[key]))

    everything = list(store.list())
    assert [o.key for o in everything] == sorted(sizes)
    assert {o.key: o.size for o in everything} == sizes
    assert all(o.modified is not None and o.modified.utcoffset() == timedelta(0) for o in everything)

    assert [o.key for o in store.list("a/")] == ["a/1.bin", "a/2.bin", "a/sub/z"]
    # A plain string prefix, not a directory: "a-b" sorts before "a/" in byte order.
    assert [o.key for o in store.list("a")] == ["a-b", "a/1.bin", "a/2.bin", "a/sub/z", "ab"]
    assert [o.key for o in store.list("a/s")] == ["a/sub/z"]
    assert [o.key for o in store.list("b/x/")] == ["b/x/y"]
    assert list(store.list("nothing/")) == []
    with pytest.raises(InvalidKey):
        list(store.list("../"))


def test_missing_keys_raise_object_not_found(store, tmp_path):
    for key in ["missing.bin", "no/such/dir/file"]:
        with pytest.raises(ObjectNotFound):
            store.stat(key)
        with pytest.raises(ObjectNotFound):
            store.open(key)
        target = tmp_path / "never.bin"
        with pytest.raises(ObjectNotFound):
            store.download(key, target)
        assert not target.exists()
        assert _no_temp_files(tmp_path) == []
    assert issubclass(ObjectNotFound, StorageError)


@pytest.mark.parametrize("bad_key", INVALID_KEYS, ids=repr)
def test_invalid_keys_rejected(store, bad_key, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    calls = {
        "put": lambda: store.put(bad_key, io.BytesIO(b"data")),
        "upload": lambda: store.upload(src, bad_key),
        "open": lambda: store.open(bad_key),
        "stat": lambda: store.stat(bad_key),
        "exists": lambda: store.exists(bad_key),
        "delete": lambda: store.delete(bad_key),
        "get_url": lambda: store.get_url(bad_key, 60),
        "download": lambda: store.download(bad_key, tmp_path / "out.bin"),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidKey):
            call()
    assert list(store.list()) == []  # nothing was written anywhere
    assert not (tmp_path / "out.bin").exists()
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


def test_invalid_key_is_value_error():
    assert issubclass(InvalidKey, ValueError) and issubclass(InvalidKey, StorageError)


def test_overwrite_replaces_content(store):
    store.put("cfg/settings.json", io.BytesIO(b"version one, the longer one"))
    info = store.put("cfg/settings.json", io.BytesIO(b"v2"))
    assert (info.size, info.sha256) == (2, hashlib.sha256(b"v2").hexdigest())
    assert store.stat("cfg/settings.json").size == 2
    with store.open("cfg/settings.json") as fh:
        assert fh.read() == b"v2"
    assert [o.key for o in store.list("cfg/")] == ["cfg/settings.json"]


def test_get_url(store, kind):
    data = b"firmware bytes \x00\x01\x02" * 1000
    store.put("fw/device.bin", io.BytesIO(data))
    url = store.get_url("fw/device.bin", expires=300)
    if kind != "s3":
        assert url is None  # None means "serve it through the app"
        return
    assert url.startswith(store.endpoint_url + "/")
    assert "X-Amz-Expires=300" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
    for bad in (0, -1, 8 * 24 * 3600):
        with pytest.raises(ValueError):
            store.get_url("fw/device.bin", expires=bad)


def test_failing_source_stream_stores_nothing(store, make_stream):
    store.put("fw/current.bin", io.BytesIO(b"known good"))
    for key in ("fw/current.bin", "fw/new.bin"):
        with pytest.raises(OSError, match="simulated failure"):
            store.put(key, make_stream(3 * MIB, fail_after=2 * MIB))
    assert [o.key for o in store.list()] == ["fw/current.bin"]
    with store.open("fw/current.bin") as fh:
        assert fh.read() == b"known good"
