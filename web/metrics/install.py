"""Wiring metrics into the app: ``init_app`` is called by ``create_app`` in every process."""
from __future__ import annotations

import sys

from flask import Flask

from . import core


def init_app(app: Flask) -> None:
    """METRICS_ENABLED; when on: the pool gauge's listeners, the request hooks, GET /metrics.

    Every process builds the app, the workers and relay too: hooks and route cost nothing where
    no request comes, and the pool gauge counts only once the process has taken a role.
    """
    if not core.configure(app.config):
        return
    from ..extensions import db
    from . import instruments
    from .endpoint import bp
    from .http import install_hooks
    with app.app_context():
        instruments.POOL.attach(db.engine)
    install_hooks(app)
    app.register_blueprint(bp)
    if "gunicorn" in sys.modules:  # built in a gunicorn worker, whatever its -c: the web
        core.start_process("web")
