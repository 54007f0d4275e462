"""Liveness and readiness probes (no token needed)."""
import logging

from flask import Blueprint, current_app
from sqlalchemy import text

from ..extensions import db
from ..openapi import spec

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@spec(tags=["health"], public=True)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@spec(tags=["health"], public=True)
def readyz():
    """Database and broker are reachable (503 otherwise)."""
    from workers.broker import ping_broker  # the Celery app is attached by the factory
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready", reported, never a 500
        db.session.rollback()
        log.warning("readyz: database check failed: %s", exc)
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        ping_broker(current_app.extensions["celery"])
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("readyz: broker check failed: %s", exc)
        checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return (body, 200) if ready else (body, 503, {"Retry-After": "5"})
