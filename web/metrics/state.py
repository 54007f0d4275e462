"""What the web's ``/metrics`` reads at scrape time: the state the database and broker hold.

Every web instance answers the same values (alert rules take ``max()``). Every query reads an
index or a table that holds only current work (the outbox, stations, live firmware assignments,
backups), never a scan of the history (tests/web/api/test_read_plans.py plans them on a filled
database). A part that fails (the broker down) is left out of the answer and logged; the rest is
still served.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from flask import current_app
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from queues import QUEUES

from ..extensions import db
from ..models import (LABEL_JOB_STATES, LIVE_ASSIGNMENT_STATES, Backup, FirmwareAssignment,
                      LabelJob, Lot, Station, utcnow)
from ..services import outbox as box

log = logging.getLogger(__name__)

# Label jobs still on their way; the ended ones (sent, printed, failed) are counted as they end
# (neurohub_label_prints_total), never counted over the whole table.
OPEN_LABEL_STATES = tuple(s for s in LABEL_JOB_STATES if s not in ("sent", "printed", "failed"))
WIP_STATUSES = ("created", "in_process", "on_hold")


def _gauge(name: str, doc: str, labels=()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _outbox_tasks() -> tuple[str, ...]:
    """The tasks the services send through the outbox (each domain names its own)."""
    from ..services.backups import SNAPSHOT_TASK
    from ..services.backups.lifecycle import LIFECYCLE_TASK
    from ..services.backups.restore import DRILL_TASK
    from ..services.backups.verify import VERIFY_TASK
    from ..services.completions import COMPLETION_TASK
    from ..services.firmware import DISTRIBUTE_TASK
    from ..services.labels import PRINT_TASK
    return (COMPLETION_TASK, PRINT_TASK, DISTRIBUTE_TASK, SNAPSHOT_TASK, VERIFY_TASK, DRILL_TASK,
            LIFECYCLE_TASK)


def outbox(now) -> list:
    """Pending outbox messages by task, and how long the oldest due one has waited."""
    pending = _gauge("neurohub_outbox_pending", "Outbox messages not yet done, by task", ["task"])
    # Every task the product sends through the outbox has a series, 0 when none waits: an empty
    # outbox reads as 0 on the dashboards, not as "no data".
    counts = dict.fromkeys(_outbox_tasks(), 0) | dict(box.pending_by_task())
    for task, n in sorted(counts.items()):
        pending.add_metric([task], n)
    oldest = box.oldest_due(now)
    age = _gauge("neurohub_outbox_oldest_age_seconds",
                 "Seconds the oldest due outbox message has waited to be published (0: none)")
    age.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    return [pending, age]


def queue_lengths() -> list:
    """Messages waiting in each broker queue (Redis LLEN; the embedded broker's count)."""
    from kombu.exceptions import ChannelError
    celery_app = current_app.extensions["celery"]
    gauge = _gauge("neurohub_celery_queue_length", "Messages waiting in the broker queue",
                   ["queue"])
    with celery_app.pool.acquire(block=True, timeout=3) as conn:
        for queue in QUEUES:
            try:
                n = conn.default_channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # never declared (no worker yet): nothing waits in it
                n = 0
            gauge.add_metric([queue], n)
    return [gauge]


def _counts(name: str, doc: str, label: str, column, states: tuple[str, ...]) -> GaugeMetricFamily:
    """One gauge per state (0 included) of the rows of ``column``'s table in ``states``."""
    found = dict(db.session.execute(select(column, func.count()).where(column.in_(states))
                                    .group_by(column)).all())
    gauge = _gauge(name, doc, [label])
    for s in states:
        gauge.add_metric([s], found.get(s, 0))
    return gauge


def jobs_and_firmware() -> list:
    """Label jobs not yet ended, and live firmware assignments, by state."""
    return [_counts("neurohub_label_jobs", "Label jobs on their way, by state", "state",
                    LabelJob.state, OPEN_LABEL_STATES),
            _counts("neurohub_firmware_assignments", "Live firmware assignments by state",
                    "state", FirmwareAssignment.state, LIVE_ASSIGNMENT_STATES)]


def backups() -> list:
    """The last verified backup's time, and the last restore drill's result and time."""
    b = Backup
    verified = db.session.scalar(select(func.max(b.verified_at)).where(
        b.state == "done", b.verified_at.is_not(None), b.expired_at.is_(None)))
    last = _gauge("neurohub_backup_last_verified_timestamp_seconds",
                  "Unix time the newest stored backup was verified (0: none)")
    last.add_metric([], verified.timestamp() if verified else 0.0)
    out = [last]
    drill = db.session.execute(select(b.drill_result, b.drill_at).where(b.drill_at.is_not(None))
                               .order_by(b.drill_at.desc()).limit(1)).first()
    if drill is not None:  # absent until the first drill, so "never ran" is not "failed"
        ok = _gauge("neurohub_restore_drill_last_success", "1 when the last restore drill passed")
        ok.add_metric([], 1.0 if drill.drill_result == "passed" else 0.0)
        at = _gauge("neurohub_restore_drill_last_timestamp_seconds",
                    "Unix time of the last restore drill")
        at.add_metric([], drill.drill_at.timestamp())
        out += [ok, at]
    return out


def stations(now) -> list:
    """Each active station's heartbeat age and the completions it holds offline."""
    age = _gauge("neurohub_station_heartbeat_age_seconds", "Seconds since the station's last "
                 "heartbeat (stations that never sent one are left out)", ["station"])
    depth = _gauge("neurohub_station_offline_queue_depth", "Completions the station holds, not "
                   "yet delivered, as its last heartbeat reported", ["station"])
    s = Station
    for code, at, info in db.session.execute(
            select(s.code, s.last_heartbeat_at, s.last_heartbeat_info).where(s.active)):
        if at is None:
            continue
        age.add_metric([code], max((now - at).total_seconds(), 0.0))
        info = info or {}
        queued = info.get("offline_queue", info.get("queued"))  # `queued`: older station apps
        if isinstance(queued, int) and not isinstance(queued, bool):
            depth.add_metric([code], queued)
    return [age, depth]


def wip() -> list:
    """Open lots by their current step and status."""
    gauge = _gauge("neurohub_lots", "Open lots (work in progress) by current step and status",
                   ["step", "status"])
    for step, status, n in db.session.execute(
            select(Lot.current_step, Lot.status, func.count())
            .where(Lot.status.in_(WIP_STATUSES)).group_by(Lot.current_step, Lot.status)):
        gauge.add_metric([step or "", status], n)
    return [gauge]


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (a folder made on first use)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def storage(cfg) -> list:
    """Free and total bytes of the file systems of the local stores and the data folder."""
    free = _gauge("neurohub_storage_free_bytes", "Free bytes where the store lives", ["area"])
    size = _gauge("neurohub_storage_size_bytes", "Size of the file system of the store", ["area"])
    areas = {"data": cfg["NEUROHUB_DATA_DIR"]}
    if not cfg.get("USE_S3"):  # in S3 there is no disk of ours to fill
        areas.update(firmware=cfg["FIRMWARE_DIR"], backups=cfg["BACKUP_DIR"])
    for area, path in areas.items():
        usage = shutil.disk_usage(_existing(Path(path)))
        free.add_metric([area], usage.free)
        size.add_metric([area], usage.total)
    return [free, size]


class StateCollector:
    """A prometheus_client collector of the state above, read once per scrape."""

    def __init__(self, cfg):
        self.cfg = cfg

    def collect(self):
        """Every part that answers; a failing one is logged and left out. Once the database
        could not be reached, its other parts are skipped: each would wait its connect timeout
        again, past the scrape's."""
        from sqlalchemy.exc import OperationalError
        now = utcnow()
        parts = [("outbox", lambda: outbox(now), True), ("queues", queue_lengths, False),
                 ("jobs", jobs_and_firmware, True), ("backups", backups, True),
                 ("stations", lambda: stations(now), True), ("wip", wip, True),
                 ("storage", lambda: storage(self.cfg), False)]
        db_down = False
        try:
            for name, part, uses_db in parts:
                if uses_db and db_down:
                    continue
                try:
                    yield from part()
                except Exception as exc:  # one part down must not hide the others
                    db.session.rollback()
                    db_down = db_down or (uses_db and isinstance(exc, OperationalError))
                    log.warning("metrics: %s unavailable: %s: %s", name, type(exc).__name__, exc)
        finally:
            db.session.rollback()  # read only: end the transaction the queries opened
