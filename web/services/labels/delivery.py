"""Delivering label jobs to printers: one writer per printer, in job order, never twice."""
from __future__ import annotations

import logging
import time
from typing import Callable

from flask import current_app
from sqlalchemy import select, update

from printers import (Printer, PrinterError, PrinterNotReady, ensure_font, printer_for_uri,
                      ready_or_raise)

from ...extensions import db
from ...logs import current_request_id
from ...metrics import instruments as metrics
from ...models import LabelJob, Printer as PrinterRow, utcnow
from ..audit import WORKER, record, record_many
from .templates import label_font
from . import TERMINAL, commit_as_sent, dedup_key, reschedule
from ..plumbing import named_lock
from ..outbox import done

log = logging.getLogger(__name__)
PRINTER_LOCK_NS = 7302


def printer_lock(uri: str):
    """Hold the printer's lock for this block; yields False when another worker holds it."""
    return named_lock(PRINTER_LOCK_NS, uri, "printer")


# Plain rows and Core statements on the session's connection, not ORM objects: a batch is
# updated with one statement per state change, nothing is lazily reloaded after the commits that
# bracket the send, and the ORM layer would cost more CPU than the statements themselves.
_JOBS, _PRINTERS = LabelJob.__table__, PrinterRow.__table__


def _run(stmt):
    return db.session.connection().execute(stmt)


def _note_status(uri: str, status: str, reasons: list[str]) -> str:
    """Record what the printer said; returns it as ok | paper_out | head_open | offline."""
    _run(update(_PRINTERS).where(_PRINTERS.c.uri == uri).values(
        status=status, status_reasons=reasons, checked_at=utcnow()))
    return metrics.printer_status(uri, status, reasons)


# tcp:// URI -> the label font path this process saw on it (or sent to it). A printer keeps
# its E: flash across power cycles, so it is asked (^HW) once per process, and again after any
# error talking to it (it may have been swapped for one without the font).
_FONT_ON: dict[str, str] = {}


def ensure_label_font(printer: Printer, uri: str) -> bool:
    """Download the label font to the printer unless it has it; True when it was sent now."""
    font = label_font()
    if _FONT_ON.get(uri) == font.path:
        return False
    sent = ensure_font(printer, font)  # ~1 MB once, not per label: every label names it (^CW)
    if sent:
        log.info("label font %s (%s, %d bytes) sent to %s", font.path, font.source,
                 len(font.data), uri)
    if uri.startswith("tcp://"):  # asking a file or in-process printer costs nothing
        _FONT_ON[uri] = font.path
    return sent


def _backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), 30))


def open_printer(uri: str) -> Printer:
    """The backend for a printer URI, with the configured network timeouts for tcp://."""
    if uri.startswith("tcp://"):
        cfg = current_app.config
        return printer_for_uri(uri, connect_timeout=cfg["PRINTER_CONNECT_TIMEOUT"],
                               status_timeout=cfg["PRINTER_STATUS_TIMEOUT"])
    return printer_for_uri(uri)


def print_job(job_id: int, open_printer: Callable[[str], Printer] = open_printer) -> str | None:
    """Deliver this job and every other pending job of its printer; returns the job's state."""
    row = _run(select(_JOBS.c.state, _JOBS.c.printer_uri).where(_JOBS.c.id == job_id)).first()
    if row is None:
        db.session.rollback()
        return None
    if row.state in TERMINAL:  # an earlier batch took it along (or a redelivery)
        done([dedup_key(job_id)])
        db.session.commit()
        return row.state
    db.session.rollback()
    with printer_lock(row.printer_uri) as got:
        if not got:  # another worker is printing on it and will take this job along in order
            reschedule(job_id, 1.0)
            db.session.commit()
            metrics.label_prints("busy")
            return "busy"
        return _deliver(row.printer_uri, job_id, open_printer)


