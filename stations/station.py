"""The station's non-visual core: API, queue, cache, firmware, scanner and background workers.

The UI calls ``login``/``lookup`` on a pool thread (they do network I/O) and ``submit`` on the UI
thread (it only commits to the local queue, then wakes the sync worker).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .api_client import ApiClient, ApiError, Offline
from .cache import Cache
from .config import StationConfig
from .firmware import FirmwareManager
from .printing import LabelService, LabelWorker
from .queue import CompletionQueue, Entry
from .scanner import Barcode, Scanner, SerialScanner, WedgeScanner
from .sync import Syncer, SyncWorker
from .threads import wait_idle

log = logging.getLogger(__name__)
STOP_WAIT_S = 10.0  # how long a clean stop waits for background jobs before closing the files


@dataclass
class Lookup:
    """What a scan resolved to: a lot with its step spec (and unit), or an error to show."""

    lot: dict | None = None
    product: dict | None = None
    step: dict | None = None
    unit: str | None = None
    cached_at: float | None = None          # set when the data came from the offline cache
    error: tuple[str, dict] | None = None   # (i18n key, values)
    latency_ms: float = 0.0


def make_scanner(cfg: StationConfig) -> Scanner | None:
    """The scanner the configuration asks for (None: manual entry only)."""
    if cfg.scanner_mode == "serial":
        return SerialScanner(cfg.scanner_port, cfg.scanner_baud, cfg.terminator,
                             cfg.gs_substitute)
    if cfg.scanner_mode == "wedge":
        return WedgeScanner(cfg.gs_substitute, cfg.wedge_max_gap_ms, cfg.wedge_min_length)
    return None


class StationContext:
    """Everything behind the main window, for one station and one data folder."""

    def __init__(self, cfg: StationConfig, printer_options: dict | None = None):
        self.cfg = cfg
        data = cfg.data_path
        self.api = ApiClient(cfg.server, cfg.station, cfg.request_timeout_s,
                             idle_timeout=cfg.idle_timeout_min * 60)
        self.queue = CompletionQueue(data / "queue.sqlite3")
        self.queue.prune(older_than_days=30)  # decided + shown rows; the server keeps the record
        self.cache = Cache(data / "cache.sqlite3")
        self.firmware = FirmwareManager(self.api, data / "firmware", self.cache)
        self.station_record: dict | None = self.cache.get("station")
        self.labels = LabelService(self.api, self.queue, cfg.printer_uri,
                                   station_printer=lambda: (self.station_record or {}).get(
                                       "printer_uri"), printer_options=printer_options)
        self.syncer = Syncer(self.api, self.queue, cfg.heartbeat_s,
                             printer_status=lambda: self.labels.state.summary(),
                             probe_s=cfg.probe_s)
        self.scanner = make_scanner(cfg)
        self.sync_worker: SyncWorker | None = None
        self.label_worker: LabelWorker | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def make_workers(self) -> None:
        """Create the sync and label workers (connect their signals, then ``start_workers``)."""
        if self.sync_worker is None:
            self.sync_worker = SyncWorker(self.syncer)
            self.label_worker = LabelWorker(self.labels, self.cfg.label_poll_s)

    def start_workers(self) -> None:
        """Start the sync and label threads (needs a QApplication)."""
        self.make_workers()
        for worker in (self.sync_worker, self.label_worker):
            if not worker.running:
                worker.start()

    def stop(self) -> None:
        """Stop threads and the scanner, close the databases (a clean shutdown)."""
        if self.scanner is not None:
            self.scanner.stop()
        for worker in (self.sync_worker, self.label_worker):
            if worker is not None:
                worker.stop()
        # A background job (a firmware sync the window started) may still use the databases:
        # closing a connection under its running query crashed the process.
        if not wait_idle(STOP_WAIT_S):
            log.warning("a background job still runs after %.0f s; closing anyway", STOP_WAIT_S)
        self.queue.close()
        self.cache.close()

    # -- operations ---------------------------------------------------------------------
    def login(self, username: str, password: str) -> dict:
        """Online login (remembered for offline use), else offline against the cached verifier."""
        try:
            info = self.api.login(username, password)
        except Offline:
            ok, role = self.cache.check_user(username, password)
            if not ok:
                raise
            self.api.login_offline(username, password, role)
            log.info("operator %s logged in offline (server unreachable)", username)
            return {"username": username, "role": role, "offline": True}
        log.info("operator %s logged in", info.get("username"))
        self.cache.remember_user(username, password, info.get("role"))
        try:
            self.refresh_station()
        except ApiError as exc:
            log.warning("station record not refreshed: %s", exc)
        return dict(info, offline=False)

    def refresh_station(self) -> dict | None:
        """Fetch this station's record (steps it serves, printer URI) and cache it."""
        record = self.api.get_station()
        self.station_record = record
        self.cache.put("station", record)
        return record

    def serves(self, step: str | None) -> bool:
        """True when this station serves the step (unknown record: let the server decide)."""
        if not self.station_record or step is None:
            return self.station_record is None
        return step in (self.station_record.get("steps") or [])

    def lookup(self, barcode: Barcode, current: dict | None = None) -> Lookup:
        """Resolve a scan to a lot (online, else the offline cache); blocking, off the UI thread."""
        started = time.perf_counter()
        failures = self.api.offline_events
        result = self._lookup(barcode, current)
        result.latency_ms = (time.perf_counter() - started) * 1000
        if self.api.offline_events != failures and self.sync_worker is not None:
            self.sync_worker.wake()  # the status bar shows offline now, not at the next probe
        if result.error:
            log.warning("scan %r not usable: %s %s", barcode.text, *result.error)
        else:
            log.info("scan %r: lot %s at %s%s%s", barcode.text, result.lot["lot_no"],
                     result.lot.get("current_step"),
                     f" unit {result.unit}" if result.unit else "",
                     " (offline copy)" if result.cached_at else "")
        return result

    def _lookup(self, barcode: Barcode, current: dict | None) -> Lookup:
        if barcode.lot_no is None and barcode.serial is not None:
            # GS1 with a serial (21) but no lot (10): the serial names a unit, never a lot.
            return self._lookup_serial(barcode.serial, current)
        code = barcode.lot_no or barcode.text
        unit = barcode.serial
        if barcode.error and not code:
            return Lookup(error=("error.unknown_barcode", {"code": barcode.text}))
        if not barcode.lot_no and current and code in (current.get("serials") or []):
            code, unit = current["lot_no"], code   # a unit of the lot on screen
        try:
            try:
                lot = self.api.get_lot(code)
            except ApiError as exc:
                if isinstance(exc, Offline) or exc.status != 404:
                    raise
                lot_no = self.cache.lot_for_serial(code)
                if lot_no is None:
                    return Lookup(error=("error.unknown_barcode", {"code": code}))
                lot, unit = self.api.get_lot(lot_no), code
            return self._resolved(lot, unit)
        except Offline:
            hit = self.cache.get_lot(code)
            if hit is None and self.cache.lot_for_serial(code):
                unit = code
                hit = self.cache.get_lot(self.cache.lot_for_serial(code))
            if hit is None:
                return Lookup(error=("error.offline_not_cached", {"code": code}))
            return self._cached(hit, unit)
        except ApiError as exc:
            return Lookup(error=("error.server", {"detail": exc.detail}))

    def _lookup_serial(self, serial: str, current: dict | None) -> Lookup:
        """A unit serial: its lot is the one on screen or the one the cache knows it from."""
        if current and serial in (current.get("serials") or []):
            lot_no = current["lot_no"]
        else:
            lot_no = self.cache.lot_for_serial(serial)
        if lot_no is None:
            return Lookup(error=("error.unknown_serial", {"serial": serial}))
        try:
            return self._resolved(self.api.get_lot(lot_no), serial)
        except Offline:
            hit = self.cache.get_lot(lot_no)
            if hit is None:
                return Lookup(error=("error.offline_not_cached", {"code": lot_no}))
            return self._cached(hit, serial)
        except ApiError as exc:
            return Lookup(error=("error.server", {"detail": exc.detail}))

    def _resolved(self, lot: dict, unit: str | None) -> Lookup:
        """A lot fetched from the server: cache it, attach its routing step and the unit."""
        # The station never shows the lot's completion history; dropping it keeps memory
        # and the offline cache small on lots with thousands of completions.
        lot.pop("completions", None)
        self.cache.put_lot(lot)
        return self._with_step(lot, self._product(lot), unit, None)

    def _cached(self, hit: tuple[dict, float], unit: str | None) -> Lookup:
        lot, cached_at = hit
        return self._with_step(lot, self.cache.get_product(lot["product"]), unit, cached_at)

    @staticmethod
    def _with_step(lot: dict, product: dict | None, unit: str | None,
                   cached_at: float | None) -> Lookup:
        step = next((s for s in (product or {}).get("routing", [])
                     if s["step"] == lot.get("current_step")), None)
        if unit and unit not in (lot.get("serials") or []):
            return Lookup(lot, product, step, None, cached_at,
                          error=("error.unknown_unit", {"serial": unit, "lot": lot["lot_no"]}))
        return Lookup(lot, product, step, unit, cached_at)

    def _product(self, lot: dict) -> dict | None:
        cached = self.cache.get_product(lot["product"])
        # The lot pins a routing revision; reuse the cached routing only if it is that one.
        if cached and cached.get("revision") == lot.get("routing_revision"):
            return cached
        product = self.api.get_product(lot["product"])
        self.cache.put_product(product)
        return product

    def submit(self, lot: dict, step: dict, measurements: dict, unit: str | None = None,
               firmware=None) -> Entry:
        """Commit a completion to the local queue (with its key), then wake the sender."""
        body = {"lot_no": lot["lot_no"], "step": step["step"], "station": self.cfg.station,
                "measurements": measurements}
        if unit:
            body["unit_serial"] = unit
        if firmware is not None:
            body["firmware_version"], body["firmware_sha256"] = firmware.version, firmware.sha256
        entry = self.queue.enqueue(body, self.api.username or "")
        log.info("completion #%d queued: lot %s step %s%s by %s (key %s)", entry.seq,
                 body["lot_no"], body["step"], f" unit {unit}" if unit else "", entry.operator,
                 entry.key)
        if self.sync_worker is not None:
            self.sync_worker.wake()
        return entry
