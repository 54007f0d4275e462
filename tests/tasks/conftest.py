"""The task bodies are called in-process, inside the test's app context (``db`` pushes it), on
the real PostgreSQL and Redis; the pipeline through real workers is tests/pipeline's."""
from __future__ import annotations

import uuid

import pytest

from web.services import completions
from web.services.audit import Actor


@pytest.fixture(autouse=True)
def celery_app(app):
    """This app's Celery app, made the current one that ``shared_task`` and ``current_app``
    name (a test that created an app of its own in this process made that one current)."""
    celery_app = app.extensions["celery"]
    celery_app.set_current()
    return celery_app


def submit(factory, lot: str, step: str, station: str, **body) -> int:
    """A received completion (as POSTed) by a fresh operator; its id."""
    uid, name = factory.user("operator")
    return completions.submit({"lot_no": lot, "step": step, "station": station, **body},
                              uuid.uuid4().hex, Actor(uid, name)).id
