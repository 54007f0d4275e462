"""Periodic tasks: entry -> task name + interval or crontab, each ``expires`` before its next run.

Every entry can be overridden from the environment through its variable (``BACKUP_CRON`` ...):
five crontab fields (``0 2 * * *``, on the plant's clock: PLANT_TIMEZONE, Celery's ``timezone``), ``@hourly`` / ``@daily`` / ``@weekly`` / ``@monthly``,
``@every 10s`` (or ``90``, ``5m``, ``1h``: a fixed interval), or ``off`` to disable the entry.

Beat stamps every message with its *slot*: the scheduled time the run belongs to (an interval's
start counted from the epoch, or the crontab time at or before the send). Two beat processes, or a
beat restarted late, produce the same slot for the same run, so the task bodies can refuse a second
run of one slot. Task names are strings: nothing here imports app code.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Mapping
from zoneinfo import ZoneInfo

from celery.beat import BeatLazyFunc
from celery.schedules import crontab, schedstate
from celery.schedules import schedule as interval

from queues import QUEUES  # the worker queues: the canary runs on each

MAX_CRON_EXPIRES = 3600.0  # a nightly run that has waited an hour in the broker is dropped
_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"^(?:@every\s+)?(\d+(?:\.\d+)?)\s*([smhd]?)$")


@dataclass(frozen=True)
class Entry:
    """One periodic task: what to send, when, and the variable that overrides when."""

    task: str
    when: str
    override: str | None = None
    args: tuple = ()
    queue: str | None = None  # None: the route of the task name decides
    slot: bool = True  # pass slot=<ISO time> so the body can run once per scheduled slot


def _canaries() -> dict[str, Entry]:
    return {f"workers-canary-{q}": Entry("workers.canary", "@every 60s", "CANARY_CRON",
                                         args=(q,), queue=q) for q in QUEUES}


SCHEDULE: dict[str, Entry] = {
    "outbox-sweep": Entry("outbox.sweep", "@every 5s", "OUTBOX_SWEEP_CRON", slot=False),
    "labels-retry": Entry("labels.retry", "@every 60s", "LABELS_RETRY_CRON", slot=False),
    "stations-check-heartbeats": Entry("stations.check_heartbeats", "@every 60s",
                                       "STATION_CHECK_CRON"),
    **_canaries(),
    "beat-heartbeat": Entry("beat.heartbeat", "@every 60s", "BEAT_HEARTBEAT_CRON"),
    "backups-snapshot": Entry("backups.snapshot", "0 2 * * *", "BACKUP_CRON"),
    "storage-apply-lifecycle": Entry("storage.apply_lifecycle", "30 3 * * *", "LIFECYCLE_CRON"),
    "backups-restore-drill": Entry("backups.restore_drill", "0 4 * * 0", "RESTORE_DRILL_CRON"),
}


class ScheduleError(ValueError):
    """An override that is neither crontab fields, an alias, an interval nor ``off``."""


def parse_when(text: str) -> float | crontab | None:
    """Seconds (an interval), a crontab, or None for ``off``."""
    value = text.strip().lower()
    if value in ("off", "disabled", "none"):
        return None
    value = _ALIASES.get(value, value)
    m = _EVERY.match(value)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        if seconds <= 0:
            raise ScheduleError(f"interval must be positive: {text!r}")
        return seconds
    fields = value.split()
    if len(fields) != 5:
        raise ScheduleError(f"not a schedule: {text!r} (want 5 crontab fields, @daily, "
                            "@every 10s or off)")
    minute, hour, dom, month, dow = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                       day_of_week=dow)
    except ValueError as exc:
        raise ScheduleError(f"bad crontab {text!r}: {exc}") from None


class aligned(interval):
    """An interval that runs at the multiples of its period since the epoch (10 s: :00, :10 ...).

    Celery's plain interval runs ``period`` after the last send, so its sends drift and one can
    land a few ms before a boundary: that send named the slot before it (``slot_of`` floors the
    send time), which doubled one slot and skipped the next. Here a run is due only once the
    clock has crossed into a slot the last run was not in, so each send names its own slot.
    """

    def _edges(self, last_run_at: datetime) -> tuple[float, float, float]:
        period = self.run_every.total_seconds()
        now = self.maybe_make_aware(self.now()).timestamp()
        return period, now, self.maybe_make_aware(last_run_at).timestamp()

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when ``now`` is in a later slot than the last run; next check at the next edge."""
        period, now, last = self._edges(last_run_at)
        to_next_edge = period - now % period
        return schedstate(is_due=now // period > last // period, next=to_next_edge)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time until the slot after the last run's begins (what Flower and `beat -l` show)."""
        period, now, last = self._edges(last_run_at)
        return timedelta(seconds=max(0.0, (last // period + 1) * period - now))


def _matches(c: crontab, t: datetime) -> bool:
    return (t.minute in c.minute and t.hour in c.hour and t.day in c.day_of_month
            and t.month in c.month_of_year and t.isoweekday() % 7 in c.day_of_week)


def _zone(tz: tzinfo | str | None) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else (tz or timezone.utc)


def cron_slot(c: crontab, at: datetime, horizon_days: int = 366,
              tz: tzinfo | str | None = None) -> datetime:
    """The latest time matching the crontab on ``tz``'s clock at or before ``at`` (in UTC)."""
    zone = _zone(tz)
    t = at.astimezone(timezone.utc).replace(second=0, microsecond=0)
    for _ in range(horizon_days * 1440):
        # Stepping in UTC and reading the wall clock each minute stays right across DST.
        if _matches(c, t.astimezone(zone)):
            return t
        t -= timedelta(minutes=1)
    raise ScheduleError(f"crontab {c} has no time in the last {horizon_days} days")


def period_of(when: float | crontab | interval) -> float:
    """Seconds between runs (for a crontab: the shortest gap within the next two weeks)."""
    if isinstance(when, interval):
        return when.run_every.total_seconds()
    if not isinstance(when, crontab):
        return float(when)
    t = datetime(2026, 1, 4, tzinfo=timezone.utc)  # a Sunday; any fixed start will do
    last, gap = None, None
    for _ in range(14 * 1440):
        if _matches(when, t):
            if last is not None:
                d = (t - last).total_seconds()
                gap = d if gap is None else min(gap, d)
            last = t
        t += timedelta(minutes=1)
    return gap or 366 * 86400.0


def slot_of(when: float | crontab, at: datetime | None = None,
            tz: tzinfo | str | None = None) -> datetime:
    """The scheduled slot a run at ``at`` belongs to (interval start or crontab time, in UTC)."""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if isinstance(when, crontab):
        return cron_slot(when, at, tz=tz)
    period = float(when)
    start = (at.timestamp() // period) * period
    return datetime.fromtimestamp(start, tz=timezone.utc)


def current_slot(when: float | crontab, tz: str | None = None) -> str:
    """The slot of a run sent now, as an ISO string (evaluated by beat at every send)."""
    return slot_of(when, tz=tz).isoformat()


def beat_identity() -> str:
    """host:pid of the beat process sending (to notice a second beat)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def resolve(name: str, environ: Mapping[str, str] | None = None) -> float | crontab | None:
    """The effective schedule of an entry: its override from the environment, else its default."""
    env = os.environ if environ is None else environ
    entry = SCHEDULE[name]
    raw = env.get(entry.override) if entry.override else None
    return parse_when(raw if raw not in (None, "") else entry.when)


def expires_for(when: float | crontab) -> float:
    """Seconds a sent run may wait in the broker: always shorter than the period."""
    period = period_of(when)
    if isinstance(when, crontab):
        return min(MAX_CRON_EXPIRES, period * 0.8)
    return period * 0.8


def build_schedule(environ: Mapping[str, str] | None = None, tz: str | None = None) -> dict:
    """Celery's ``beat_schedule`` from SCHEDULE and the overrides; crontabs on ``tz``'s clock.

    ``tz`` must be the Celery app's ``timezone`` (which makes beat fire the crontabs on that
    clock); the slots are computed on the same clock.
    """
    out = {}
    for name, entry in SCHEDULE.items():
        when = resolve(name, environ)
        if when is None:
            continue
        schedule = when if isinstance(when, crontab) else aligned(timedelta(seconds=when))
        options: dict = {"expires": expires_for(when)}  # a stale run is dropped, never piled up
        if entry.queue:
            options["queue"] = entry.queue
        kwargs: dict = {}
        if entry.slot:
            kwargs["slot"] = BeatLazyFunc(current_slot, when, tz)
        if entry.task == "beat.heartbeat":
            kwargs["beat_id"] = BeatLazyFunc(beat_identity)
        out[name] = {"task": entry.task, "schedule": schedule, "args": entry.args,
                     "kwargs": kwargs, "options": options}
    return out
