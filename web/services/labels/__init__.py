"""Label jobs: created with accepted completions, printed once per job, reprinted on purpose.

States: queued -> (waiting_printer <->) -> sent -> printed | failed. A job is marked ``sent`` and
committed *before* its bytes go to the printer (``commit_as_sent``, for the server's delivery and
for a station app's pull alike), so a crash mid-send can never print it twice: whatever
happened, a ``sent`` job is only printed again by an explicit reprint. Retries are
scheduled through the job's outbox message (durable, unlike countdown tasks in the broker).
"""
from __future__ import annotations

import logging

from sqlalchemy import insert, select, update

from printers import STATION_PULL
from queues import queue_for

from ...extensions import db
from ...logs import current_request_id
from ...models import Completion, LabelJob, Lot, Printer, Station, utcnow
from ...problems import Conflict, NotFound
from . import templates as tpl
from ..audit import WORKER, Actor, record, record_many
from ..outbox import done, enqueue, pending_keys, retry_in
from ..plumbing import page
from ..plant_time import plant_now
from ..stations import StationNotFound

log = logging.getLogger(__name__)

PRINT_TASK = "labels.print"
PRINT_QUEUE = queue_for(PRINT_TASK)
TERMINAL = ("sent", "printed", "failed")


class JobNotFound(NotFound, LookupError):
    """No label job with this id (or none of this station's, when ``station`` is named)."""

    def __init__(self, job_id: int, station: str | None = None):
        super().__init__(f"unknown label job {job_id}"
                         + ("" if station is None else f" for station {station!r}"))


class JobStateError(Conflict, ValueError):
    """The job's state does not allow this."""


def dedup_key(job_id: int) -> str:
    """The outbox key of a job's print message."""
    return f"label:{job_id}"


def printer_profile(uri: str) -> tpl.Profile:
    """The printer's profile (203 dpi and the template's size unless configured)."""
    p = db.session.scalar(select(Printer).where(Printer.uri == uri))
    if p is None:
        return tpl.Profile()
    return tpl.Profile(p.dpi, p.width_dots, p.length_dots, p.darkness)


def label_data(template_name: str, lot: Lot, serial: str | None,
               routing: tuple[str, ...] | None = None) -> dict:
    """The template variables for a lot (and unit), from the records, never from the client.

    ``routing``: the lot's step codes in order, when the caller has them (the worker keeps each
    revision's steps), so the lot's revision is not loaded again.
    """
    day = plant_now().strftime("%Y-%m-%d")  # the plant's date, not the server's
    # Whole values: the template's rule (label_templates.validate_data) fits them, for previews
    # and jobs alike.
    data = {"product_code": lot.product.code, "product_name": lot.product.name,
            "lot_no": lot.lot_no, "date": day}
    if template_name == "unit":
        data["serial"] = serial
    else:
        data["quantity"] = lot.qty_good
    if template_name == "lot":
        if routing is None:
            routing = tuple(s.code for s in sorted(lot.revision.steps, key=lambda s: s.seq))
        data["routing"] = " > ".join(routing)
    return data


_QUEUED_ACTION = {"first_print": "label.queued", "test": "label.test_print"}


