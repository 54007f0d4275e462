"""The firmware upload spool: hashed and written in worker threads, bounded, cleaned up, and
taken over (renamed) by a local store without a second copy."""
from __future__ import annotations

import hashlib
import os

import pytest

from storage import LocalStorage
from web.services.firmware import incoming as fs


def test_hashes_writes_and_rewinds_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "SYNC_EVERY", 1000)
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd) or real(fd))
    spool = fs.HashingSpool(None, str(tmp_path), sync_early=True)
    blocks = [os.urandom(n) for n in (1, 999, 4096, 70_000, 3)]
    for b in blocks:
        spool.write(memoryview(b)[:])
    incoming = spool.incoming("fw.bin")
    data = b"".join(blocks)
    assert (incoming.size, incoming.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert incoming.adoptable and incoming.stream.read() == data and synced
    assert os.path.basename(spool.path).startswith(".tmp-upload-")
    spool.close()
    assert os.listdir(tmp_path) == []


def test_limit_and_cleanup_after_failure(tmp_path):
    spool = fs.HashingSpool(10, str(tmp_path))
    spool.write(b"x" * 10)
    with pytest.raises(fs.TooLarge):
        spool.write(b"y")
    spool.close()
    spool.close()  # idempotent
    assert os.listdir(tmp_path) == []


def test_a_write_error_in_the_worker_reaches_the_caller(tmp_path, monkeypatch):
    spool = fs.HashingSpool(None, str(tmp_path))

    def full(data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(spool, "_write", full)
    spool.write(b"a" * 100)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):  # reported at a later write, or at the end at the latest
            spool.write(b"b" * 100)
        spool.incoming("x")
    spool.close()
    assert os.listdir(tmp_path) == []


def test_a_store_takes_the_spool_over_and_close_leaves_the_object(tmp_path):
    store = LocalStorage(tmp_path / "fw")
    spool = fs.HashingSpool(None, store.staging_dir(), sync_early=True)
    spool.write(b"image bytes")
    incoming = spool.incoming("fw.bin")
    info = store.adopt(incoming.path, "P/1.0.0/fw.bin", incoming.sha256)
    assert info.size == 11
    spool.close()
    assert (tmp_path / "fw" / "P" / "1.0.0" / "fw.bin").read_bytes() == b"image bytes"
    assert [o.key for o in store.list()] == ["P/1.0.0/fw.bin"]
    assert sorted(os.listdir(tmp_path / "fw")) == ["P"]  # no temp file left


def test_without_a_directory_it_spools_in_the_temp_dir():
    spool = fs.HashingSpool(None)
    try:
        assert os.path.basename(spool.path).startswith("nh-firmware-")
    finally:
        spool.close()
    assert not os.path.exists(spool.path)