_JOB_COLUMNS = (_JOBS.c.id, _JOBS.c.zpl, _JOBS.c.zpl_sha256, _JOBS.c.lot_id, _JOBS.c.printer_uri,
                _JOBS.c.state, _JOBS.c.attempts, _JOBS.c.printer_reason)
BATCH = 200  # jobs per write: a backlog drains in a few batches, each committed as sent first


def _set(ids: list[int], **values) -> None:
    _run(update(_JOBS).where(_JOBS.c.id.in_(ids)).values(**values))


def _pending(uri: str) -> list:
    return _run(select(*_JOB_COLUMNS).where(
        _JOBS.c.printer_uri == uri, _JOBS.c.state.in_(("queued", "waiting_printer")))
        .order_by(_JOBS.c.id).limit(BATCH)).all()


DELIVERY_SECONDS = 20.0  # one task's delivery loop, well inside its 60 s soft time limit


def _deliver(uri: str, job_id: int, open_printer) -> str:
    # Every pending job of the printer, in id order (not only up to job_id): the messages of
    # the later ones then find them printed and cost almost nothing.
    jobs = _pending(uri)
    if not jobs:
        db.session.commit()
        return _state(job_id)
    handled = {j.id for j in jobs}
    try:
        printer = open_printer(uri)
    except ValueError as exc:  # a URI we cannot print to: no retry will help
        for j in jobs:
            _fail(j, str(exc))
        db.session.commit()
        metrics.label_prints("error", len(jobs))
        _wake_newcomers(uri, handled, 0.0)
        return _state(job_id)
    try:
        try:
            ready_or_raise(printer)
            ensure_label_font(printer, uri)
        except PrinterNotReady as exc:
            _wait_for_printer(uri, jobs, exc.status.reasons)
            _wake_newcomers(uri, handled, 5.0)
            return _state(job_id)
        except PrinterError as exc:  # unreachable, no/short answer to ~HS or ^HW: a fault
            _retry_later(uri, jobs, exc)
            _wake_newcomers(uri, handled, _backoff(1))
            return _state(job_id)
        return _send_all(printer, uri, job_id, jobs)
    finally:
        printer.close()


def _wait_for_printer(uri: str, jobs: list, reasons: list[str]) -> None:
    """The printer answered but cannot print (paper, head, pause): nothing sent, look again soon."""
    reason = ",".join(reasons) or "not_ready"
    state = _note_status(uri, "not_ready", reasons)
    changed = [j for j in jobs if j.state != "waiting_printer" or j.printer_reason != reason]
    record_many(WORKER, "label.waiting_printer", "label_job",
                [(j.id, j.lot_id, {"reason": reason}) for j in changed])
    _set([j.id for j in jobs], state="waiting_printer", printer_reason=reason)
    for j in jobs:
        reschedule(j.id, 5.0)  # an operator fixes paper or head; check again soon
    db.session.commit()
    metrics.label_prints(state, len(jobs))


def _retry_later(uri: str, jobs: list, exc: PrinterError) -> None:
    """The printer did not answer (in full): nothing sent; back off, or fail after the last try."""
    _FONT_ON.pop(uri, None)
    _note_status(uri, "offline", [type(exc).__name__])
    reason = f"{type(exc).__name__}: {exc}"[:200]
    _set([j.id for j in jobs], attempts=_JOBS.c.attempts + 1, printer_reason=reason)
    max_attempts = current_app.config["LABEL_MAX_ATTEMPTS"]
    for j in jobs:
        attempts = j.attempts + 1
        if attempts >= max_attempts:
            _fail(j, f"printer not reachable after {attempts} attempts: "
                     f"{type(exc).__name__}: {exc}")
        else:
            reschedule(j.id, _backoff(attempts))
    db.session.commit()
    metrics.label_prints("offline", len(jobs))


