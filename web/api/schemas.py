"""Request and response schemas; they validate requests and generate the OpenAPI document."""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt,
                      ValidationError, ValidationInfo, WrapValidator, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from ..models import LOT_STATUSES

Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
                            description="an identifier: letters, digits, _ . -")]
LotNo = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Serial = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _finite_number(value, handler):
    """A number a float can hold, else one error under the field's own name (not per member).

    JSON allows integer literals of any length: one past the float range (a 1 and 309 zeros)
    is refused here like infinity, as measured values and limits are compared as floats.
    """
    try:
        number = handler(value)
        if math.isfinite(number):  # OverflowError for an int beyond the float range
            return number
    except (ValidationError, OverflowError):
        pass
    raise PydanticCustomError("number_type", "must be a finite JSON number (within ±1.7e308)")


Number = Annotated[StrictFloat | StrictInt, WrapValidator(_finite_number)]
# Counts and ids stored in 32-bit integer columns: larger values are refused as input errors.
INT32_MAX = 2**31 - 1
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class Strict(BaseModel):
    """Unknown fields are errors: a typo must not silently drop data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TokenRequest(Strict):
    """Credentials for a bearer token."""

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class TokenResponse(BaseModel):
    """A bearer token and its lifetime in seconds."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MeasurementSpec(Strict):
    """One measured value of a step, with its limits."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    unit: Annotated[str, Field(max_length=16)] = ""
    min: Number | None = None
    max: Number | None = None
    required: StrictBool = True

    @model_validator(mode="after")
    def _limits(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class StepIn(Strict):
    """One routing step."""

    step: Code
    name: Name
    measurements: Annotated[list[MeasurementSpec], Field(max_length=50)] = []
    requires_firmware: StrictBool = False
    label_template: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] | None = None

    @field_validator("measurements")
    @classmethod
    def _unique_names(cls, v):
        names = [m.name for m in v]
        if len(names) != len(set(names)):
            raise ValueError("measurement names must be unique within a step")
        return v


Routing = Annotated[list[StepIn], Field(min_length=1, max_length=50)]


def _unique_steps(v: list[StepIn]) -> list[StepIn]:
    codes = [s.step for s in v]
    if len(codes) != len(set(codes)):
        raise ValueError("step codes must be unique within a routing")
    return v


class ProductIn(Strict):
    """A new product with its first routing revision."""

    code: Code
    name: Name
    routing: Routing

    @field_validator("routing")
    @classmethod
    def _steps(cls, v):
        return _unique_steps(v)


class RoutingIn(Strict):
    """A new routing revision."""

    routing: Routing

    @field_validator("routing")
    @classmethod
    def _steps(cls, v):
        return _unique_steps(v)


class StepOut(BaseModel):
    """A routing step as stored."""

    step: str
    name: str
    seq: int
    measurements: list[dict]
    requires_firmware: bool
    label_template: str | None


class ProductOut(BaseModel):
    """A product with its current routing revision."""

    code: str
    name: str
    revision: int
    routing: list[StepOut]
    revisions: list[int]


class ProductPage(BaseModel):
    """A page of products."""

    items: list[ProductOut]
    next_cursor: str | None


PRINTER_SCHEMES = ("tcp://", "sim://", "file://", "station://")


class PrinterProfile(Strict):
    """How labels are laid out for a printer."""

    dpi: Literal[203, 300, 600] = 203
    width_dots: Annotated[StrictInt, Field(ge=50, le=10000)] | None = None
    length_dots: Annotated[StrictInt, Field(ge=50, le=30000)] | None = None
    darkness: Annotated[StrictInt, Field(ge=0, le=30)] | None = None


class StationIn(Strict):
    """A station PC to register."""

    code: Code
    name: Name
    steps: Annotated[list[Code], Field(max_length=20)] = []
    printer_uri: Annotated[str, Field(max_length=500, json_schema_extra={
        "pattern": "^(tcp|sim|file|station)://"})] | None = None  # checked by _scheme
    printer_profile: PrinterProfile | None = None

    @field_validator("printer_uri")
    @classmethod
    def _scheme(cls, v):
        if v is not None and not v.startswith(PRINTER_SCHEMES):
            raise ValueError(f"printer_uri must start with one of {', '.join(PRINTER_SCHEMES)}")
        if v is not None and v != "station://":
            from printers import printer_for_uri
            printer_for_uri(v)  # raises ValueError naming what is wrong with the URI
        elif v is not None and v.startswith("station://") and v != "station://":
            raise ValueError("station:// takes no host or path")
        return v


class StationOut(BaseModel):
    """A station as stored."""

    code: str
    name: str
    steps: list[str]
    printer_uri: str | None
    active: bool
    last_heartbeat_at: str | None


class StationPage(BaseModel):
    """A page of stations."""

    items: list[StationOut]
    next_cursor: str | None


class HeartbeatIn(Strict):
    """What a station reports with its heartbeat (all optional)."""

    app_version: Annotated[str, Field(max_length=64)] | None = None
    # Completions the station holds, not yet delivered (its offline queue): a count, not a bool.
    offline_queue: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    queued: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None  # older name of it
    printer_status: Annotated[str, Field(max_length=200)] | None = None


class LotIn(Strict):
    """A new lot."""

    product: Code
    quantity: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    lot_no: LotNo | None = None
    serials: Annotated[list[Serial], Field(max_length=100_000)] | None = None

    @field_validator("serials")
    @classmethod
    def _serials(cls, v, info: ValidationInfo):
        if v is not None:
            if "quantity" in info.data and len(v) != info.data["quantity"]:
                raise ValueError("serials must list exactly `quantity` unit serials")
            if len(set(v)) != len(v):
                raise ValueError("serials must be unique")
        return v


class LotOut(BaseModel):
    """A lot."""

    lot_no: str
    product: str
    quantity: int
    qty_good: int
    step_passed: int
    status: str
    current_step: str | None
    routing_revision: int
    hold_reason: str | None
    created_at: str


class LotQuery(Strict):
    """Filters and paging for the lot list."""

    status: Literal[LOT_STATUSES] | None = None  # type: ignore[valid-type]
    product: Code | None = None
    step: Code | None = None
    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class LotPage(BaseModel):
    """A page of lots."""

    items: list[LotOut]
    next_cursor: str | None


class PageQuery(Strict):
    """Paging for list endpoints."""

    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class ReasonIn(Strict):
    """Why a supervisor changes a lot's state."""

    reason: Reason


