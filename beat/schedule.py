"""Periodic tasks: entry -> task name + interval or crontab, each ``expires`` before its next run.

Cron entries can be overridden from the environment (``<NAME>_CRON``, five crontab fields).
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Mapping

from celery.schedules import crontab

# name: (task, seconds between runs | crontab fields, cron override variable or None)
SCHEDULE: dict[str, tuple[str, float | str, str | None]] = {
    "outbox-sweep": ("outbox.sweep", 5.0, None),
    "labels-retry": ("labels.retry", 60.0, None),
}


def _crontab(fields: str) -> crontab:
    minute, hour, dom, month, dow = fields.split()
    return crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                   day_of_week=dow)


def build_schedule(environ: Mapping[str, str] | None = None) -> dict:
    """Celery's ``beat_schedule`` built from SCHEDULE and the environment overrides."""
    env = os.environ if environ is None else environ
    out = {}
    for name, (task, when, override) in SCHEDULE.items():
        if isinstance(when, str) or (override and env.get(override)):
            fields = env.get(override) if override and env.get(override) else when
            schedule = _crontab(fields)
            expires = 3600.0
        else:
            schedule = timedelta(seconds=when)
            expires = max(when * 0.8, 1.0)  # a stale run is dropped, never piled up
        out[name] = {"task": task, "schedule": schedule, "options": {"expires": expires}}
    return out
