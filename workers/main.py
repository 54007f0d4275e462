"""Celery entry point: ``celery -A workers.main worker|beat|flower``."""
import sys

from web.metrics.core import worker_multiproc_dir

# Before the app imports prometheus_client: a worker's pool children write their metrics there.
worker_multiproc_dir(sys.argv)

from web import create_app  # noqa: E402

flask_app = create_app()
celery = app = flask_app.extensions["celery"]
