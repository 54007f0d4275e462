"""outbox.sweep: the periodic backstop of the relay (beat, every few seconds)."""
from celery import current_app, shared_task
from flask import current_app as flask_app

from web.services.outbox import relay_batch
from web.services.periodic import single_run
from workers.broker import publisher, queue_depth


@shared_task(name="outbox.sweep", soft_time_limit=50, time_limit=60)
def sweep(max_batches: int = 20):
    """Publish outbox messages the relay has not (re)published; returns counts."""
    with single_run("outbox.sweep") as got:  # overlapping sweeps (two beats) take turns
        return _sweep(max_batches) if got else "skipped: locked"


def _sweep(max_batches: int) -> dict:
    totals = {"published": 0, "republished": 0, "deferred": 0, "dead": 0}
    with publisher(current_app) as publish:  # its producer goes back to the pool at the end
        for _ in range(max_batches):
            stats = relay_batch(publish, lambda q: queue_depth(current_app, q),
                                redispatch_after=flask_app.config["OUTBOX_REDISPATCH_SECONDS"],
                                window=flask_app.config["RELAY_QUEUE_WINDOW"])
            for k in totals:
                totals[k] += getattr(stats, k)
            if stats.errors or not (stats.published + stats.republished + stats.deferred
                                    + stats.dead):
                break
    return totals
