"""The app's storage areas, and copying them between backends (``neurohub storage sync``).

The sync is the seed document's ``aws s3 sync /app/data/firmware/ s3://…/firmware/`` done through
the adapters: every object is read from the source while it is hashed, written atomically to the
destination, then read back from the destination and hashed again. An object whose destination
copy already has the same size and sha256 is skipped, so a sync that stopped half-way is simply run
again. Nothing is ever deleted from the destination.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flask import current_app

from storage import AREAS, ObjectInfo, ObjectNotFound, StorageAdapter, StorageError, get_storage
from storage.base import CHUNK_SIZE

log = logging.getLogger(__name__)
BACKENDS = ("local", "s3")


def _identity(area: str, cfg: Mapping[str, Any], backend: str) -> tuple:
    if backend == "s3":
        return (area, backend, cfg.get("S3_BUCKET"), cfg.get("AWS_REGION"),
                cfg.get("AWS_ENDPOINT_URL"))
    return (area, backend, cfg.get(AREAS[area][0]))


def area_storage(area: str, backend: str | None = None) -> StorageAdapter:
    """The adapter of a storage area ("firmware" or "backups") for this app's configuration.

    ``backend`` forces "local" or "s3"; by default ``USE_S3`` decides. Adapters are cached per
    app and configuration (an S3 client is costly to build and safe to share between threads).
    """
    cfg = current_app.config
    backend = backend or ("s3" if cfg.get("USE_S3") else "local")
    if backend not in BACKENDS:
        raise ValueError(f"unknown storage backend {backend!r}; expected one of {BACKENDS}")
    cache = current_app.extensions.setdefault("neurohub.storage", {})
    key = _identity(area, cfg, backend)
    store = cache.get(key)
    if store is None:
        store = cache[key] = get_storage(area, dict(cfg, USE_S3=backend == "s3"))
    return store


def hash_object(store: StorageAdapter, key: str,
                progress: Callable[[int], object] | None = None) -> tuple[int, str]:
    """(size, sha256) of a stored object, read back in chunks (never whole)."""
    digest, size = hashlib.sha256(), 0
    with store.open(key) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return size, digest.hexdigest()


@dataclass
class SyncReport:
    """What one area's sync did."""

    area: str
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every object is now identical on both sides."""
        return not self.failed


def _destination_sha(dst: StorageAdapter, key: str, size: int) -> str | None:
    """sha256 of the destination copy if it exists with this size, else None."""
    try:
        info = dst.stat(key)
    except ObjectNotFound:
        return None
    if info.size != size:
        return None
    return info.sha256 or hash_object(dst, key)[1]


def _copy_one(src: StorageAdapter, dst: StorageAdapter, obj: ObjectInfo,
              expected: str | None) -> tuple[bool, int]:
    """Copy one object if the destination differs; returns (copied, bytes)."""
    size, sha = hash_object(src, obj.key)
    if expected and sha != expected:
        raise StorageError(f"source object hashes to {sha}, its record says {expected}")
    if _destination_sha(dst, obj.key, size) == sha:
        return False, 0
    with src.open(obj.key) as fh:
        written = dst.put(obj.key, fh)
    if (written.size, written.sha256) != (size, sha):
        raise StorageError(f"source changed while copying ({written.sha256} != {sha})")
    back_size, back_sha = hash_object(dst, obj.key)
    if (back_size, back_sha) != (size, sha):
        dst.delete(obj.key)  # a copy that does not verify must not look complete
        raise StorageError(f"destination copy hashes to {back_sha}, source to {sha}")
    return True, size


def sync_area(src: StorageAdapter, dst: StorageAdapter, area: str,
              expected: Mapping[str, str] | None = None,
              on_object: Callable[[str, str], object] | None = None) -> SyncReport:
    """Copy every object of ``src`` to ``dst`` with sha256 verified on both sides.

    ``expected`` maps keys to the sha256 the database recorded for them (firmware): a source
    object that no longer matches its record is reported, never copied. ``on_object(key, what)``
    is told "copied", "skipped" or "failed" per object (for the CLI's output).
    """
    report = SyncReport(area)
    for obj in src.list(""):
        try:
            copied, size = _copy_one(src, dst, obj, (expected or {}).get(obj.key))
        except StorageError as exc:
            log.error("storage sync %s: %s failed: %s", area, obj.key, exc)
            report.failed.append((obj.key, str(exc)))
            what = "failed"
        else:
            if copied:
                report.copied += 1
                report.bytes_copied += size
                what = "copied"
            else:
                report.skipped += 1
                what = "skipped"
        if on_object:
            on_object(obj.key, what)
    return report


__all__ = ["BACKENDS", "SyncReport", "area_storage", "hash_object", "sync_area"]
