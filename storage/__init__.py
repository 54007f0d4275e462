"""Pluggable object storage for firmware images and backups (local disk, S3 or memory)."""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from .base import (InvalidKey, ObjectInfo, ObjectNotFound, StorageAdapter, StorageError,
                   StorageUnavailable, validate_key)
from .local import LocalStorage
from .memory import MemoryStorage
from .s3 import S3Storage

__all__ = [
    "AREAS",
    "InvalidKey",
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Storage",
    "StorageAdapter",
    "StorageError",
    "StorageUnavailable",
    "get_storage",
    "storage_from_uri",
    "validate_key",
]

# area -> (config key of the local directory, key prefix inside the shared S3 bucket)
AREAS = {
    "firmware": ("FIRMWARE_DIR", "firmware/"),
    "backups": ("BACKUP_DIR", "backups/"),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _as_bool(value: Any) -> bool:
    """Interpret a config flag given as bool, int or string ("true"/"1"/"yes"...)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    # A typo such as "ture" must not silently fall back to local disk.
    raise ValueError(f"USE_S3 must be a boolean, got {value!r}")


def get_storage(area: str, config: Mapping[str, Any]) -> StorageAdapter:
    """Return the adapter for area ("firmware" or "backups") as described by config."""
    if area not in AREAS:
        raise ValueError(f"unknown storage area {area!r}; expected one of {sorted(AREAS)}")
    dir_key, s3_prefix = AREAS[area]
    if _as_bool(config.get("USE_S3")):
        bucket = config.get("S3_BUCKET")
        if not bucket:
            raise ValueError("USE_S3 is set but S3_BUCKET is missing")
        return S3Storage(
            bucket,
            prefix=s3_prefix,
            region=config.get("AWS_REGION") or None,
            endpoint_url=config.get("AWS_ENDPOINT_URL") or None,
        )
    directory = config.get(dir_key)
    if not directory:
        raise ValueError(f"{dir_key} is required for local {area} storage")
    return LocalStorage(directory)


def storage_from_uri(uri: str, **s3_options: Any) -> StorageAdapter:
    """Build an adapter from file:///abs/dir, s3://bucket/prefix or memory://."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "file":
        # file://host/... would silently drop "host"; only local absolute paths make sense.
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URI must be file:///absolute/path, got {uri!r}")
        path = unquote(parts.path)
        if not os.path.isabs(path):
            raise ValueError(f"file URI must name an absolute directory, got {uri!r}")
        return LocalStorage(path)
    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"s3 URI must name a bucket, got {uri!r}")
        return S3Storage(parts.netloc, prefix=unquote(parts.path).strip("/"), **s3_options)
    raise ValueError(f"unsupported storage URI {uri!r}")