class JobBatch:
    """Label jobs made in one transaction: each template read once, one INSERT for all of them.

    Jobs are plain rows (one Core INSERT ... RETURNING id), not ORM objects: the worker makes
    them for every labelled completion, and the unit of work costs more than the rows.
    """

    def __init__(self, actor: Actor = WORKER):
        self.actor = actor
        self.jobs: list[tuple[dict, object, str | None]] = []  # (row, template, request id)
        self._templates: dict[tuple, object] = {}
        self.font = tpl.label_font()

    def add(self, template_name: str, data: dict, printer_uri: str, *, lot_id=None,
            station_id=None, completion_id=None, unit_serial=None, copies: int = 1,
            reason: str = "first_print", reprint_reason=None, reprint_of=None,
            version: int | None = None, profile: tpl.Profile | None = None) -> dict:
        """Render one job; its row (``id`` set by ``queue``) is written by ``queue``."""
        key = (template_name, version)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = tpl.get_template(template_name, version)
        declared = {v["name"] for v in template.variables}
        data = {k: v for k, v in data.items() if k in declared}  # a template may use fewer
        zpl = tpl.render(template, data, profile or printer_profile(printer_uri), copies,
                         font=self.font)
        row = {"template_name": template.name, "template_version": template.version,
               "data": data, "zpl": zpl.decode("ascii"), "zpl_sha256": tpl.sha256(zpl),
               "printer_uri": printer_uri, "station_id": station_id, "lot_id": lot_id,
               "completion_id": completion_id, "unit_serial": unit_serial, "copies": copies,
               "reason": reason, "reprint_reason": reprint_reason, "reprint_of": reprint_of,
               "state": "queued", "attempts": 0, "created_by": self.actor.name,
               "created_at": utcnow()}
        # The request id current now (the worker binds each completion's while deciding it).
        self.jobs.append((row, template, current_request_id()))
        return row

    def queue(self) -> list[int]:
        """Insert the jobs (ids in order) and add each one's print message and audit event."""
        if not self.jobs:
            return []
        table = LabelJob.__table__
        ids = db.session.connection().execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [row for row, _, _ in self.jobs]).scalars().all()
        for (row, _, _), job_id in zip(self.jobs, ids):
            row["id"] = job_id
        # One delivery takes every pending job of its printer along, so when the caller
        # publishes these messages itself (outbox.claiming) only each printer's last one is sent,
        # and none while an earlier job of the printer is still queued (see delivery_ahead).
        first, last = {}, {}
        for row, _, _ in self.jobs:
            first.setdefault(row["printer_uri"], row["id"])
            last[row["printer_uri"]] = row["id"]
        ahead = {uri for uri, job_id in first.items()
                 if not uri.startswith(STATION_PULL) and delivery_ahead(uri, job_id)}
        for row, template, request_id in self.jobs:
            uri = row["printer_uri"]
            if not uri.startswith(STATION_PULL):  # station apps pull their jobs
                enqueue(PRINT_TASK, [row["id"]], PRINT_QUEUE, dedup_key(row["id"]),
                        publish=last[uri] == row["id"] and uri not in ahead,
                        request_id=request_id)
            record(self.actor, _QUEUED_ACTION.get(row["reason"], "label.reprint"), "label_job", row["id"], lot_id=row["lot_id"], after={
                       "template": f"{template.name}:{template.version}",
                       "printer": row["printer_uri"], "sha256": row["zpl_sha256"],
                       "serial": row["unit_serial"], "reason": row["reprint_reason"],
                       **({"shortened": notes} if (notes := tpl.shortened(template, row["data"]))
                          else {})})
        self.jobs = []
        return ids


def delivery_ahead(printer_uri: str, job_id: int) -> bool:
    """Whether an earlier job of the printer is still queued: its delivery will take this one.

    The earlier job's row is share-locked until this transaction commits, so the worker that
    delivers it cannot mark it sent before this job is committed; that worker looks for pending
    jobs again after each batch it sends (delivery._send_all) and so finds this one. If the job
    is being marked sent right now, the lock waits for that and the row then no longer
    qualifies: this job publishes its own message. Every job keeps its outbox row either way,
    so a lost delivery is still republished by the relay.
    """
    stmt = (select(LabelJob.id).where(LabelJob.printer_uri == printer_uri,
                                      LabelJob.state == "queued", LabelJob.id < job_id)
            .order_by(LabelJob.id).limit(1).with_for_update(read=True))
    # SQLite has no row locks, and needs none: its transactions begin IMMEDIATE (web/__init__),
    # so this one and a delivery's never overlap.
    return db.session.connection().execute(stmt).first() is not None


def create_job(template_name: str, data: dict, printer_uri: str, *, actor: Actor = WORKER,
               **options) -> LabelJob:
    """Render and store one job in the current transaction, with its print message."""
    batch = JobBatch(actor)
    batch.add(template_name, data, printer_uri, **options)
    job_id, = batch.queue()
    return db.session.get(LabelJob, job_id)


