"""Lots: create, list, show, hold / release / scrap, device history record."""
from flask import Blueprint, Response

from ..auth import require
from ..errors import Conflict, NotFound, field_error
from ..openapi import spec
from ..services import dhr
from ..services import lots as svc
from . import actor
from .schemas import DhrOut, DhrQuery, LotDetail, LotIn, LotOut, LotPage, LotQuery, ReasonIn

bp = Blueprint("lots", __name__, url_prefix="/api/v1/lots")


def _lot(lot_no: str):
    try:
        return svc.get_lot(lot_no)
    except svc.LotNotFound:
        raise NotFound(f"unknown lot {lot_no!r}") from None


@bp.post("")
@require("supervisor")
@spec(body=LotIn, responses={201: LotOut}, tags=["lots"], errors=(409,))
def create(body: LotIn):
    """Create a lot at the first step of the product's current routing."""
    try:
        lot = svc.create_lot(body.product, body.quantity, body.lot_no, body.serials, actor())
    except svc.UnknownProduct:
        raise field_error("product", f"unknown product {body.product!r}") from None
    except svc.LotExists as exc:
        raise Conflict(str(exc)) from None
    return svc.lot_dict(lot), 201


@bp.get("")
@require("operator")
@spec(query=LotQuery, responses={200: LotPage}, tags=["lots"])
def index(query: LotQuery):
    """List lots by status, product and current step (cursor pagination, newest first)."""
    rows, nxt = svc.list_lots(query.status, query.product, query.step, query.cursor, query.limit)
    return {"items": [svc.lot_dict(lot) for lot in rows], "next_cursor": nxt}


@bp.get("/<lot_no>")
@require("operator")
@spec(responses={200: LotDetail}, tags=["lots"])
def show(lot_no: str):
    """One lot with its unit serials and completions."""
    lot = _lot(lot_no)
    return svc.lot_dict(lot, completions=dhr.lot_completions(lot.id))


def _change(lot_no: str, action: str, reason: str):
    try:
        return svc.lot_dict(svc.change_state(lot_no, action, reason, actor()))
    except svc.LotNotFound:
        raise NotFound(f"unknown lot {lot_no!r}") from None
    except svc.LotStateError as exc:
        raise Conflict(str(exc)) from None


@bp.post("/<lot_no>/hold")
@require("supervisor")
@spec(body=ReasonIn, responses={200: LotOut}, tags=["lots"], errors=(409,))
def hold(lot_no: str, body: ReasonIn):
    """Put an active lot on hold."""
    return _change(lot_no, "hold", body.reason)


@bp.post("/<lot_no>/release")
@require("supervisor")
@spec(body=ReasonIn, responses={200: LotOut}, tags=["lots"], errors=(409,))
def release(lot_no: str, body: ReasonIn):
    """Release a held lot back to in_process at the same step (rework)."""
    return _change(lot_no, "release", body.reason)


@bp.post("/<lot_no>/scrap")
@require("supervisor")
@spec(body=ReasonIn, responses={200: LotOut}, tags=["lots"], errors=(409,))
def scrap(lot_no: str, body: ReasonIn):
    """Scrap a lot that is not completed."""
    return _change(lot_no, "scrap", body.reason)


@bp.get("/<lot_no>/dhr")
@require("operator")
@spec(query=DhrQuery, responses={200: {"application/json": DhrOut, "text/csv": {"type": "string"}}},
      tags=["lots"])
def device_history(lot_no: str, query: DhrQuery):
    """The lot's device history record (JSON or CSV)."""
    record = dhr.build(_lot(lot_no))
    if query.format == "csv":
        return Response(dhr.to_csv(record), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{lot_no}-dhr.csv"'})
    return record
