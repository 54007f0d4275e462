"""Pull ``station://`` label jobs, print each exactly once on the local printer, acknowledge.

Every step is journalled in the station's SQLite file before it happens: ``pulled`` (the server
already marked the job sent, so it must not be lost) → ``sending`` → ``printed`` | ``failed`` →
``acked``. A job found in ``sending`` after a crash may or may not have printed; it is reported
as not printed with the reason, so a supervisor reprints on purpose rather than the app printing
twice. A printer that is not ready (paper out, head open, unreachable) keeps the job ``pulled``
and it is retried, because nothing was sent.

Labels name the server's TrueType label font (``^CW``, for Hangul): before a job is sent, every
font it names is stored on the printer (``~DY`` unless ``^HW`` lists it; a tcp:// printer is
asked once, and again after any error), from the station's font cache (``fonts``). A label whose
font can be had from neither is reported as not printed: without it the Hangul would be wrong.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from printers import (STATION_PULL, FontError, LabelFont, PrinterError, PrinterNotReady,
                      PrinterUnreachable, StatusError, ensure_font, printer_for_uri,
                      ready_or_raise)

from ..api_client import ApiClient, ApiError, NotLoggedIn, Offline
from ..queue import CompletionQueue
from .fonts import FontCache, named_fonts

log = logging.getLogger(__name__)


@dataclass
class PrinterState:
    """What the status bar shows about the local printer."""

    uri: str = ""
    ready: bool = False
    codes: list[str] = field(default_factory=list)   # i18n printer.* codes
    detail: str = ""
    waiting: int = 0                                 # pulled jobs not yet printed

    def summary(self) -> str:
        """Machine-readable one-liner for the heartbeat."""
        return "ready" if self.ready else ",".join(self.codes) or "unknown"


def _codes(exc: Exception) -> list[str]:
    if isinstance(exc, PrinterNotReady):
        return list(exc.reasons) or ["offline"]
    if isinstance(exc, PrinterUnreachable):
        return ["unreachable"]
    if isinstance(exc, StatusError):
        return ["status_error"]
    return ["offline"]


class LabelService:
    """Plain-Python label loop; ``tick()`` is called by LabelWorker on its own thread."""

    def __init__(self, api: ApiClient, queue: CompletionQueue, printer_uri: str,
                 station_printer=lambda: None, status_every: float = 10.0, clock=time.monotonic,
                 printer_options: dict | None = None, font_dir: Path | str | None = None):
        self.api, self.queue, self.printer_uri = api, queue, printer_uri
        self.station_printer = station_printer  # the server's printer URI for this station
        self.status_every, self.clock = status_every, clock
        self.printer_options = printer_options or {}
        self.state = PrinterState(uri=printer_uri)
        self.on_state = lambda state: None
        self.on_printed = lambda job_id: None
        self._next_status = 0.0
        self._recovered = False
        self.sent_count = 0
        # Beside the journal: the data folder, one per station.
        self.fonts = FontCache(api, font_dir or Path(queue.path).parent / "fonts")
        self._fonts_on: set[str] = set()  # fonts a tcp:// printer has (asked until an error)

    def _printer(self):
        return printer_for_uri(self.printer_uri, **self.printer_options)

    def _set_state(self, ready: bool, codes: list[str], detail: str = "") -> None:
        waiting = len(self.queue.labels(("pulled",)))
        new = PrinterState(self.printer_uri, ready, codes, detail, waiting)
        if new != self.state:
            self.state = new
            self.on_state(new)

    def _recover(self) -> None:
        # A crash between "sending" and "printed" leaves the outcome unknown: never guess twice.
        for row in self.queue.labels(("sending",)):
            self.queue.label_state(row["job_id"], "failed", printed=False,
                                   reason="station app stopped while sending; not confirmed")
        self._recovered = True

    def check_status(self) -> PrinterState:
        """Ask the printer for ``~HS`` and update the state."""
        if not self.printer_uri:
            self._set_state(False, ["not_configured"])
            return self.state
        try:
            printer = self._printer()
            try:
                status = printer.status()
            finally:
                printer.close()
            self._set_state(status.ready, list(status.reasons) + list(status.warnings))
        except (PrinterError, ValueError, OSError) as exc:
            self._fonts_on.clear()  # it may come back as another printer, without the font
            self._set_state(False, _codes(exc) if isinstance(exc, PrinterError)
                            else ["not_configured"], str(exc))
        self._next_status = self.clock() + self.status_every
        return self.state

    def tick(self) -> bool:
        """Ack, print, pull; returns True while jobs wait in the journal."""
        if not self._recovered:
            self._recover()
        try:
            self._ack_all()
            if self.printer_uri and str(self.station_printer() or "").startswith(STATION_PULL):
                self._print_pulled()
                while not self.queue.labels(("pulled",)) and self._pull():
                    self._print_pulled()
                    self._ack_all()
        except (Offline, NotLoggedIn):
            pass  # the journal keeps everything; next tick retries
        if self.clock() >= self._next_status:
            self.check_status()
        return bool(self.queue.labels(("pulled", "printed", "failed")))

    def _pull(self) -> bool:
        job = self.api.next_label()
        if job is None:
            return False
        self.queue.label_pulled(int(job["id"]), job.get("zpl") or "")
        return True

    def _print_pulled(self) -> None:
        for row in self.queue.labels(("pulled",)):
            job_id, zpl = row["job_id"], row["zpl"]
            if not zpl:
                self.queue.label_state(job_id, "failed", printed=False, reason="job had no ZPL")
                continue
            data = zpl.encode("utf-8")
            fonts, retry = self._job_fonts(data)
            printer = None
            try:
                printer = self._printer()
                ready_or_raise(printer)
                missing = self._store_fonts(printer, fonts)
            except (PrinterError, OSError, ValueError) as exc:
                if printer is not None:
                    printer.close()
                self._fonts_on.clear()
                codes = _codes(exc) if isinstance(exc, PrinterError) else ["not_configured"]
                self._set_state(False, codes, str(exc))
                return  # no label was sent: keep the job pulled and retry on a later tick
            if missing:
                printer.close()
                if missing in retry:  # the server could not be asked: nothing sent, try later
                    log.warning("label %s waits for font %s: %s", job_id, missing,
                                retry[missing])
                    return
                # A label without its font prints wrong (no Hangul): report it, never print.
                self.queue.label_state(job_id, "failed", printed=False, reason=(
                    f"label font {missing} is neither on the printer nor served by the "
                    "server")[:200])
                continue
            self.queue.label_state(job_id, "sending")
            try:
                printer.send(data, job_id=str(job_id))
            except (PrinterError, OSError, ValueError) as exc:
                self._fonts_on.clear()
                # Some bytes may have reached the printer: report, never resend on our own.
                self.queue.label_state(job_id, "failed", printed=False, reason=str(exc)[:200])
                self._set_state(False, _codes(exc) if isinstance(exc, PrinterError)
                                else ["offline"], str(exc))
                continue
            finally:
                printer.close()
            self.queue.label_state(job_id, "printed", printed=True)
            self.sent_count += 1
            self._set_state(True, [])
            self.on_printed(job_id)

    def _job_fonts(self, zpl: bytes) -> tuple[dict[str, LabelFont | None], dict[str, str]]:
        """The fonts a job names that the printer may lack: {path: font, or None when this
        station cannot get it}, and {path: why} for those the server could not be asked for."""
        fonts, retry = {}, {}
        for path in named_fonts(zpl):
            if path in self._fonts_on:
                continue
            fonts[path] = None
            try:
                fonts[path] = self.fonts.get(path)
            except (Offline, NotLoggedIn, FontError) as exc:
                retry[path] = str(exc) or type(exc).__name__
            except ApiError as exc:  # a permanent 4xx: asking again changes nothing
                if not exc.permanent:
                    retry[path] = str(exc)
        return fonts, retry

    def _store_fonts(self, printer, fonts: dict[str, LabelFont | None]) -> str | None:
        """Store each font on the ready printer unless it has it; the first one it lacks and
        this station cannot send, if any."""
        for path, font in fonts.items():
            if font is not None:
                if ensure_font(printer, font):
                    log.info("label font %s (%d bytes) sent to %s", path, len(font.data),
                             self.printer_uri)
            elif path not in printer.files(path):
                return path
            if self.printer_uri.startswith("tcp://"):  # asking others costs nothing
                self._fonts_on.add(path)
        return None

    def _ack_all(self) -> None:
        for row in self.queue.labels(("printed", "failed")):
            try:
                self.api.ack_label(row["job_id"], bool(row["printed"]), row["printer_reason"])
            except Offline:
                raise
            except ApiError as exc:
                if exc.status != 409 and not exc.permanent:
                    raise Offline(exc.detail, exc.status) from exc  # 5xx: retry the ack later
                # 409 (already acked) / 404 (job gone): the server has its answer already.
                log.warning("label %s ack: %s", row["job_id"], exc)
            self.queue.label_state(row["job_id"], "acked")