def jobs_for_completion(c: Completion, lot: Lot, station: Station, step, good: int,
                        profile: tpl.Profile | None = None,
                        batch: JobBatch | None = None,
                        routing: tuple[str, ...] | None = None) -> None:
    """Add the labels an accepted completion earns at a step that names a template.

    With ``batch`` the jobs are queued when the caller calls ``batch.queue()``.
    """
    name = step.label_template
    if not name or good <= 0:
        return
    if not station.printer_uri:
        record(WORKER, "label.skipped", "completion", c.id, lot_id=lot.id,
               after={"reason": f"station {station.code} has no printer"})
        return
    if name == "unit":
        if c.unit_serial:
            serials = [c.unit_serial]
        else:  # a lot-level completion labels the units that had not passed this step yet
            db.session.flush()  # decisions made earlier in this transaction count
            passed = set(db.session.scalars(select(Completion.unit_serial).where(
                Completion.lot_id == lot.id, Completion.step == c.step,
                Completion.status == "accepted", Completion.unit_serial.is_not(None))))
            serials = [u.serial for u in lot.units
                       if u.status == "ok" and u.serial not in passed][:good]
        if not serials:  # a unit label without a unit serial would be a wrong label
            record(WORKER, "label.skipped", "completion", c.id, lot_id=lot.id,
                   after={"reason": "unit label needs unit serials; the lot has none"})
            return
    else:
        serials = [None]
    own = batch is None
    batch = batch or JobBatch()
    for serial in serials:
        try:
            batch.add(name, label_data(name, lot, serial, routing), station.printer_key,
                      lot_id=lot.id,
                      station_id=station.id, completion_id=c.id, unit_serial=serial,
                      profile=profile)
        except tpl.TemplateError as exc:  # what a preview refuses (422) is never printed either
            record(WORKER, "label.skipped", "completion", c.id, lot_id=lot.id,
                   after={"reason": f"{exc.field}: {exc}", "serial": serial})
    if own:
        batch.queue()


def reschedule(job_id: int, seconds: float) -> None:
    """Publish the job's print message again after ``seconds`` (durably, via the outbox)."""
    retry_in([dedup_key(job_id)], seconds)


def reprint(job_id: int, reason: str, actor: Actor) -> LabelJob:
    """A new job with the same template version and data, linked to the original; audited."""
    original = get_job(job_id)
    job = create_job(original.template_name, original.data, original.printer_uri,
                     lot_id=original.lot_id, station_id=original.station_id,
                     completion_id=original.completion_id, unit_serial=original.unit_serial,
                     copies=original.copies, reason="reprint", reprint_reason=reason,
                     reprint_of=original.id, version=original.template_version, actor=actor)
    db.session.commit()
    return job


def ensure_print_messages() -> int:
    """Give every pending device job a print message again (self-healing for labels.retry)."""
    pending = db.session.scalars(select(LabelJob.id).where(
        LabelJob.state.in_(("queued", "waiting_printer")),
        ~LabelJob.printer_uri.startswith(STATION_PULL))).all()
    have = pending_keys([dedup_key(i) for i in pending])
    missing = [i for i in pending if dedup_key(i) not in have]
    for job_id in missing:
        enqueue(PRINT_TASK, [job_id], PRINT_QUEUE, dedup_key(job_id))
    db.session.commit()
    return len(missing)


