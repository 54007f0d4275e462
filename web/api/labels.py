"""Labels: templates, previews from the exact ZPL, jobs, reprints, and the station pull API."""
from flask import Blueprint, Response, request

from printers import preview_png

from ..auth import require
from ..extensions import db
from ..openapi import spec
from ..services.labels import templates as tpl
from ..services import labels as svc
from . import actor
from .label_schemas import (AckIn, LabelJobOut, LabelJobPage, LabelJobQuery, PreviewIn,
                            TemplateIn, TemplateList, TemplateOut)
from .schemas import ReasonIn

bp = Blueprint("labels", __name__, url_prefix="/api/v1")
PNG = {"image/png": {"type": "string", "format": "binary"}}


def _png(zpl: bytes, dpi: int) -> Response:
    font = tpl.label_font()
    # A label zplkit cannot draw raises PreviewError: a 422 naming the template (web.errors).
    png, adaptations = preview_png(zpl, dpi=dpi, fonts={font.path: font.data})
    resp = Response(png, mimetype="image/png")
    if adaptations:  # zplkit needs a preview-safe copy; say exactly what differs from the ZPL
        resp.headers["X-Preview-Adapted"] = "; ".join(adaptations)[:2000]
    return resp


@bp.get("/labels/templates")
@require("operator")
@spec(responses={200: TemplateList}, tags=["labels"])
def templates():
    """Every version of every label template."""
    return {"items": [tpl.template_dict(t) for t in tpl.list_templates()]}


@bp.post("/labels/templates")
@require("admin")
@spec(body=TemplateIn, responses={201: TemplateOut}, tags=["labels"])
def add_template(body: TemplateIn):
    """Add a new version of a label template (old versions stay for their jobs)."""
    variables = [v.model_dump(exclude=set() if v.overflow == "shorten" else {"overflow"})
                 for v in body.variables]
    t = tpl.add_version(body.name, body.body, variables, float(body.width_mm),
                        float(body.height_mm), body.description, actor())
    return tpl.template_dict(t), 201


@bp.post("/labels/preview")
@require("operator")
@spec(body=PreviewIn, responses={200: PNG}, tags=["labels"])
def preview(body: PreviewIn):
    """PNG of a template rendered with data, from the exact ZPL that would be sent."""
    try:
        t = tpl.get_template(body.template, body.version)
        zpl = tpl.render(t, body.data, tpl.Profile(dpi=body.dpi))
    finally:
        db.session.commit()  # built-in templates may have been created on first use
    resp = _png(zpl, body.dpi)
    if notes := tpl.shortened(t, body.data):  # the same rule as the jobs the worker makes
        resp.headers["X-Label-Shortened"] = "; ".join(notes)[:2000]
    resp.headers["X-Template-Version"] = str(t.version)
    resp.headers["X-ZPL-SHA256"] = tpl.sha256(zpl)
    return resp


@bp.get("/labels/font")
@require("operator")
@spec(responses={200: None}, tags=["labels"])
def font():
    """The label font every label names (for station apps to store on their own printer)."""
    f = tpl.label_font()
    resp = Response(f.data, mimetype="font/ttf")
    resp.headers["X-Printer-Path"] = f.path  # ^CW target; printers.LabelFont gives its ~DY
    resp.headers["X-Font-SHA256"] = f.sha256
    resp.headers["Cache-Control"] = "private, max-age=86400"
    resp.set_etag(f.sha256)
    return resp.make_conditional(request)


@bp.get("/labels/jobs")
@require("operator")
@spec(query=LabelJobQuery, responses={200: LabelJobPage}, tags=["labels"])
def jobs(query: LabelJobQuery):
    """List label jobs by state, printer and lot (newest first)."""
    rows, nxt = svc.list_jobs(query.state, query.printer, query.lot_no, query.cursor, query.limit)
    return {"items": [svc.job_dict(j) for j in rows], "next_cursor": nxt}


@bp.get("/labels/jobs/<int:job_id>")
@require("operator")
@spec(responses={200: LabelJobOut}, tags=["labels"])
def job(job_id: int):
    """One label job with its exact ZPL and sha256."""
    return svc.job_dict(svc.get_job(job_id), with_zpl=True)


@bp.get("/labels/jobs/<int:job_id>/preview.png")
@require("operator")
@spec(responses={200: PNG}, tags=["labels"])
def job_preview(job_id: int):
    """PNG of the job's exact ZPL."""
    j = svc.get_job(job_id)
    return _png(j.zpl.encode("ascii"), svc.printer_profile(j.printer_uri).dpi)


@bp.post("/labels/jobs/<int:job_id>/reprint")
@require("supervisor")
@spec(body=ReasonIn, responses={201: LabelJobOut}, tags=["labels"])
def reprint(job_id: int, body: ReasonIn):
    """Print a job again on purpose: a new job linked to the original, audited."""
    return svc.job_dict(svc.reprint(job_id, body.reason, actor()), with_zpl=True), 201


@bp.get("/stations/<code>/labels/next")
@require("operator")
@spec(responses={200: LabelJobOut, 204: None}, tags=["labels"])
def station_next(code: str):
    """The next label for a station:// printer (the station app prints it locally)."""
    j = svc.next_for_station(code)
    return ("", 204) if j is None else svc.job_dict(j, with_zpl=True)


@bp.post("/stations/<code>/labels/<int:job_id>/ack")
@require("operator")
@spec(body=AckIn, responses={200: LabelJobOut}, tags=["labels"], errors=(409,))
def station_ack(code: str, job_id: int, body: AckIn):
    """The station reports whether its printer printed a pulled job."""
    return svc.job_dict(svc.ack(code, job_id, body.printed, body.printer_reason, actor()))
