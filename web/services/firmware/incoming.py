"""Firmware images on their way in: ``Incoming`` (counted and hashed bytes), the hashing upload
spool, and ``measure`` for a stream that is already local."""
from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable

from storage.base import CHUNK_SIZE, TEMP_PREFIX

# Blocks handed to the spool's writer thread and not yet written: bounds memory (about
# SPOOL_BLOCKS_IN_FLIGHT read blocks) while receiving, hashing and writing overlap.
SPOOL_BLOCKS_IN_FLIGHT = 8
# With sync_early, the writer thread flushes the file to disk after every SYNC_EVERY bytes.
SYNC_EVERY = 16 * 1024 * 1024


class TooLarge(Exception):
    """The image is larger than the configured limit."""

    def __init__(self, limit: int):
        super().__init__(f"the firmware image exceeds the limit of {limit} bytes")
        self.limit = limit


@dataclass
class Incoming:
    """An image ready to store: a readable stream at its start, already counted and hashed."""

    stream: BinaryIO
    size: int
    sha256: str
    filename: str
    path: str | None = None  # a local file holding exactly these bytes, if there is one
    # True when ``path`` is a private spool the store may take over (rename) as it is; the
    # sha256 above was computed from exactly the bytes written to it.
    adoptable: bool = False


class HashingSpool:
    """A private temp file that hashes and counts what is written and refuses more than ``limit``.

    The upload's multipart sink: the image is hashed while it is spooled to disk, so memory
    stays bounded and a too-large or wrong image is refused before it is stored. Hashing and
    writing run in a thread of their own (both release the GIL), overlapped with receiving
    the next block; ``write`` keeps a reference to each block until it is written, so blocks
    must be immutable (``bytes`` or views of them). Spooled in the store's staging directory
    (same filesystem), the file is renamed into place instead of being copied and hashed again.
    """

    def __init__(self, limit: int | None, directory: str | None = None, *,
                 sync_early: bool = False):
        # mkstemp: O_EXCL, mode 0600. In a store's directory the name carries the reserved
        # temp prefix, so it can never collide with (or be listed as) an object.
        prefix = TEMP_PREFIX + "upload-" if directory else "nh-firmware-"
        fd, self.path = tempfile.mkstemp(prefix=prefix, dir=directory)
        self._fh = open(fd, "w+b", buffering=0)  # unbuffered: blocks go straight to write(2)
        self._digest, self.size, self.limit = hashlib.sha256(), 0, limit
        # A file the store will fsync and keep: write it back while the rest still arrives,
        # so the store's final fsync has only the last few MiB left to wait for.
        self._sync_every = SYNC_EVERY if sync_early else 0
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    def write(self, data) -> int:
        """Queue a block (bytes or a view of bytes) to be hashed and appended; TooLarge if over."""
        n = len(data)
        self.size += n
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(self.limit)
        if self._error is not None:
            raise self._error
        if not self._threads:  # hashing and writing each get a thread: they overlap
            for work in (self._hash, self._write):
                q: queue.Queue = queue.Queue(SPOOL_BLOCKS_IN_FLIGHT)
                t = threading.Thread(target=self._drain, args=(q, work), daemon=True,
                                     name=f"firmware-spool{work.__name__}")
                self._queues.append(q)
                self._threads.append(t)
                t.start()
        for q in self._queues:
            q.put(data)
        return n

    def _hash(self, data) -> None:
        self._digest.update(data)

    def _write(self, data) -> None:
        view, done, n = memoryview(data), 0, len(data)
        while done < n:  # a raw write may be partial
            done += self._fh.write(view[done:])

    def _drain(self, blocks: queue.Queue, work) -> None:
        """A worker thread: apply work to each queued block, in order, until None."""
        written = 0
        while (data := blocks.get()) is not None:
            if self._error is not None:
                continue  # keep taking blocks so the producer never blocks forever
            try:
                work(data)
                if work == self._write and self._sync_every:
                    written += len(data)
                    if written >= self._sync_every:
                        os.fdatasync(self._fh.fileno())
                        written = 0
            except BaseException as exc:  # re-raised in the request thread
                self._error = exc

    def _finish(self) -> None:
        """Wait until every queued block is hashed and written; re-raise a worker's error."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues, self._threads = [], []
        if self._error is not None:
            raise self._error

    def __getattr__(self, name):  # read, seek, tell, fileno ... of the temp file
        return getattr(self._fh, name)

    def incoming(self, filename: str) -> Incoming:
        """The spooled bytes as an ``Incoming`` (rewound)."""
        self._finish()
        self._fh.seek(0)
        return Incoming(self._fh, self.size, self._digest.hexdigest(), filename, self.path,
                        adoptable=True)

    def close(self) -> None:
        """Close and remove the temp file, unless the store took it over (renamed it)."""
        if self._fh.closed:
            return
        try:
            try:
                self._finish()
            except BaseException:  # noqa: S110 - already failed; the file is removed below
                pass
            mine = os.fstat(self._fh.fileno())
            try:
                there = os.stat(self.path)
            except FileNotFoundError:
                return
            # Only unlink the name if it is still our file (not a stored object put there).
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)
        finally:
            self._fh.close()


def measure(stream: BinaryIO, filename: str, limit: int | None = None,
            progress: Callable[[int], object] | None = None) -> Incoming:
    """Count and hash a seekable stream in chunks, then rewind it (nothing is stored)."""
    start, digest, size = stream.tell(), hashlib.sha256(), 0
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
        if limit is not None and size > limit:
            raise TooLarge(limit)
        digest.update(chunk)
        if progress:
            progress(len(chunk))
    stream.seek(start)
    return Incoming(stream, size, digest.hexdigest(), filename)
