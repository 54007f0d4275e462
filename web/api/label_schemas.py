"""Schemas of the label endpoints (templates, previews, jobs, station pull)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (BaseModel, Field, StrictBool, StrictFloat, StrictInt, ValidationError,
                      WrapValidator)
from pydantic_core import PydanticCustomError

from .schemas import INT32_MAX, LotNo, Strict


class TemplateOut(BaseModel):
    """One version of a label template."""

    name: str
    version: int
    variables: list[dict]
    width_mm: float
    height_mm: float
    description: str | None
    body: str
    created_at: str


class TemplateList(BaseModel):
    """Every version of every label template."""

    items: list[TemplateOut]


class TemplateVariable(Strict):
    """A template variable and the longest value its field takes."""

    name: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,31}$")]
    max_length: Annotated[StrictInt, Field(ge=1, le=500)]
    required: StrictBool = True


class TemplateIn(Strict):
    """A new version of a label template (ZPL body without ^XA/^XZ)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
    body: Annotated[str, Field(min_length=1, max_length=20000)]
    variables: Annotated[list[TemplateVariable], Field(max_length=50)]
    width_mm: Annotated[StrictFloat | StrictInt, Field(gt=0, le=300)]
    height_mm: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1000)]
    description: Annotated[str, Field(max_length=500)] | None = None


def _text_or_int(value, handler):
    """One error per value, under the variable's own name."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("label_value", "must be text or a 64-bit integer") from None


# An integer is printed as its digits: one a 64-bit integer holds (not a 310-digit literal).
LabelValue = Annotated[Annotated[str, Field(max_length=500)]
                       | Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)],
                       WrapValidator(_text_or_int)]


class PreviewIn(Strict):
    """Render a template with data to PNG, exactly as it would be sent."""

    template: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[StrictInt, Field(ge=1, le=INT32_MAX)] | None = None
    data: dict[Annotated[str, Field(max_length=64)], LabelValue]
    dpi: Literal[203, 300, 600] = 203


class LabelJobOut(BaseModel):
    """A label job."""

    id: int
    state: str
    template: str
    template_version: int
    data: dict
    zpl_sha256: str
    printer: str
    copies: int
    reason: str
    reprint_reason: str | None
    reprint_of: int | None
    unit_serial: str | None
    completion_id: int | None
    attempts: int
    printer_reason: str | None
    error: str | None
    created_at: str
    sent_at: str | None
    printed_at: str | None
    zpl: str | None = None


class LabelJobPage(BaseModel):
    """A page of label jobs."""

    items: list[LabelJobOut]
    next_cursor: str | None


class LabelJobQuery(Strict):
    """Filters and paging for label jobs."""

    state: Literal["queued", "waiting_printer", "sent", "printed", "failed"] | None = None
    printer: Annotated[str, Field(max_length=500)] | None = None
    lot_no: LotNo | None = None
    cursor: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class AckIn(Strict):
    """What the station's printer did with a pulled job."""

    printed: StrictBool
    printer_reason: Annotated[str, Field(max_length=200)] | None = None
