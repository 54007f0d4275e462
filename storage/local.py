"""Local-filesystem storage adapter with atomic writes and symlink-escape protection."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from datetime import datetime, timezone
from typing import BinaryIO, Iterator, Optional

from .base import (TEMP_PREFIX, InvalidKey, ObjectInfo, ObjectNotFound, StorageAdapter,
                   StorageError, StorageUnavailable, _unlink_quietly, copy_stream, fsync_dir,
                   validate_key, validate_prefix)

__all__ = ["KeyOutsideStore", "LocalStorage"]


class KeyOutsideStore(InvalidKey, ObjectNotFound):
    """The key resolves (through a symlink) outside the store: no object of the store has it.

    An InvalidKey, so a write through it is refused; an ObjectNotFound, so a reader that
    answers "not found" for missing objects answers the same here instead of failing.
    """


@contextlib.contextmanager
def _storage_errors(key: str):
    """Re-raise file-system failures of the store itself as StorageError."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"local storage failed for {key!r}: {exc}") from exc


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    """Build an ObjectInfo from a stat result (sha256 is not cached locally, so None)."""
    modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
    return ObjectInfo(key=key, size=st.st_size, sha256=None, modified=modified)


class LocalStorage(StorageAdapter):
    """Objects stored as files under base_dir; writes are atomic and confined to base_dir."""

    def __init__(self, base_dir: str | os.PathLike):
        """Use base_dir as the root; it is created on the first write."""
        self.base_dir = os.path.abspath(os.fspath(base_dir))

    def __repr__(self) -> str:
        return f"LocalStorage({self.base_dir!r})"

    # -- path handling -------------------------------------------------------------
    def _real_base(self) -> str:
        """Real path of base_dir, resolved per call because base_dir may be a symlink itself."""
        return os.path.realpath(self.base_dir)

    def _inside(self, base: str, path: str) -> bool:
        """True if the real path lies within the real base directory."""
        return path == base or path.startswith(base.rstrip(os.sep) + os.sep)

    def _path(self, key: str) -> str:
        """Validate key and return its real path, refusing anything that resolves outside base."""
        key = validate_key(key)
        base = self._real_base()
        # realpath follows every symlink that already exists, so a planted link to a
        # directory outside base (or a dangling link) is caught before any read or write.
        real = os.path.realpath(os.path.join(base, *key.split("/")))
        if not self._inside(base, real) or real == base:
            raise KeyOutsideStore(f"key {key!r} resolves outside the storage directory")
        return real

    # -- writes -----------------------------------------------------------------------
    def put(self, key: str, fileobj: BinaryIO) -> ObjectInfo:
        """Stream fileobj into key atomically (temp file + fsync + rename) and return its info."""
        path = self._path(key)
        directory = os.path.dirname(path)
        with _storage_errors(key):
            os.makedirs(directory, exist_ok=True)
            # Re-check after mkdir: the directory we created (or found) must still be ours.
            if os.path.realpath(directory) != directory:
                raise InvalidKey(f"key {key!r} resolves outside the storage directory")
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:

                def write(chunk: bytes) -> None:
                    with _storage_errors(key):
                        out.write(chunk)

                # Errors raised by fileobj.read propagate unchanged: they are the caller's.
                info = copy_stream(fileobj.read, write)
                with _storage_errors(key):
                    out.flush()
                    os.fsync(out.fileno())
            with _storage_errors(key):
                os.replace(tmp, path)
                st = os.stat(path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(directory)
        modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
        return ObjectInfo(key=key, size=info.size, sha256=info.sha256, modified=modified)

    def check(self) -> None:
        """The root exists (or can be made) and is writable: a missing mount is unavailable."""
        base = self._real_base()
        try:
            os.makedirs(base, exist_ok=True)
            if not os.access(base, os.W_OK | os.X_OK):
                raise PermissionError(f"{base} is not writable")
        except OSError as exc:
            raise StorageUnavailable(f"local storage {base!r} is unusable: {exc}") from exc

    def staging_dir(self) -> str:
        """The store's root: a file spooled there can be renamed into place (see adopt)."""
        base = self._real_base()
        with _storage_errors(base):
            os.makedirs(base, exist_ok=True)
        return base

    def adopt(self, file_path: str | os.PathLike, key: str, sha256: str) -> ObjectInfo:
        """Rename a private file into key after fsync (no copy, no second hash pass).

        The caller hashed exactly the bytes it wrote; a file on another filesystem is copied
        (and hashed again) instead. Like put(), an existing object is replaced atomically.
        """
        path = self._path(key)
        directory = os.path.dirname(path)
        src = os.fspath(file_path)
        with _storage_errors(key):
            os.makedirs(directory, exist_ok=True)
            if os.path.realpath(directory) != directory:
                raise InvalidKey(f"key {key!r} resolves outside the storage directory")
            fd = os.open(src, os.O_RDONLY)
            try:
                os.fsync(fd)  # durable before any name points at it
                st = os.fstat(fd)
            finally:
                os.close(fd)
            try:
                os.rename(src, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                return super().adopt(src, key, sha256)  # another filesystem: copy
        fsync_dir(directory)
        modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
        return ObjectInfo(key=key, size=st.st_size, sha256=sha256, modified=modified)

    def delete(self, key: str) -> None:
        """Remove key; a missing key (or a directory of that name) is silently ignored."""
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except PermissionError as exc:
            # Linux reports EPERM (not EISDIR) when unlinking a directory.
            if os.path.isdir(path):
                return
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc
        fsync_dir(os.path.dirname(path))

    # -- reads ------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        """Return the file opened for binary reading; ObjectNotFound if it is not a file."""
        path = self._path(key)
        try:
            fh = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot open {key!r}: {exc}") from exc
        if not os.path.isfile(path):  # e.g. a FIFO or device node is not an object
            fh.close()
            raise ObjectNotFound(key)
        return fh

    def stat(self, key: str) -> ObjectInfo:
        """Return size and modification time of key (sha256 is None: it is not stored)."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc
        if not os.path.isfile(path):
            raise ObjectNotFound(key)
        return _info(key, st)

    def exists(self, key: str) -> bool:
        """True if key is a regular file inside the store."""
        return os.path.isfile(self._path(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield objects whose key starts with prefix, sorted by key; temp files are skipped."""
        prefix = validate_prefix(prefix)
        base = self._real_base()
        # Only walk the deepest directory the prefix names, not the whole tree.
        directory = prefix.rpartition("/")[0]
        top = os.path.join(base, *directory.split("/")) if directory else base
        if not os.path.isdir(top) or not self._inside(base, os.path.realpath(top)):
            return
        found = []
        for root, dirs, files in os.walk(top, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
            rel_root = os.path.relpath(root, base)
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue
                rel = name if rel_root == os.curdir else f"{rel_root.replace(os.sep, '/')}/{name}"
                if not rel.startswith(prefix):
                    continue
                try:
                    validate_key(rel)  # files dropped in by hand may have unaddressable names
                except InvalidKey:
                    continue
                full = os.path.join(root, name)
                # A symlinked file is listed only if it points at a regular file inside base.
                if os.path.islink(full) and not self._inside(base, os.path.realpath(full)):
                    continue
                found.append((rel, full))
        found.sort()
        for rel, full in found:
            try:
                st = os.stat(full)
            except OSError:  # deleted while we were listing
                continue
            if os.path.isfile(full):
                yield _info(rel, st)

    def sweep_temp(self, older_than: float) -> list[str]:
        """Remove ``.tmp-`` files (put/adopt spools of a crashed write) older than older_than s."""
        base = self._real_base()
        if not os.path.isdir(base):
            return []
        cutoff = time.time() - older_than
        removed = []
        for root, dirs, files in os.walk(base, followlinks=False):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(root, name)
                try:
                    st = os.lstat(full)  # a symlink is removed as a link, never followed
                    if st.st_mtime < cutoff:
                        os.unlink(full)
                        removed.append(os.path.relpath(full, base).replace(os.sep, "/"))
                except FileNotFoundError:  # finished (renamed) or removed meanwhile
                    continue
        return sorted(removed)

    def get_url(self, key: str, expires: int = 3600) -> Optional[str]:
        """Local files have no direct URL: None means the app must serve them."""
        validate_key(key)
        return None
