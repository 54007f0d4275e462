"""``neurohub relay``: publishes committed outbox messages to the broker."""
from __future__ import annotations

import logging
import signal

import click
from flask import current_app
from flask.cli import with_appcontext

log = logging.getLogger("neurohub.cli")


@click.command("relay")
@click.option("--once", is_flag=True, help="one pass, then exit")
@with_appcontext
def relay_cmd(once):
    """Publish committed outbox messages to the broker (runs until SIGTERM)."""
    from workers.broker import publisher, queue_depth
    from workers.signals import lower_priority
    from ..services.outbox.relay import Relay
    from ..metrics import core as metrics
    celery_app = current_app.extensions["celery"]
    lower_priority(current_app)
    metrics.start_process("relay")
    if not once:
        metrics.serve("relay", current_app.config)  # METRICS_PORT (9203 on one host)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    with publisher(celery_app) as publish:  # one producer for the relay's life
        relay = Relay(publish, lambda q: queue_depth(celery_app, q), current_app.config)
        log.info("outbox relay started (interval %.3fs, redispatch after %.0fs)",
                 relay.interval, relay.redispatch)
        relay.run(lambda: bool(stopping), once=once)
    log.info("outbox relay stopped")
