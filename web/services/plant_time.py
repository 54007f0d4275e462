"""Times shown to people: in the plant's time zone (PLANT_TIMEZONE), always with their offset.

Stored times and API JSON stay UTC (ISO 8601 with ``+00:00``); what a person reads - a CSV,
a CLI listing, the date on a label or in a lot number - is the plant's wall clock.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app


def plant_zone() -> ZoneInfo:
    """The plant's time zone (config: PLANT_TIMEZONE)."""
    return ZoneInfo(current_app.config["PLANT_TIMEZONE"])


def plant_now() -> datetime:
    """The current time on the plant's wall clock."""
    return datetime.now(plant_zone())


def shown(value: datetime | str | None, sep: str = " ", zone: ZoneInfo | None = None) -> str:
    """``value`` on the plant's clock with its offset (``2026-03-05 02:00:00+09:00``); '' if None.

    ``zone``: plant_zone(), when the caller already has it (a file of many times).
    """
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(zone or plant_zone()).isoformat(sep, "seconds")
