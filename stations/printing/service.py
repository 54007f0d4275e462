"""Pull ``station://`` label jobs, print each exactly once on the local printer, acknowledge.

Every step is journalled in the station's SQLite file before it happens: ``pulled`` (the server
already marked the job sent, so it must not be lost) → ``sending`` → ``printed`` | ``failed`` →
``acked``. A job found in ``sending`` after a crash may or may not have printed; it is reported
as not printed with the reason, so a supervisor reprints on purpose rather than the app printing
twice. A printer that is not ready (paper out, head open, unreachable) keeps the job ``pulled``
and it is retried, because nothing was sent.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from printers import (PrinterError, PrinterNotReady, PrinterUnreachable, StatusError,
                      printer_for_uri)

from ..api_client import ApiClient, ApiError, NotLoggedIn, Offline
from ..queue import CompletionQueue

log = logging.getLogger(__name__)
STATION_PULL = "station://"


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
                 printer_options: dict | None = None):
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
            printer = None
            try:
                printer = self._printer()
                status = printer.status()
                if not status.ready:
                    raise PrinterNotReady(status)
            except (PrinterError, OSError, ValueError) as exc:
                if printer is not None:
                    printer.close()
                codes = _codes(exc) if isinstance(exc, PrinterError) else ["not_configured"]
                self._set_state(False, codes, str(exc))
                return  # nothing was sent: keep the job pulled and retry on a later tick
            self.queue.label_state(job_id, "sending")
            try:
                printer.send(zpl.encode("utf-8"), job_id=str(job_id))
            except (PrinterError, OSError, ValueError) as exc:
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

