"""In-memory storage adapter for unit tests (same semantics as the real adapters)."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timezone
from typing import BinaryIO, Dict, Iterator, Optional, Tuple

from .base import ObjectInfo, ObjectNotFound, StorageAdapter, copy_stream, validate_key, validate_prefix

__all__ = ["MemoryStorage"]


class MemoryStorage(StorageAdapter):
    """Objects kept as bytes in a dict; thread-safe, for tests only."""

    def __init__(self) -> None:
        """Start with an empty store."""
        self._objects: Dict[str, Tuple[bytes, ObjectInfo]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._objects)} objects)"

    def put(self, key: str, fileobj: BinaryIO) -> ObjectInfo:
        """Read fileobj in chunks and store it; a failing stream leaves the old value intact."""
        key = validate_key(key)
        buffer = io.BytesIO()
        info = copy_stream(fileobj.read, buffer.write)
        info = ObjectInfo(key=key, size=info.size, sha256=info.sha256, modified=datetime.now(timezone.utc))
        with self._lock:
            self._objects[key] = (buffer.getvalue(), info)
        return info

    def _get(self, key: str) -> Tuple[bytes, ObjectInfo]:
        """Return (data, info) of key or raise ObjectNotFound."""
        key = validate_key(key)
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise ObjectNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        """Return a BytesIO over a snapshot of the object."""
        return io.BytesIO(self._get(key)[0])

    def stat(self, key: str) -> ObjectInfo:
        """Return the stored ObjectInfo (sha256 is always known here)."""
        return self._get(key)[1]

    def exists(self, key: str) -> bool:
        """True if key is stored."""
        key = validate_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        """Remove key if present."""
        key = validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield stored objects whose key starts with prefix, sorted by key."""
        prefix = validate_prefix(prefix)
        with self._lock:  # snapshot, so callers may modify the store while iterating
            infos = [info for key, (_, info) in self._objects.items() if key.startswith(prefix)]
        yield from sorted(infos, key=lambda info: info.key)

    def get_url(self, key: str, expires: int = 3600) -> Optional[str]:
        """No direct URL exists for memory objects: None means serve through the app."""
        validate_key(key)
        return None
