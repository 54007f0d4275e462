"""Liveness and readiness probes (no token needed; /readyz's detail only for admins or inside)."""
import ipaddress
import logging
from functools import lru_cache

from flask import Blueprint, current_app, request
from sqlalchemy import text

from ..auth import authenticate
from ..errors import Unauthorized
from ..extensions import db
from ..models import utcnow
from ..openapi import spec

bp = Blueprint("health", __name__)
ALIVE = {"application/json": {"type": "object", "required": ["status"],
                              "properties": {"status": {"const": "ok"}}}}
READINESS = {"application/json": {
    "type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "database, broker, storage (and completions_worker when its "
                                  "canary is stale): ok or error; with detail access the "
                                  "error's class or reason follows (error: OperationalError)"},
        "detail": {"type": "object",
                   "description": "workers' canaries, beat, the last backup and restore drill, "
                                  "silent stations: only for detail access"}}}}
READYZ_DOC = (
    "Answers anyone: `status` and each check's `ok` or `error` (200 ready, 503 not, with "
    "Retry-After). Callers with detail access also get the checks' reasons and `detail` "
    "(backup ids, worker canaries, beat, restore drill, silent stations): an admin's bearer "
    "token, or a client address on loopback or in READYZ_DETAIL_NETWORKS (behind a proxy, the "
    "address from X-Forwarded-For as deep as TRUSTED_PROXY_HOPS). Any other token, valid or "
    "not, gets the public answer.")
log = logging.getLogger(__name__)


@bp.get("/healthz")
@spec(responses={200: ALIVE}, tags=["health"], public=True)
def healthz():
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
@spec(responses={200: READINESS, 503: READINESS}, tags=["health"], public=True,
      description=READYZ_DOC)
def readyz():
    """Database, broker and storage reachable, completions being decided (503 otherwise)."""
    checks = _checks()
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if checks["database"] == "ok":
        body["detail"] = _detail()
        if _completions_stale(body["detail"]):
            # Stations' completions would be accepted (202) and never decided.
            checks["completions_worker"] = "stale: no completions canary came through"
            body["status"], ready = "unavailable", False
    if not _detail_allowed():
        body = {"status": body["status"], "checks": {
            name: "ok" if value == "ok" else "error" for name, value in checks.items()}}
    return (body, 200) if ready else (body, 503, {"Retry-After": "5"})


def _checks() -> dict:
    """database, broker and storage: "ok" or "error: <exception class>"."""
    from ..services.readiness import ping_broker
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
        ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        log.warning("readyz: broker check failed: %s", exc)
        checks["broker"] = f"error: {type(exc).__name__}"
    checks["storage"] = _check_storage()
    return checks


def _detail_allowed() -> bool:
    """The caller is on an internal address or holds an admin's bearer token."""
    if _internal(request.remote_addr or "", current_app.config["READYZ_DETAIL_NETWORKS"]):
        return True
    if not request.headers.get("Authorization"):
        return False
    try:
        return authenticate().role == "admin"
    except Unauthorized:  # a bad token is no reason to fail a probe: the public answer
        return False


def _internal(address: str, networks: str) -> bool:
    """``address`` is in one of the comma-separated ``networks`` (IPv4-mapped IPv6 as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a unix socket or no address: not known to be inside
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return any(ip in net for net in _networks(networks))


@lru_cache(maxsize=8)
def _networks(networks: str) -> tuple:
    """The parsed networks of a READYZ_DETAIL_NETWORKS value (checked at start-up)."""
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",")
                 if n.strip())


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
    from ..services import backups, periodic, readiness
    cfg = current_app.config
    try:
        stale = float(cfg["CANARY_STALE_SECONDS"])
        canary = readiness.canaries(stale)
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
