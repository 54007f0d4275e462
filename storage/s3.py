"""S3 storage adapter (boto3 is imported lazily so the package works without it)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from datetime import timezone
from typing import Any, BinaryIO, Iterable, Iterator, List, Optional

from .base import (CHUNK_SIZE, InvalidKey, ObjectInfo, ObjectNotFound, StorageAdapter,
                   StorageError, StorageUnavailable, copy_stream, validate_key, validate_prefix)

__all__ = ["S3Storage"]

MIB = 1024 * 1024
# Streams are spooled before upload (metadata must be known when the upload starts);
# up to this many bytes stay in memory, beyond that the spool rolls over to disk.
SPOOL_MEMORY = 8 * MIB
# S3 rejects multipart parts smaller than 5 MiB (except the last one).
MIN_PART_SIZE = 5 * MIB
# SigV4 presigned URLs are valid for at most 7 days.
MAX_URL_EXPIRY = 7 * 24 * 3600
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
S3_EXTRA = "pip install 'neurohub-mes[s3]'"  # boto3 is optional: only S3 installs need it


def _error_code(exc: BaseException) -> str:
    """Return the S3 error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# Answers that mean "the service cannot serve now", not "this request is wrong".
_UNAVAILABLE_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable",
                      "SlowDown", "RequestTimeout"}


@contextlib.contextmanager
def _translate(key: str):
    """Turn boto3/botocore failures into ObjectNotFound / StorageError."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError,
                                     HTTPClientError)

    try:
        yield
    except ClientError as exc:
        if _error_code(exc) in _NOT_FOUND_CODES:
            raise ObjectNotFound(key) from exc
        if _error_code(exc) in _UNAVAILABLE_CODES:
            raise StorageUnavailable(f"S3 is unavailable ({key!r}): {exc}") from exc
        raise StorageError(f"S3 request failed for {key!r}: {exc}") from exc
    except (ConnectionError, HTTPClientError) as exc:  # endpoint unreachable, timeouts
        raise StorageUnavailable(f"S3 is unreachable ({key!r}): {exc}") from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise StorageError(f"S3 request failed for {key!r}: {exc}") from exc


def _fingerprint(st: os.stat_result) -> tuple:
    """Identity + size + mtime of a file, to notice it changing during an upload."""
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _BodyReader(io.RawIOBase):
    """Raw stream over a botocore StreamingBody that maps transport errors to StorageError."""

    def __init__(self, body: Any, key: str):
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with _translate(self._key):
            data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


_LOADER: list = []  # botocore's data loader, shared by every session of this process


def _session() -> Any:
    """A new boto3 session (credentials, region and environment are read afresh, and sessions
    are not thread-safe) that shares one data loader: the parsed service models are kept, so a
    second adapter costs milliseconds instead of re-reading botocore's JSON (0.2 s to 1 s)."""
    import boto3
    import botocore.session
    core = botocore.session.get_session()
    if not _LOADER:
        _LOADER.append(core.get_component("data_loader"))
    else:
        core.register_component("data_loader", _LOADER[0])
    return boto3.session.Session(botocore_session=core)


