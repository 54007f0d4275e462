"""Firmware for the FLASH station: download to a local cache, verify sha256, acknowledge.

Files are cached as ``<sha256>.bin``; a download goes to ``<sha256>.part`` first (resumed with
HTTP Range when interrupted) and is renamed only after its hash matches. A cached file is hashed
again before it is trusted, so a corrupted cache is detected and downloaded again. A FLASH
completion is refused unless ``verified_for(product)`` names a file whose bytes were verified.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from .api_client import ApiClient, ApiError, Offline

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class FirmwareError(Exception):
    """The firmware could not be obtained or did not verify."""


@dataclass(frozen=True)
class Assignment:
    """One firmware release assigned to this station."""

    id: int
    firmware_id: int
    product: str
    version: str
    sha256: str
    size: int
    state: str
    download_url: str

    @classmethod
    def from_api(cls, d: dict) -> "Assignment":
        """Build from the API's assignment JSON."""
        fid = int(d.get("firmware_id") or d.get("id"))
        return cls(int(d["id"]), fid, str(d["product"]), str(d["version"]),
                   str(d["sha256"]).lower(), int(d.get("size") or 0), str(d.get("state", "")),
                   d.get("download_url") or f"/api/v1/firmware/{fid}/download")


@dataclass(frozen=True)
class Verified:
    """A cached firmware file whose sha256 matched its assignment."""

    product: str
    version: str
    sha256: str
    path: str
    size: int
    mtime_ns: int
    acked: bool


def sha256_file(path: Path, progress=None) -> str:
    """Hex sha256 of a file, read in chunks (firmware can be tens of MiB)."""
    h, done, total = hashlib.sha256(), 0, path.stat().st_size
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


class FirmwareManager:
    """Assignments, the local cache and the verified state (thread-safe)."""

    def __init__(self, api: ApiClient, cache_dir: Path, store=None):
        self.api, self.dir = api, Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = store            # Cache (kv) for offline assignment lists; optional
        self._verified: dict[str, Verified] = {}
        self._lock = threading.Lock()
        self.downloads = 0            # completed downloads (the tests count re-downloads)
        self.corrupt_found = 0

    def path(self, a: Assignment) -> Path:
        """Where the verified file of an assignment lives."""
        return self.dir / f"{a.sha256}.bin"

    def assignments(self) -> list[Assignment]:
        """The station's current assignments (the last known list when offline)."""
        try:
            items = self.api.firmware_assignments()
        except Offline:
            items = self.store.get("firmware.assignments", []) if self.store else []
        else:
            if self.store:
                self.store.put("firmware.assignments", items)
        return [Assignment.from_api(i) for i in items
                if str(i.get("state", "")) not in ("revoked", "superseded")]

    def verified_for(self, product: str) -> Verified | None:
        """The verified firmware for a product, if its file is still the one that was hashed."""
        with self._lock:
            v = self._verified.get(product)
        if v is None:
            return None
        try:
            st = os.stat(v.path)
        except OSError:
            return None
        if st.st_size != v.size or st.st_mtime_ns != v.mtime_ns:
            return None  # touched since it was hashed: must be verified again
        return v

    def ensure(self, a: Assignment, progress=None, events=None) -> Verified:
        """Make sure a verified copy is cached (download when missing or corrupt), then ack."""
        events = events if events is not None else []
        final = self.path(a)
        if final.exists():
            if sha256_file(final, progress) == a.sha256:
                events.append("cached")
                return self._record(a, final, events)
            self.corrupt_found += 1
            events.append("corrupt")
            log.warning("cached firmware %s is corrupt; downloading again", final.name)
            final.unlink()
        for attempt in range(2):
            part = self._download(a, progress, fresh=attempt > 0)
            digest = sha256_file(part)
            if digest == a.sha256:
                os.replace(part, final)
                self.downloads += 1
                events.append("downloaded")
                return self._record(a, final, events)
            part.unlink()  # a bad resume or a broken transfer: one clean retry
            events.append("mismatch")
        raise FirmwareError(f"{a.version}: downloaded file has sha256 {digest}, "
                            f"expected {a.sha256}")

    def _download(self, a: Assignment, progress, fresh: bool) -> Path:
        part = self.dir / f"{a.sha256}.part"
        etag_file = self.dir / f"{a.sha256}.etag"
        if fresh:
            part.unlink(missing_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        etag = etag_file.read_text().strip() if offset and etag_file.exists() else None
        try:
            with open(part, "r+b" if part.exists() else "wb") as handle:
                handle.seek(offset)
                _, _, new_etag = self.api.download(a.download_url, handle, offset, etag, progress)
                handle.flush()
                os.fsync(handle.fileno())
        except ApiError as exc:
            if exc.status == 416:  # our partial file is already complete or bigger: restart
                part.unlink(missing_ok=True)
                return self._download(a, progress, fresh=True)
            raise
        if new_etag:
            etag_file.write_text(new_etag)
        return part

    def _record(self, a: Assignment, final: Path, events: list) -> Verified:
        acked = False
        try:
            self.api.ack_firmware(a.id, a.sha256)
            acked = True
            events.append("acked")
        except Offline:
            events.append("ack_pending")  # verified locally; the ack is retried next refresh
        st = final.stat()
        v = Verified(a.product, a.version, a.sha256, str(final), st.st_size, st.st_mtime_ns,
                     acked)
        with self._lock:
            self._verified[a.product] = v
        if self.store:
            self.store.put("firmware.verified", {k: asdict(x) for k, x in self._verified.items()})
        return v

    def sync(self, progress=None) -> list[tuple[Assignment, Verified | None, list[str], str]]:
        """Ensure every current assignment; returns (assignment, verified, events, error)."""
        out = []
        for a in self.assignments():
            events: list[str] = []
            try:
                out.append((a, self.ensure(a, progress, events), events, ""))
            except (FirmwareError, ApiError, OSError) as exc:
                out.append((a, None, events, str(exc)))
        return out
