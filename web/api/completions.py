"""Process completions: the station's POST (hot path) and the status read."""
from flask import Blueprint, request

from ..auth import require
from ..errors import BadRequest, field_error
from ..metrics import instruments as metrics
from ..openapi import spec
from ..services import completions as svc
from . import actor
from .schemas import CompletionIn, CompletionOut, CompletionReceipt

bp = Blueprint("completions", __name__, url_prefix="/api/v1/completions")


@bp.post("")
@require("operator")
@spec(body=CompletionIn, responses={202: CompletionReceipt}, tags=["completions"], errors=(409,),
      headers=[{"name": "Idempotency-Key", "required": True, "description":
                "unique per completion; a retry sends the same key",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}])
def create(body: CompletionIn):
    """Record a process completion; a worker validates it (Idempotency-Key header required)."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise BadRequest("the Idempotency-Key header is required", errors=[
            {"field": "header.Idempotency-Key", "message": "missing"}])
    if len(key) > 255:
        raise field_error("header.Idempotency-Key", "at most 255 characters", BadRequest)
    receipt = svc.submit(body.model_dump(exclude_none=True), key, actor())
    headers = {"Location": f"/api/v1/completions/{receipt.id}"}
    if receipt.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        metrics.completion_received(body.step)
    return {"id": receipt.id, "status": "received"}, 202, headers


@bp.get("/<int:completion_id>")
@require("operator")
@spec(responses={200: CompletionOut}, tags=["completions"])
def show(completion_id: int):
    """A completion's status, reasons and judged measurements."""
    c = svc.get_completion(completion_id)
    return svc.completion_dict(c, svc.completion_labels(c.id))
