"""Printers and labels: each printer's ~HS status and queue, waiting and failed jobs, reprints,
and the templates with their preview images."""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from printers import preview_png

from ...api import actor
from ...extensions import db
from ...problems import ApiError
from ...services import labels as svc
from ...services.labels import board
from ...services.labels import templates as tpl
from ..blueprint import bp
from ..session import login_required

JOBS_SHOWN = 50


@bp.get("/printers")
@login_required("supervisor")
def printers():
    """Printers with status and queue, the waiting and failed jobs, and the templates."""
    waiting = []
    for state in board.WAITING:
        waiting += svc.list_jobs(state, None, None, None, JOBS_SHOWN)[0]
    failed, _ = svc.list_jobs("failed", None, None, None, JOBS_SHOWN)
    return render_template("console/printers.html", printers=board.printers(),
                           waiting=sorted(waiting, key=lambda j: j.id), failed=failed,
                           templates=tpl.list_templates())


@bp.post("/labels/jobs/<int:job_id>/reprint")
@login_required("supervisor")
def reprint(job_id: int):
    """Print a job again with a reason (a new job linked to the original, audited)."""
    reason = request.form.get("reason", "").strip()
    # The lot page offers it too (a printed label that got damaged is not on the printers
    # page): the answer goes back to the page the form was on.
    lot_no = request.form.get("lot_no")
    if not reason or len(reason) > 500:
        flash(("error", "lots.reason_required"))
    else:
        try:
            job = svc.reprint(job_id, reason, actor())
            flash(("ok", "printers.reprinted"))
            return redirect(_back(lot_no, job.id))
        except ApiError as exc:
            flash(("error", exc.detail or exc.title))
    return redirect(_back(lot_no))


def _back(lot_no: str | None, job_id: int | None = None) -> str:
    """The lot page's labels when the form was on a lot page, else the printers page."""
    if lot_no:
        return url_for("console.lot", lot_no=lot_no,
                       _anchor=f"label-{job_id}" if job_id else "labels")
    return url_for("console.printers", _anchor=f"job-{job_id}" if job_id else None)


@bp.post("/printers/test")
@login_required("supervisor")
def test_print():
    """Queue a test label on a printer (audited as label.test_print)."""
    try:
        job = board.test_print(request.form.get("printer", ""), actor())
        flash(("ok", "printers.test_queued"))
        return redirect(url_for("console.printers", _anchor=f"job-{job.id}"))
    except ApiError as exc:
        flash(("error", exc.detail or exc.title))
    return redirect(url_for("console.printers"))


@bp.get("/labels/templates/<name>/<int:version>.png")
@login_required("supervisor")
def template_preview(name: str, version: int):
    """A template version drawn from its exact ZPL, with placeholder data."""
    try:
        t = tpl.get_template(name, version)
        zpl = tpl.render(t, board.sample_data(t.variables), tpl.Profile())
    finally:
        db.session.commit()  # built-in templates may have been created on first use
    font = tpl.label_font()
    png, _adapted = preview_png(zpl, dpi=tpl.Profile().dpi, fonts={font.path: font.data})
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})
