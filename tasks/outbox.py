"""outbox.sweep: the periodic backstop of the relay (beat, every few seconds)."""
from celery import shared_task
from flask import current_app as flask_app

from web.services.outbox.relay import Relay
from web.services.periodic import single_run


@shared_task(name="outbox.sweep", bind=True, soft_time_limit=50, time_limit=60)
def sweep(self, max_batches: int = 20):
    """Publish outbox messages the relay has not (re)published; returns counts."""
    with single_run("outbox.sweep") as got:  # overlapping sweeps (two beats) take turns
        if not got:
            return "skipped: locked"
        with self.relaying() as (publish, depth):  # its producer goes back to the pool at the end
            return Relay(publish, depth, flask_app.config).drain(max_batches)
