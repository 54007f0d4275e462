"""Delivering label jobs to printers: one writer per printer, in job order, never twice."""
from __future__ import annotations

import logging
from typing import Callable

from flask import current_app
from sqlalchemy import select, update

from printers import Printer, PrinterError, printer_for_uri

from ..extensions import db
from ..models import LabelJob, Printer as PrinterRow, utcnow
from .audit import WORKER, record
from .labels import TERMINAL, dedup_key, reschedule
from .locks import named_lock
from .outbox import done

log = logging.getLogger(__name__)
PRINTER_LOCK_NS = 7302


def printer_lock(uri: str):
    """Hold the printer's lock for this block; yields False when another worker holds it."""
    return named_lock(PRINTER_LOCK_NS, uri, "printer")


def _note_status(uri: str, status: str, reasons: list[str]) -> None:
    db.session.execute(update(PrinterRow).where(PrinterRow.uri == uri).values(
        status=status, status_reasons=reasons, checked_at=utcnow()))


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
    """Deliver this job and every earlier pending job of its printer; returns the job's state."""
    job = db.session.get(LabelJob, job_id)
    if job is None:
        db.session.rollback()
        return None
    if job.state in TERMINAL:
        done([dedup_key(job_id)])
        db.session.commit()
        return job.state
    uri = job.printer_uri
    db.session.rollback()
    with printer_lock(uri) as got:
        if not got:  # another worker is printing on it and will reach this job in order
            reschedule(job_id, 1.0)
            db.session.commit()
            return "busy"
        return _deliver(uri, job_id, open_printer)


def _deliver(uri: str, job_id: int, open_printer) -> str:
    jobs = list(db.session.scalars(select(LabelJob).where(
        LabelJob.printer_uri == uri, LabelJob.state.in_(("queued", "waiting_printer")),
        LabelJob.id <= job_id).order_by(LabelJob.id)))
    max_attempts = current_app.config["LABEL_MAX_ATTEMPTS"]
    try:
        printer = open_printer(uri)
    except ValueError as exc:  # a URI we cannot print to: no retry will help
        for j in jobs:
            _fail(j, str(exc))
        db.session.commit()
        return _state(job_id)
    try:
        try:
            status = printer.status()
        except PrinterError as exc:  # unreachable, or no/short answer to ~HS: a fault
            _note_status(uri, "offline", [type(exc).__name__])
            for j in jobs:
                j.attempts += 1
                j.printer_reason = f"{type(exc).__name__}: {exc}"[:200]
                if j.attempts >= max_attempts:
                    _fail(j, f"printer not reachable after {j.attempts} attempts: "
                             f"{type(exc).__name__}: {exc}")
                else:
                    reschedule(j.id, _backoff(j.attempts))
            db.session.commit()
            return _state(job_id)
        if not status.ready:
            reason = ",".join(status.reasons) or "not_ready"
            _note_status(uri, "not_ready", status.reasons)
            for j in jobs:
                if j.state != "waiting_printer" or j.printer_reason != reason:
                    record(WORKER, "label.waiting_printer", "label_job", j.id, lot_id=j.lot_id,
                           after={"reason": reason})
                j.state, j.printer_reason = "waiting_printer", reason
                reschedule(j.id, 5.0)  # an operator fixes paper or head; check again soon
            db.session.commit()
            return _state(job_id)
        _note_status(uri, "ready", [])
        _send_batch(printer, jobs)
        return _state(job_id)
    finally:
        printer.close()


def _send_batch(printer: Printer, jobs: list[LabelJob]) -> None:
    """Mark the jobs sent (committed), send them in order in one write, then confirm.

    Once committed as sent, a job is never sent again automatically: if the connection breaks
    during the write, a person decides from the printed labels what to reprint.
    """
    now = utcnow()
    for job in jobs:
        job.state, job.sent_at, job.attempts = "sent", now, job.attempts + 1
        job.printer_reason = None
        record(WORKER, "label.sent", "label_job", job.id, lot_id=job.lot_id,
               after={"printer": job.printer_uri, "sha256": job.zpl_sha256})
    done([dedup_key(job.id) for job in jobs])
    db.session.commit()  # from here on, never sent again automatically
    try:
        # One write for the batch: labels arrive in job order, and no other writer can
        # interleave on this connection (the printer lock keeps other workers out).
        printer.send(b"".join(job.zpl.encode("ascii") for job in jobs),
                     job_id=f"job-{jobs[0].id}")
        status = printer.status()
    except PrinterError as exc:
        for job in jobs:
            job.error = (f"{type(exc).__name__} during or after sending: {exc}. Not re-sent "
                         "automatically; reprint if no label came out")[:2000]
            record(WORKER, "label.send_error", "label_job", job.id, lot_id=job.lot_id,
                   after={"error": job.error[:200]})
        db.session.commit()
        return
    for job in jobs:
        if status.ready:
            job.state, job.printed_at = "printed", utcnow()
            record(WORKER, "label.printed", "label_job", job.id, lot_id=job.lot_id,
                   after={"printer": job.printer_uri})
        else:  # it got the bytes but reports a fault: a person must look at the labels
            job.printer_reason = ",".join(status.reasons)
    db.session.commit()


def _fail(job: LabelJob, error: str) -> None:
    job.state, job.error = "failed", error[:2000]
    done([dedup_key(job.id)])
    record(WORKER, "label.failed", "label_job", job.id, lot_id=job.lot_id,
           after={"error": error[:200]})


def _state(job_id: int) -> str:
    return db.session.scalar(select(LabelJob.state).where(LabelJob.id == job_id))
