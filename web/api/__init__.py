"""HTTP API v1: one blueprint per resource, registered by ``register_api``."""
from flask import Flask, g

from ..auth import current_principal
from ..services.audit import Actor


def actor() -> Actor:
    """The acting user of this request, for audit rows."""
    p = current_principal()
    return Actor(p.id, p.username, getattr(g, "request_id", None)) if p else Actor(None, "anonymous")


def register_api(app: Flask) -> None:
    """Attach every API blueprint to the app."""
    from . import auth, backups, completions, firmware, health, labels, lots, products, stations
    for module in (auth, backups, completions, firmware, health, labels, lots, products,
                   stations):
        app.register_blueprint(module.bp)