def get_job(job_id: int) -> LabelJob:
    """The job with this id."""
    job = db.session.get(LabelJob, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(state: str | None, printer: str | None, lot_no: str | None, cursor, limit: int):
    """A page of jobs, newest first."""
    stmt = select(LabelJob)
    if state:
        stmt = stmt.where(LabelJob.state == state)
    if printer:
        stmt = stmt.where(LabelJob.printer_uri == printer)
    if lot_no:  # the lot's id first: its jobs then come in order from (lot_id, id)
        stmt = stmt.where(LabelJob.lot_id == select(Lot.id).where(
            Lot.lot_no == lot_no).scalar_subquery())
    return page(db.session, stmt, LabelJob.id, cursor, limit)


def next_for_station(code: str) -> LabelJob | None:
    """Hand the oldest queued job of a ``station://`` printer to its station app (marks it sent)."""
    station = db.session.scalar(select(Station).where(Station.code == code))
    if station is None:
        raise StationNotFound(code)
    stmt = (select(LabelJob).where(LabelJob.station_id == station.id,
                                   LabelJob.printer_uri.startswith(STATION_PULL),
                                   LabelJob.state.in_(("queued", "waiting_printer")))
            .order_by(LabelJob.id).limit(1))
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    job = db.session.scalar(stmt)
    if job is None:
        db.session.rollback()
        return None
    commit_as_sent([(job.id, job.lot_id, {"printer": job.printer_uri, "station": code})])
    return job  # expired by the commit: read again, as sent, when used


def commit_as_sent(sent: list[tuple[int, int | None, dict]], *,
                   messages: bool = False) -> dict[str, str | None]:
    """Mark jobs sent and commit, before any of their bytes go out: none is ever printed twice.

    ``sent``: (job id, lot id, its ``label.sent`` audit's ``after``) per job; one UPDATE and one
    audit INSERT for them all (plain statements: delivery marks batches of hundreds).
    ``messages``: also retire their print messages (device jobs; station jobs have none). From
    the commit on, a job is printed again only by an explicit reprint, whatever the send does.
    Returns the retired messages' request ids by key (for the delivery's log lines).
    """
    ids = [job_id for job_id, _, _ in sent]
    table = LabelJob.__table__
    db.session.connection().execute(update(table).where(table.c.id.in_(ids)).values(
        state="sent", sent_at=utcnow(), attempts=table.c.attempts + 1, printer_reason=None))
    record_many(WORKER, "label.sent", "label_job", sent)
    request_ids = done([dedup_key(i) for i in ids]) if messages else {}
    db.session.commit()
    return request_ids


def ack(code: str, job_id: int, printed: bool, printer_reason: str | None, actor: Actor):
    """The station reports what its printer did with a job it pulled."""
    job = db.session.get(LabelJob, job_id)
    station = db.session.scalar(select(Station).where(Station.code == code))
    if job is None or station is None or job.station_id != station.id:
        raise JobNotFound(job_id, code)
    if job.state != "sent":
        raise JobStateError(f"job {job_id} is {job.state}, not sent")
    job.state = "printed" if printed else "failed"
    job.printed_at = utcnow() if printed else None
    job.printer_reason = printer_reason
    record(actor, f"label.{job.state}", "label_job", job.id, lot_id=job.lot_id,
           after={"printer_reason": printer_reason})
    db.session.commit()
    return job


def job_dict(job: LabelJob, with_zpl: bool = False) -> dict:
    """A label job as the API shows it."""
    out = {"id": job.id, "state": job.state, "template": job.template_name,
           "template_version": job.template_version, "data": job.data,
           "zpl_sha256": job.zpl_sha256, "printer": job.printer_uri, "copies": job.copies,
           "reason": job.reason, "reprint_reason": job.reprint_reason,
           "reprint_of": job.reprint_of, "unit_serial": job.unit_serial,
           "completion_id": job.completion_id, "attempts": job.attempts,
           "printer_reason": job.printer_reason, "error": job.error,
           "created_at": job.created_at.isoformat(),
           "sent_at": job.sent_at.isoformat() if job.sent_at else None,
           "printed_at": job.printed_at.isoformat() if job.printed_at else None}
    if with_zpl:
        out["zpl"] = job.zpl
    return out


__all__ = ["JobBatch", "delivery_ahead", "create_job", "jobs_for_completion", "reprint", "get_job",
           "list_jobs", "next_for_station", "commit_as_sent", "ack", "job_dict", "reschedule",
           "printer_profile", "ensure_print_messages"]
