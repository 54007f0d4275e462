"""Storage adapter contract: exceptions, key validation, ObjectInfo and the StorageAdapter ABC."""

from __future__ import annotations

import abc
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable, Iterator, Optional

__all__ = [
    "CHUNK_SIZE",
    "MAX_KEY_BYTES",
    "TEMP_PREFIX",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageAdapter",
    "StorageError",
    "StorageUnavailable",
    "copy_stream",
    "validate_key",
    "validate_prefix",
]

# 1 MiB: large enough to keep syscall/hash overhead low, small enough to bound memory.
CHUNK_SIZE = 1024 * 1024
# Same limit as S3 so a key that works locally also works in a bucket.
MAX_KEY_BYTES = 1024
# Local temp files use this name prefix; keys may not use it, so temp files can never
# collide with or be mistaken for real objects (and are skipped by list()).
TEMP_PREFIX = ".tmp-"

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class StorageError(Exception):
    """Base class for every error raised by a storage adapter."""


class ObjectNotFound(StorageError):
    """The requested key does not exist in the store."""


class StorageUnavailable(StorageError):
    """The store cannot be reached right now (endpoint down, network, throttling): retry later."""


class InvalidKey(StorageError, ValueError):
    """The key is not a safe relative POSIX path (or escapes the store)."""


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object; sha256 and modified are None when not known."""

    key: str
    size: int
    sha256: Optional[str] = None
    modified: Optional[datetime] = None


def validate_key(key: str) -> str:
    """Check that key is a safe relative POSIX path and return it (keys are never rewritten)."""
    # Keys are rejected rather than silently normalised: "a//b" quietly becoming "a/b"
    # would let two different spellings address one object.
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("key is empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot be stored anywhere
        raise InvalidKey(f"key is not valid UTF-8: {key!r}") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"key longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL_RE.search(key):
        raise InvalidKey(f"key contains NUL or control characters: {key!r}")
    if "\\" in key:
        raise InvalidKey(f"key contains a backslash: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"key is absolute: {key!r}")
    if key.startswith("~"):
        raise InvalidKey(f"key starts with '~': {key!r}")
    if _DRIVE_RE.match(key):
        raise InvalidKey(f"key starts with a drive letter: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"key has an empty, '.' or '..' segment: {key!r}")
        if segment.startswith(TEMP_PREFIX):
            raise InvalidKey(f"key segment uses the reserved prefix {TEMP_PREFIX!r}: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Check a list() prefix: "" or a key-like string that may end in '/' or a partial name."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a str, not {type(prefix).__name__}")
    if not prefix:
        return prefix
    if _CONTROL_RE.search(prefix) or "\\" in prefix or len(prefix.encode("utf-8", "replace")) > MAX_KEY_BYTES:
        raise InvalidKey(f"prefix contains forbidden characters or is too long: {prefix!r}")
    # The directory part must be a valid key; the last part is the free-form start of a
    # name (e.g. "fw/v1." matching "fw/v1.2.bin"), so only the leading-character rules apply.
    directory, _, tail = prefix.rpartition("/")
    if directory:
        validate_key(directory)
    elif prefix.startswith(("/", "~")) or _DRIVE_RE.match(tail):
        raise InvalidKey(f"prefix is absolute or not a relative path: {prefix!r}")
    return prefix


def copy_stream(read: Callable[[int], bytes], write: Callable[[bytes], object]) -> ObjectInfo:
    """Copy chunks from read() to write() until EOF; return size and sha256 (key left empty)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = read(CHUNK_SIZE)
        if chunk is None:  # a non-blocking raw stream had no data; we cannot wait for it
            raise StorageError("source stream is non-blocking and returned no data")
        if not chunk:
            break
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
    return ObjectInfo(key="", size=size, sha256=digest.hexdigest())


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename inside it survives a crash (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the data itself is synced
        pass
    finally:
        os.close(fd)


class StorageAdapter(abc.ABC):
    """Streaming object store addressed by validated relative keys."""

    @abc.abstractmethod
    def put(self, key: str, fileobj: BinaryIO) -> ObjectInfo:
        """Stream fileobj (binary, read in chunks) into key; return size and sha256."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Return a readable binary stream of key (usable as a context manager)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Return True if key exists."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete key; deleting a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield ObjectInfo for every key starting with prefix, sorted by key."""

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return ObjectInfo of key or raise ObjectNotFound."""

    @abc.abstractmethod
    def get_url(self, key: str, expires: int = 3600) -> Optional[str]:
        """Return a time-limited direct download URL, or None to serve through the app."""

    def upload(self, file_path: str | os.PathLike, key: str) -> ObjectInfo:
        """Store the local file at file_path under key."""
        validate_key(key)  # fail before touching the file system
        with open(file_path, "rb") as fh:
            return self.put(key, fh)

    def sweep_temp(self, older_than: float) -> list[str]:
        """Remove temp files a crashed write left behind, untouched for ``older_than`` seconds.

        Returns what was removed (paths relative to the store). Stores without temp files
        (S3: an unfinished upload is never an object) have nothing to sweep.
        """
        return []

    def check(self) -> None:
        """Raise StorageError (StorageUnavailable when unreachable) unless the store answers.

        Cheap enough for a readiness probe; a store with nothing to reach does nothing.
        """

    def staging_dir(self) -> Optional[str]:
        """A local directory to spool files for adopt() in (same filesystem), or None."""
        return None

    def adopt(self, file_path: str | os.PathLike, key: str, sha256: str) -> ObjectInfo:
        """Store a private file whose sha256 the caller computed; it may be moved, not copied.

        Afterwards file_path is either gone (taken over) or unchanged, and the caller removes
        it. This default copies it with upload() and checks the hash it computes on the way.
        """
        info = self.upload(file_path, key)
        if info.sha256 != sha256:
            self.delete(key)
            raise StorageError(f"{os.fspath(file_path)!r} does not hash to {sha256}")
        return info

    def download(self, key: str, file_path: str | os.PathLike) -> ObjectInfo:
        """Write key to file_path atomically (temp file next to it, then rename); return its info."""
        target = os.path.abspath(os.fspath(file_path))
        directory = os.path.dirname(target)
        # Open the source first so a missing key never creates a temp file.
        with self.open(key) as src:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
            try:
                with os.fdopen(fd, "wb") as dst:
                    info = copy_stream(src.read, dst.write)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.replace(tmp, target)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        fsync_dir(directory)
        return ObjectInfo(key=key, size=info.size, sha256=info.sha256)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def _unlink_quietly(path: str) -> None:
    """Remove path, ignoring errors (used while already handling another exception)."""
    try:
        os.unlink(path)
    except OSError:
        pass