def _send_all(printer: Printer, uri: str, job_id: int, jobs: list) -> str:
    """Send the ready printer its pending jobs, batch by batch; returns the job's state."""
    state, deadline = None, time.monotonic() + DELIVERY_SECONDS
    while True:  # a backlog goes out in batches, each committed as sent before its write
        ok = _send_batch(printer, uri, jobs)
        if ok and any(j.id == job_id for j in jobs):
            state = "printed"
        if not ok:  # a person must look at the printer: later jobs retry on their own
            _wake_newcomers(uri, set(), 5.0)
            return state or _state(job_id)
        # Always look again: jobs queued meanwhile published no message of their own while
        # these were queued (labels.delivery_ahead); this delivery is theirs.
        if (jobs := _pending(uri)) and time.monotonic() > deadline:
            reschedule(jobs[0].id, 0.0)  # a steady stream: hand it on to a new message
            jobs = []
        if not jobs:
            db.session.commit()
            return state or _state(job_id)


def _wake_newcomers(uri: str, handled: set[int], seconds: float) -> None:
    """Make sure a pending job this delivery did not handle has a message due in ``seconds``.

    Such a job may have been queued behind one of ours without a message of its own.
    """
    ids = [j.id for j in _pending(uri) if j.id not in handled]
    if ids:
        reschedule(ids[0], seconds)  # its delivery takes the later ones along
    db.session.commit()


def _send_batch(printer: Printer, uri: str, jobs: list) -> bool:
    """Mark the jobs sent (committed), send them in order in one write, then confirm.

    Returns whether the printer took them and is still ready.

    Once committed as sent, a job is never sent again automatically: if the connection breaks
    during the write, a person decides from the printed labels what to reprint.
    """
    ids = [j.id for j in jobs]
    _note_status(uri, "ready", [])
    request_ids = commit_as_sent(  # from here on, never sent again automatically
        [(j.id, j.lot_id, {"printer": uri, "sha256": j.zpl_sha256}) for j in jobs], messages=True)
    try:
        # One write for the batch: labels arrive in job order, and no other writer can
        # interleave on this connection (the printer lock keeps other workers out).
        printer.send(b"".join(j.zpl.encode("ascii") for j in jobs), job_id=f"job-{ids[0]}")
        status = printer.status()
    except PrinterError as exc:
        _FONT_ON.pop(uri, None)
        error = (f"{type(exc).__name__} during or after sending: {exc}. Not re-sent "
                 "automatically; reprint if no label came out")[:2000]
        _set(ids, error=error)
        record_many(WORKER, "label.send_error", "label_job",
                    [(j.id, j.lot_id, {"error": error[:200]}) for j in jobs])
        db.session.commit()
        metrics.label_prints("error", len(ids))
        return False
    if status.ready:
        _set(ids, state="printed", printed_at=utcnow())
        record_many(WORKER, "label.printed", "label_job",
                    [(j.id, j.lot_id, {"printer": uri}) for j in jobs])
    else:  # it got the bytes but reports a fault: a person must look at the labels
        _set(ids, printer_reason=",".join(status.reasons))
    db.session.commit()
    if status.ready:
        _log_printed(uri, jobs, request_ids)
    # Printed, or the fault the printer reported right after taking them.
    result = "printed" if status.ready else metrics.printer_status(uri, "not_ready", status.reasons)
    metrics.label_prints(result, len(ids))
    return status.ready


def _log_printed(uri: str, jobs: list, request_ids: dict) -> None:
    """One line per printed label, under the request id its job's message had (a batch holds
    jobs of many requests), after the commit: the line says what the records say."""
    current = current_request_id()
    for j in jobs:
        log.info("label job %s printed on %s", j.id, uri,
                 extra={"request_id": request_ids.get(dedup_key(j.id)) or current})


def _fail(job, error: str) -> None:
    _set([job.id], state="failed", error=error[:2000])
    done([dedup_key(job.id)])
    record(WORKER, "label.failed", "label_job", job.id, lot_id=job.lot_id,
           after={"error": error[:200]})


def _state(job_id: int) -> str:
    return _run(select(_JOBS.c.state).where(_JOBS.c.id == job_id)).scalar()
