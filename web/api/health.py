"""Liveness and readiness probes (no token needed)."""
import logging

from flask import Blueprint, current_app
from sqlalchemy import text

from ..extensions import db
from ..models import utcnow
from ..openapi import spec

bp = Blueprint("health", __name__)
ALIVE = {"application/json": {"type": "object", "required": ["status"],
                              "properties": {"status": {"const": "ok"}}}}
READINESS = {"application/json": {
    "type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "detail": {"type": "object"}}}}
log = logging.getLogger(__name__)


@bp.get("/healthz")
@spec(responses={200: ALIVE}, tags=["health"], public=True)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@spec(responses={200: READINESS, 503: READINESS}, tags=["health"], public=True)
def readyz():
    """Database, broker and storage reachable, completions being decided (503 otherwise)."""
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
    checks["storage"] = _check_storage()
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if checks["database"] == "ok":
        body["detail"] = _detail()
        if _completions_stale(body["detail"]):
            # Stations' completions would be accepted (202) and never decided.
            checks["completions_worker"] = "stale: no completions canary came through"
            body["status"], ready = "unavailable", False
    return (body, 200) if ready else (body, 503, {"Retry-After": "5"})


def _check_storage() -> str:
    """The storage check: "ok" when every area (firmware, backups) answers."""
    from storage import AREAS
    from ..services.storage_sync import area_storage
    try:
        for area in AREAS:
            area_storage(area).check()
        return "ok"
    except Exception as exc:
        log.warning("readyz: storage check failed: %s", exc)
        return f"error: {type(exc).__name__}"


def _completions_stale(detail: dict) -> bool:
    """The completions queue's canary is stale (a never-seen canary is a fresh install)."""
    return detail.get("canary", {}).get("completions", {}).get("status") == "stale"


def _detail() -> dict:
    """Housekeeping as the database records it: informative, a reason for 503 only in one case.

    A stale canary means workers stopped consuming a queue. For printing, I/O and default the
    web tier stays ready; a stale completions canary makes it not ready (see readyz), since
    every completion a station sends would then be accepted and never decided.
    """
    from beat.schedule import QUEUES
    from ..services import backups, periodic
    cfg = current_app.config
    try:
        stale = float(cfg["CANARY_STALE_SECONDS"])
        canary = {q: periodic.canary_status(q, stale) for q in QUEUES}
        last = backups.newest_done()
        age = (utcnow() - last.finished_at).total_seconds() / 3600 if last else None
        drill = backups.last_drill()
        detail = {
            "workers": "ok" if all(c["status"] == "ok" for c in canary.values()) else "stale",
            "canary": canary,
            "beat": periodic.beat_status(stale),
            "backup": {"status": "none" if last is None else (
                "ok" if age <= cfg["BACKUP_STALE_HOURS"] else "stale"),
                "id": last.id if last else None,
                "finished_at": last.finished_at.isoformat() if last else None,
                "age_hours": round(age, 2) if age is not None else None},
            "restore_drill": {"result": drill.drill_result if drill else "never",
                              "backup_id": drill.id if drill else None,
                              "at": drill.drill_at.isoformat() if drill else None,
                              "detail": drill.drill_detail if drill else None},
            "stations_offline": periodic.offline_stations(),
        }
        db.session.rollback()
        return detail
    except Exception as exc:  # e.g. the schema is older than this code: say so, stay up
        db.session.rollback()
        log.warning("readyz: detail unavailable: %s", exc)
        return {"error": f"{type(exc).__name__}"}
