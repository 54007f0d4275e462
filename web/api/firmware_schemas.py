"""Schemas of the firmware endpoints (upload form, releases, downloads, station assignments)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from ..models import FIRMWARE_STATES
from ..services.firmware import SEMVER
from .schemas import Code, Reason, Strict

Sha256 = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{64}$", description="hex sha256")]


class FirmwareUploadForm(Strict):
    """The text fields of the multipart upload (the image itself is the part named ``file``)."""

    product: Code
    version: Annotated[str, Field(min_length=1, max_length=64, description="semantic version",
                                  json_schema_extra={"pattern": SEMVER.pattern})]
    sha256: Sha256 | None = None
    notes: Annotated[str, Field(max_length=2000)] | None = None

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER.match(v):
            raise ValueError("must be a semantic version such as 1.4.2 or 2.0.0-rc.1")
        return v

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v


class AssignmentOut(BaseModel):
    """A firmware assignment: what a station must hold, and what it proved."""

    id: int
    firmware_id: int
    station: str
    product: str
    version: str
    sha256: str
    size: int
    state: Literal["pending", "delivered", "verified", "failed", "superseded", "revoked"]
    acked_sha256: str | None
    created_at: str
    delivered_at: str | None
    acked_at: str | None
    ended_at: str | None
    download_url: str


class AssignmentList(BaseModel):
    """A station's current firmware assignments."""

    items: list[AssignmentOut]


class FirmwareOut(BaseModel):
    """A firmware image and its release state."""

    id: int
    product: str
    version: str
    state: Literal["draft", "released", "revoked"]
    sha256: str
    size: int
    filename: str
    storage_key: str
    notes: str | None
    release_error: str | None
    created_by: str | None
    created_at: str
    released_by: str | None
    released_at: str | None
    distributed_at: str | None
    revoked_by: str | None
    revoked_at: str | None
    revoke_reason: str | None
    download_url: str
    assignments: list[AssignmentOut] | None = None


class FirmwarePage(BaseModel):
    """A page of firmware."""

    items: list[FirmwareOut]
    next_cursor: str | None


class FirmwareQuery(Strict):
    """Filters and paging for the firmware list."""

    product: Code | None = None
    state: Literal[FIRMWARE_STATES] | None = None  # type: ignore[valid-type]
    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class DownloadQuery(Strict):
    """Which station downloads (marks its pending assignment delivered)."""

    station: Code | None = None


class RevokeIn(Strict):
    """Why a firmware is revoked."""

    reason: Reason


class FirmwareAckIn(Strict):
    """The sha256 of the image the station holds, computed by the station."""

    sha256: Sha256

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()
