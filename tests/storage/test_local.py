"""LocalStorage specifics: symlink escapes, atomic writes, temp-file hygiene."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tempfile

import pytest

from storage import InvalidKey, LocalStorage, ObjectNotFound, StorageError


def _all_files(root) -> list[str]:
    """Every file (including hidden temp files) below root, as relative paths."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            found.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found)


@pytest.fixture
def base(tmp_path):
    """The storage directory (not created yet: LocalStorage must create it on demand)."""
    return tmp_path / "store"


@pytest.fixture
def outside(tmp_path):
    """A directory outside the store holding a secret file."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_bytes(b"top secret")
    return directory


def test_base_dir_created_on_demand(base):
    store = LocalStorage(base)
    assert not base.exists()
    assert list(store.list()) == []  # listing a missing base is simply empty
    store.put("deep/nested/file.bin", io.BytesIO(b"x"))
    assert (base / "deep" / "nested" / "file.bin").read_bytes() == b"x"


def test_symlinked_directory_escape_refused(base, outside):
    base.mkdir()
    os.symlink(outside, base / "evil")
    store = LocalStorage(base)

    with pytest.raises(InvalidKey):
        store.put("evil/planted.bin", io.BytesIO(b"malware"))
    assert sorted(os.listdir(outside)) == ["secret.txt"]  # nothing written outside

    with pytest.raises(InvalidKey):
        store.open("evil/secret.txt")
    with pytest.raises(InvalidKey):
        store.stat("evil/secret.txt")
    with pytest.raises(InvalidKey):
        store.exists("evil/secret.txt")
    with pytest.raises(InvalidKey):
        store.delete("evil/secret.txt")
    assert (outside / "secret.txt").read_bytes() == b"top secret"
    assert list(store.list()) == []  # the link's target is not listed


def test_symlinked_file_escape_refused(base, outside):
    base.mkdir()
    os.symlink(outside / "secret.txt", base / "link.txt")
    os.symlink(outside / "not-there-yet.txt", base / "dangling.txt")
    store = LocalStorage(base)

    with pytest.raises(InvalidKey):
        store.open("link.txt")
    with pytest.raises(InvalidKey):
        store.put("link.txt", io.BytesIO(b"overwrite"))
    # A dangling link must not let a write create a file outside either.
    with pytest.raises(InvalidKey):
        store.put("dangling.txt", io.BytesIO(b"created outside"))
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"top secret"
    assert [o.key for o in store.list()] == []


def test_symlink_inside_base_is_allowed(base):
    (base / "real").mkdir(parents=True)
    os.symlink(base / "real", base / "alias")
    store = LocalStorage(base)
    store.put("alias/file.bin", io.BytesIO(b"ok"))
    assert (base / "real" / "file.bin").read_bytes() == b"ok"
    with store.open("real/file.bin") as fh:
        assert fh.read() == b"ok"


def test_base_dir_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real-store"
    real.mkdir()
    os.symlink(real, tmp_path / "store-link")
    store = LocalStorage(tmp_path / "store-link")
    store.put("a.bin", io.BytesIO(b"1"))
    assert (real / "a.bin").read_bytes() == b"1"
    assert [o.key for o in store.list()] == ["a.bin"]


def test_failing_stream_leaves_nothing_behind(base, make_stream):
    store = LocalStorage(base)
    source = make_stream(5 * 1024 * 1024, fail_after=3 * 1024 * 1024)
    with pytest.raises(OSError, match="simulated failure"):
        store.put("fw/partial.bin", source)
    assert source.produced > 0  # the failure really happened midway
    assert not store.exists("fw/partial.bin")
    assert _all_files(base) == []  # neither the target nor a temp file


def test_failing_overwrite_keeps_previous_version(base, make_stream):
    store = LocalStorage(base)
    store.put("fw/current.bin", io.BytesIO(b"known good firmware"))
    with pytest.raises(OSError):
        store.put("fw/current.bin", make_stream(4 * 1024 * 1024, fail_after=2 * 1024 * 1024))
    with store.open("fw/current.bin") as fh:
        assert fh.read() == b"known good firmware"
    assert _all_files(base) == [os.path.join("fw", "current.bin")]


def test_temp_files_never_listed(base):
    store = LocalStorage(base)
    store.put("dir/real.bin", io.BytesIO(b"r"))
    (base / ".tmp-abc123").write_bytes(b"half written")
    (base / "dir" / ".tmp-xyz").write_bytes(b"half written")
    (base / ".tmp-dir").mkdir()
    (base / ".tmp-dir" / "inner.bin").write_bytes(b"x")
    assert [o.key for o in store.list()] == ["dir/real.bin"]
    assert [o.key for o in store.list("dir/")] == ["dir/real.bin"]
    with pytest.raises(InvalidKey):  # temp names are reserved, so they cannot be addressed
        store.open("dir/.tmp-xyz")


def test_put_writes_through_temp_file_in_destination_dir(base, monkeypatch):
    import tempfile

    seen = []
    real_mkstemp = tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        seen.append(path)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    store = LocalStorage(base)
    store.put("x/y.bin", io.BytesIO(b"data"))
    assert len(seen) == 1
    assert os.path.dirname(seen[0]) == str(base / "x")  # same filesystem: rename is atomic
    assert os.path.basename(seen[0]).startswith(".tmp-")
    assert not os.path.exists(seen[0])


def test_directory_is_not_an_object(base):
    store = LocalStorage(base)
    store.put("d/f.bin", io.BytesIO(b"f"))
    with pytest.raises(ObjectNotFound):
        store.open("d")
    with pytest.raises(ObjectNotFound):
        store.stat("d")
    assert store.exists("d") is False
    store.delete("d")  # not an object: nothing to delete, and the directory survives
    assert store.exists("d/f.bin")
    with pytest.raises(StorageError):
        store.put("d", io.BytesIO(b"cannot replace a directory"))
    with pytest.raises(StorageError):
        store.put("d/f.bin/child", io.BytesIO(b"parent is a file"))
    assert _all_files(base) == [os.path.join("d", "f.bin")]


# --- adopt: a caller's private, already hashed file renamed into place --------------------------

def _spool(store, data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix=".tmp-upload-", dir=store.staging_dir())
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def test_staging_dir_is_the_real_store_root(base, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(base, target_is_directory=True)
    store = LocalStorage(link)
    assert store.staging_dir() == str(base) and base.is_dir()


def test_adopt_renames_without_copying_or_hashing(base, monkeypatch):
    store = LocalStorage(base)
    data = os.urandom(300_000)
    path = _spool(store, data)
    inode = os.stat(path).st_ino
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    monkeypatch.setattr("storage.base.copy_stream", lambda *a: pytest.fail("copied"))
    info = store.adopt(path, "fw/1.0/a.bin", hashlib.sha256(data).hexdigest())
    assert (info.key, info.size, info.sha256) == ("fw/1.0/a.bin", len(data),
                                                  hashlib.sha256(data).hexdigest())
    assert info.modified is not None and synced  # fsync'd before the rename
    assert not os.path.exists(path)
    assert os.stat(base / "fw" / "1.0" / "a.bin").st_ino == inode
    assert _all_files(base) == [os.path.join("fw", "1.0", "a.bin")]
    assert [o.key for o in store.list()] == ["fw/1.0/a.bin"]


def test_adopt_across_filesystems_copies_and_checks_the_hash(base, monkeypatch):
    store = LocalStorage(base)
    data = b"firmware" * 1000
    real_rename = os.rename

    def exdev(src, dst):
        if os.path.basename(src).startswith(".tmp-upload-"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", exdev)
    path = _spool(store, data)
    info = store.adopt(path, "x/a.bin", hashlib.sha256(data).hexdigest())
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (base / "x" / "a.bin").read_bytes() == data
    assert os.path.exists(path)  # a copy: the caller still removes its file
    os.unlink(path)
    path = _spool(store, data)
    with pytest.raises(StorageError):  # the bytes are not what the caller hashed
        store.adopt(path, "x/b.bin", "0" * 64)
    os.unlink(path)
    assert _all_files(base) == [os.path.join("x", "a.bin")]


def test_adopt_refuses_bad_keys_and_escapes(base, outside):
    store = LocalStorage(base)
    path = _spool(store, b"data")
    for key in ("../escape.bin", "/abs.bin", ".tmp-x/a.bin"):
        with pytest.raises(InvalidKey):
            store.adopt(path, key, hashlib.sha256(b"data").hexdigest())
    (base / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        store.adopt(path, "link/a.bin", hashlib.sha256(b"data").hexdigest())
    assert os.path.exists(path) and sorted(os.listdir(outside)) == ["secret.txt"]


def test_sweep_removes_only_old_temp_files_and_follows_no_link(base, outside):
    store = LocalStorage(base)
    store.put("fw/a.bin", io.BytesIO(b"object"))
    old = [base / ".tmp-upload-dead", base / "fw" / ".tmp-abc123"]
    for path in old:
        path.write_bytes(b"half written")
        os.utime(path, (1, 1))  # untouched since 1970
    fresh = base / "fw" / ".tmp-writing-now"
    fresh.write_bytes(b"in flight")
    link = base / ".tmp-link"
    os.symlink(outside / "secret.txt", link)
    os.utime(link, (1, 1), follow_symlinks=False)
    assert store.sweep_temp(3600) == [".tmp-link", ".tmp-upload-dead", "fw/.tmp-abc123"]
    assert _all_files(base) == ["fw/.tmp-writing-now", "fw/a.bin"]
    assert (outside / "secret.txt").read_bytes() == b"top secret"  # the link, not its target
    assert [o.key for o in store.list()] == ["fw/a.bin"]
