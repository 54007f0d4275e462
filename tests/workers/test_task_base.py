"""workers.celery_app: the task base runs every task in the Flask app context, reusing one that
is already pushed (a task called from app code sees that code's context and session)."""
from __future__ import annotations

from flask import current_app, g, has_app_context

from web.extensions import db


def _probe(app):
    """A task class of this app's Celery (not registered: it only exercises the base)."""
    seen = []

    def run(self, tag):
        seen.append({"tag": tag, "app": current_app._get_current_object(),
                     "marker": g.get("marker"), "session": db.session()})
        return tag
    probe = type("Probe", (app.extensions["celery"].Task,), {"name": "tests.probe", "run": run})
    return probe(), seen


def test_outside_an_app_context_a_task_runs_in_a_fresh_one_that_ends_with_it(app):
    task, seen = _probe(app)
    assert not has_app_context()
    assert task("alone") == "alone"
    assert seen[0]["app"] is app and seen[0]["marker"] is None
    assert not has_app_context()  # popped again: nothing leaks into the caller


def test_inside_an_app_context_the_task_reuses_it(app):
    task, seen = _probe(app)
    with app.app_context():
        g.marker = "caller's"
        session = db.session()
        assert task("nested") == "nested"
        assert seen[0]["marker"] == "caller's" and seen[0]["session"] is session
        assert g.marker == "caller's" and has_app_context()


def test_every_product_task_has_the_flask_base(app):
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    base = celery_app.Task.__mro__[1]  # celery_init_app's FlaskTask (app-bound subclass above it)
    assert base.__name__ == "FlaskTask"
    ours = [t for n, t in celery_app.tasks.items() if not n.startswith("celery.")]
    assert ours and all(isinstance(t, base) for t in ours)
