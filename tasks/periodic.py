"""workers.canary, beat.heartbeat, stations.check_heartbeats: the minute-by-minute checks."""
from celery import shared_task
from flask import current_app

from web.services import periodic


@shared_task(name="workers.canary", soft_time_limit=20, time_limit=30)
def canary(queue: str = "default", slot: str | None = None):
    """A real round trip through ``queue``: its arrival is recorded as the queue's last success."""
    return periodic.canary(queue, slot)


@shared_task(name="beat.heartbeat", soft_time_limit=20, time_limit=30)
def beat_heartbeat(slot: str | None = None, beat_id: str | None = None):
    """Beat is alive (and which beat processes are: there must be exactly one)."""
    return periodic.beat_heartbeat(slot, beat_id)


@shared_task(name="stations.check_heartbeats", soft_time_limit=30, time_limit=45)
def check_heartbeats(slot: str | None = None):
    """Stations silent for STATION_OFFLINE_MINUTES are marked offline (audited transitions)."""
    return periodic.check_station_heartbeats(slot, current_app.config["STATION_OFFLINE_MINUTES"])