class S3Storage(StorageAdapter):
    """Objects stored in an S3 bucket under an optional key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        region: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        client: Any = None,
        multipart_threshold: int = 8 * MIB,
    ):
        """Create the adapter; a boto3 client is built unless one is passed in."""
        if not bucket:
            raise ValueError("S3 bucket name is required")
        self.bucket = bucket
        if prefix:
            # Store the prefix as a directory ("firmware/") so areas never overlap by name.
            validate_key(prefix.rstrip("/"))
            prefix = prefix.rstrip("/") + "/"
        self.prefix = prefix
        self.multipart_threshold = int(multipart_threshold)
        # boto3 reads AWS_ENDPOINT_URL itself, but resolving it here lets us pick path-style
        # addressing, which custom endpoints (moto, MinIO, IPs) need.
        env = os.environ
        self.endpoint_url = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        self.client = client if client is not None else self._make_client(region)
        self._probe = client  # built on first check() unless the caller gave its own client
        self._transfer_config = None

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _make_client(self, region: Optional[str]) -> Any:
        """Build a boto3 S3 client honouring region and endpoint_url."""
        try:
            import boto3
        except ImportError:
            raise ModuleNotFoundError(f"S3 storage needs the s3 extra: {S3_EXTRA}",
                                      name="boto3") from None
        from botocore.config import Config

        s3_options = {"addressing_style": "path"} if self.endpoint_url else {}
        config = Config(
            signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5}, s3=s3_options
        )
        return _session().client(
            "s3", region_name=region or None, endpoint_url=self.endpoint_url, config=config
        )

    def check(self) -> None:
        """HEAD the bucket once, failing fast: a readiness probe must not wait out retries."""
        with _translate(self.bucket):
            self._probe_client().head_bucket(Bucket=self.bucket)

    def _probe_client(self) -> Any:
        """``self.client`` with one attempt and short timeouts (built once; a client passed
        in by the caller is used as it is)."""
        if self._probe is None:
            from botocore.config import Config

            quick = Config(connect_timeout=2, read_timeout=3,
                           retries={"mode": "standard", "max_attempts": 1})
            meta = self.client.meta
            self._probe = _session().client(
                "s3", region_name=meta.region_name, endpoint_url=self.endpoint_url,
                config=meta.config.merge(quick))
        return self._probe

    def _transfer(self, file_source: bool = False) -> Any:
        """TransferConfig for managed uploads (built lazily: it needs boto3)."""
        if self._transfer_config is None:
            from boto3.s3.transfer import TransferConfig

            # Parts of threshold size, but at least S3's minimum and at most 8 MiB so a
            # large threshold does not mean huge parts (s3transfer grows them if needed).
            part = max(MIN_PART_SIZE, min(self.multipart_threshold, 8 * MIB))
            self._transfer_config = (
                # A stream's parts are buffered in memory while in flight: keep few.
                TransferConfig(multipart_threshold=self.multipart_threshold,
                               multipart_chunksize=part, max_concurrency=4),
                # A file's parts are read from it by each sending thread, so memory stays
                # small with as many threads as boto3's upload_file uses by default.
                TransferConfig(multipart_threshold=self.multipart_threshold,
                               multipart_chunksize=part, max_concurrency=10),
            )
        return self._transfer_config[1 if file_source else 0]

    def _full(self, key: str) -> str:
        """Validate key and return the bucket key including the prefix."""
        return self.prefix + validate_key(key)

    # -- writes -----------------------------------------------------------------------
    def _upload(self, fileobj: BinaryIO, key: str, sha256: str) -> None:
        """Managed (multipart above the threshold) upload with the sha256 stored as metadata."""
        extra = {"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "SHA256"}
        with _translate(key):
            self.client.upload_fileobj(
                fileobj, self.bucket, self._full(key), ExtraArgs=extra, Config=self._transfer()
            )

    def put(self, key: str, fileobj: BinaryIO) -> ObjectInfo:
        """Stream fileobj into key: spool (bounded memory) while hashing, then upload."""
        validate_key(key)
        # Metadata has to be sent when the upload starts, but the hash is only known at the
        # end of the stream, so the stream is spooled first (memory up to SPOOL_MEMORY, then disk).
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            info = copy_stream(fileobj.read, spool.write)
            spool.seek(0)
            self._upload(spool, key, info.sha256)
        return ObjectInfo(key=key, size=info.size, sha256=info.sha256)

    def _upload_path(self, file_path: str, key: str, sha256: str) -> None:
        """Managed upload of a local file (parts read from the file by the transfer threads)."""
        extra = {"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "SHA256"}
        with _translate(key):
            self.client.upload_file(
                file_path, self.bucket, self._full(key), ExtraArgs=extra,
                Config=self._transfer(file_source=True)
            )

    def _send_file(self, file_path: str | os.PathLike, key: str, sha256: Optional[str]) -> ObjectInfo:
        """Upload a local file, hashing it first unless sha256 is given; refuse a changing file."""
        validate_key(key)
        path = os.fspath(file_path)
        with open(path, "rb") as fh:
            before = os.fstat(fh.fileno())
            if sha256 is None:
                sha256 = copy_stream(fh.read, lambda chunk: None).sha256
        self._upload_path(path, key, sha256)
        after = os.stat(path)
        if _fingerprint(before) != _fingerprint(after):
            # The stored sha256 metadata may not describe what was uploaded.
            self.delete(key)
            raise StorageError(f"{path!r} changed while it was being uploaded")
        return ObjectInfo(key=key, size=before.st_size, sha256=sha256)

    def upload(self, file_path: str | os.PathLike, key: str) -> ObjectInfo:
        """Upload a local file: hash it in a first pass, then upload it directly (no spool copy)."""
        return self._send_file(file_path, key, None)

    def adopt(self, file_path: str | os.PathLike, key: str, sha256: str) -> ObjectInfo:
        """Upload a private file the caller already hashed (one pass: no hashing here)."""
        return self._send_file(file_path, key, sha256)

    def delete(self, key: str) -> None:
        """Delete key (S3 DeleteObject is already idempotent)."""
        full = self._full(key)
        with _translate(key):
            self.client.delete_object(Bucket=self.bucket, Key=full)

    # -- reads ------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        """Return a buffered, streaming reader of the object body (a context manager)."""
        full = self._full(key)
        with _translate(key):
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        return io.BufferedReader(_BodyReader(response["Body"], key), buffer_size=CHUNK_SIZE)

    def stat(self, key: str) -> ObjectInfo:
        """HEAD the object: size, last-modified (UTC) and sha256 from metadata if present."""
        full = self._full(key)
        with _translate(key):
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        modified = head.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            sha256=(head.get("Metadata") or {}).get("sha256"),
            modified=modified.astimezone(timezone.utc) if modified else None,
        )

    def exists(self, key: str) -> bool:
        """True if HEAD finds the object; a 404 means False, other errors raise StorageError."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield objects under prefix in key order (S3 returns UTF-8 binary order)."""
        prefix = validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        with _translate(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix):]
                    try:
                        validate_key(key)  # skip "folder/" markers and other foreign keys
                    except InvalidKey:
                        continue
                    modified = obj.get("LastModified")
                    yield ObjectInfo(
                        key=key,
                        size=int(obj["Size"]),
                        sha256=None,  # ListObjects does not return user metadata
                        modified=modified.astimezone(timezone.utc) if modified else None,
                    )

    def get_url(self, key: str, expires: int = 3600) -> Optional[str]:
        """Presigned GET URL valid for expires seconds (1 .. 7 days)."""
        full = self._full(key)
        if isinstance(expires, bool) or not isinstance(expires, int) or not 0 < expires <= MAX_URL_EXPIRY:
            raise ValueError(f"expires must be an int between 1 and {MAX_URL_EXPIRY} seconds")
        with _translate(key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires
            )

    # -- bucket administration (used by the lifecycle code) -------------------------------
    def enable_versioning(self) -> None:
        """Turn on bucket versioning."""
        with _translate(self.bucket):
            self.client.put_bucket_versioning(
                Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
            )

    def get_lifecycle_rules(self) -> List[dict]:
        """Return the bucket's lifecycle rules ([] when none are configured)."""
        try:
            with _translate(self.bucket):
                response = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except StorageError as exc:
            if _error_code(exc.__cause__) == "NoSuchLifecycleConfiguration":
                return []
            raise
        return list(response.get("Rules", []))

    def put_lifecycle_rules(self, rules: Iterable[dict]) -> None:
        """Replace ALL lifecycle rules of the bucket (shared by every prefix); [] removes them."""
        rules = list(rules)
        with _translate(self.bucket):
            if rules:
                self.client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
                )
            else:
                self.client.delete_bucket_lifecycle(Bucket=self.bucket)
