"""LocalStorage specifics: symlink escapes, atomic writes, temp-file hygiene."""

from __future__ import annotations

import io
import os

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
