"""Celery entry point: ``celery -A workers.main worker|beat|flower``."""
from web import create_app

flask_app = create_app()
celery = app = flask_app.extensions["celery"]