class CompletionIn(Strict):
    """A process completion (공정 완공) reported by a station."""

    lot_no: LotNo
    step: Code
    station: Code
    measurements: Annotated[dict[Annotated[str, Field(max_length=64)], Number],
                            Field(max_length=100)] = {}
    unit_serial: Serial | None = None
    firmware_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    firmware_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    qty_good: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    qty_scrap: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None


class CompletionReceipt(BaseModel):
    """The completion was stored and will be validated by a worker."""

    id: int
    status: str


class CompletionOut(BaseModel):
    """A completion with its decision."""

    id: int
    status: Literal["received", "accepted", "rejected", "failed"]
    reasons: list[dict]
    lot_no: str
    step: str
    station: str
    operator: str
    unit_serial: str | None
    measurements: dict
    results: list[dict] | None
    firmware_version: str | None
    firmware_sha256: str | None
    qty_good: int | None
    qty_scrap: int | None
    error: str | None
    received_at: str
    processed_at: str | None
    labels: list[dict] | None = None


class LotDetail(LotOut):
    """A lot with its unit serials and completions."""

    serials: list[str]
    completions: list[CompletionOut]


class DhrOut(BaseModel):
    """The device history record of a lot."""

    lot: dict
    steps: list[dict]
    labels: list[dict]
    audit: list[dict]
    generated_at: str


class DhrQuery(Strict):
    """Output format of the device history record."""

    format: Literal["json", "csv", "pdf"] = "json"

