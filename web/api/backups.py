"""Backups: request a snapshot, list them with their verification and restore-drill results."""
from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint
from pydantic import BaseModel, Field

from ..auth import require
from ..openapi import spec
from ..services import backups as svc
from ..services.backups.verify import request_verify
from . import actor
from .schemas import Strict

bp = Blueprint("backups", __name__, url_prefix="/api/v1/backups")


class BackupOut(BaseModel):
    """A database backup: where it is stored, what it holds, whether it was proven restorable."""

    id: int
    kind: str
    slot: str | None
    state: str
    engine: str | None
    storage_key: str | None
    size: int | None
    sha256: str | None
    server_version: str | None
    schema_revision: str | None
    dump_tool: str | None
    row_counts: dict[str, int] | None
    error: str | None
    requested_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    verified_at: str | None
    verify_error: str | None
    drill_at: str | None
    drill_result: str | None
    drill_detail: dict | None
    expired_at: str | None


class BackupPage(BaseModel):
    """A page of backups, newest first."""

    items: list[BackupOut]
    next_cursor: str | None


class BackupQuery(Strict):
    """Filters and paging for backups."""

    state: Literal["queued", "running", "done", "failed"] | None = None
    kind: Literal["scheduled", "manual"] | None = None
    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


@bp.post("")
@require("admin")
@spec(responses={202: BackupOut}, tags=["backups"])
def create():
    """Request a database snapshot now; the io worker takes it (poll the backup for its state)."""
    return svc.backup_dict(svc.request_backup(actor())), 202


@bp.get("")
@require("admin")
@spec(query=BackupQuery, responses={200: BackupPage}, tags=["backups"])
def index(query: BackupQuery):
    """List backups (newest first) with verification and restore-drill results."""
    rows, nxt = svc.list_backups(query.state, query.kind, query.cursor, query.limit)
    return {"items": [svc.backup_dict(b) for b in rows], "next_cursor": nxt}


@bp.get("/<int:backup_id>")
@require("admin")
@spec(responses={200: BackupOut}, tags=["backups"])
def show(backup_id: int):
    """One backup."""
    return svc.backup_dict(svc.get_backup(backup_id))


@bp.post("/<int:backup_id>/verify")
@require("admin")
@spec(responses={202: BackupOut}, tags=["backups"], errors=(409,))
def verify(backup_id: int):
    """Re-read and hash the stored backup and check it as an archive (done by the io worker)."""
    return svc.backup_dict(request_verify(backup_id, actor())), 202
