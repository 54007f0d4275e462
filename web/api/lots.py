"""Lots: create, list, show, hold / release / scrap, device history record."""
from flask import Blueprint, Response

from ..auth import require
from ..openapi import spec
from ..services import dhr, dhr_pdf
from ..services import lots as svc
from . import actor
from .schemas import DhrOut, DhrQuery, LotDetail, LotIn, LotOut, LotPage, LotQuery, ReasonIn

bp = Blueprint("lots", __name__, url_prefix="/api/v1/lots")


@bp.post("")
@require("supervisor")
@spec(body=LotIn, responses={201: LotOut}, tags=["lots"], errors=(409,))
def create(body: LotIn):
    """Create a lot at the first step of the product's current routing."""
    lot = svc.create_lot(body.product, body.quantity, body.lot_no, body.serials, actor())
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
    lot = svc.get_lot(lot_no)  # hundreds of completions for a big lot: serialised as the DHR is
    return Response(dhr.to_json_bytes(svc.lot_dict(lot, completions=dhr.lot_completions(lot))),
                    mimetype="application/json")


def _change(lot_no: str, action: str, reason: str):
    return svc.lot_dict(svc.change_state(lot_no, action, reason, actor()))


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
@spec(query=DhrQuery, responses={200: {"application/json": DhrOut, "text/csv": {"type": "string"},
                                        "application/pdf": {"type": "string",
                                                            "format": "binary"}}},
      tags=["lots"])
def device_history(lot_no: str, query: DhrQuery):
    """The lot's device history record (JSON, CSV, or PDF with an embedded Korean font)."""
    lot = svc.get_lot(lot_no)
    if query.format == "csv":
        return Response(dhr.to_csv(dhr.build(lot, audit=False)), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{lot_no}-dhr.csv"'})
    if query.format == "pdf":  # the PDF prints the audit trail, so it is built with it
        return Response(dhr_pdf.to_pdf(dhr.build(lot), lot.product.name),
                        mimetype="application/pdf", headers={
                            "Content-Disposition": f'attachment; filename="{lot_no}-dhr.pdf"'})
    return Response(dhr.to_json_bytes(dhr.build(lot)), mimetype="application/json")
