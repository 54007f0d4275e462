"""Lots: search with cursor paging, the lot page (its DHR), CSV/PDF export, hold/release/scrap."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import Response, abort, flash, redirect, render_template, request, url_for

from ...api import actor
from ...models import LOT_STATUSES
from ...services import dhr, dhr_pdf
from ...services import lots as svc
from ...services.plant_time import plant_zone
from ..blueprint import attempt, bp
from ..session import login_required

PAGE_SIZE = 50
AUDIT_PAGE = 100  # audit events per page of a lot page (a big lot has thousands)


def _day_range(text: str):
    """A YYYY-MM-DD day on the plant's clock as [start, end) aware datetimes; None if empty."""
    if not text:
        return None, None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        abort(400, "date must be YYYY-MM-DD")
    start = datetime.combine(day, time.min, tzinfo=plant_zone())
    return start, start + timedelta(days=1)


@bp.get("/lots")
@login_required()
def lots():
    """Search lots by number, serial, product, creation day and status (newest first)."""
    q = {k: request.args.get(k, "").strip() for k in ("lot", "serial", "product", "date",
                                                        "status")}
    if q["status"] and q["status"] not in LOT_STATUSES:
        abort(400, f"status must be one of {', '.join(LOT_STATUSES)}")
    start, end = _day_range(q["date"])
    rows, nxt = svc.list_lots(q["status"] or None, q["product"] or None, None,
                              request.args.get("cursor") or None, PAGE_SIZE,
                              lot_no=q["lot"] or None, serial=q["serial"] or None,
                              created_from=start, created_before=end)
    return render_template("console/lots.html", q=q, rows=rows, next_cursor=nxt,
                           statuses=LOT_STATUSES)


@bp.get("/lots/<lot_no>")
@login_required()
def lot(lot_no: str):
    """The lot page: its device history record (routing progress, completions, labels, audit)."""
    row = svc.get_lot(lot_no)
    record = dhr.build(row, audit=False)
    events, older = dhr.audit_page(row.id, None, AUDIT_PAGE)
    return render_template("console/lot.html", record=record, lot=record["lot"],
                           product_name=row.product.name, events=events, older=older,
                           actions=svc.allowed_actions(row.status))


@bp.get("/lots/<lot_no>/audit")
@login_required()
def lot_audit(lot_no: str):
    """The next (older) page of a lot's audit trail, as table rows for the lot page."""
    before = request.args.get("before", "")
    if not before.isdigit():
        abort(400, "before must be an audit event id")
    row = svc.get_lot(lot_no)
    events, older = dhr.audit_page(row.id, int(before), AUDIT_PAGE)
    return render_template("console/_lot_audit_rows.html", lot=row, events=events, older=older)


@bp.get("/lots/<lot_no>/dhr.csv")
@login_required()
def lot_csv(lot_no: str):
    """The DHR as CSV (the API's format)."""
    record = dhr.build(svc.get_lot(lot_no), audit=False)  # the CSV has no audit columns
    return Response(dhr.to_csv(record), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{lot_no}-dhr.csv"'})


@bp.get("/lots/<lot_no>/dhr.pdf")
@login_required()
def lot_pdf(lot_no: str):
    """The DHR as PDF, with an embedded Korean-capable font."""
    row = svc.get_lot(lot_no)
    return Response(dhr_pdf.to_pdf(dhr.build(row), row.product.name),
                    mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{lot_no}-dhr.pdf"'})


@bp.post("/lots/<lot_no>/<action>")
@login_required("supervisor")
def lot_action(lot_no: str, action: str):
    """Hold, release or scrap the lot with a reason (the API's rules, audited)."""
    if action not in ("hold", "release", "scrap"):
        abort(404)
    reason = request.form.get("reason", "").strip()
    if not reason or len(reason) > 500:
        flash(("error", "lots.reason_required"))
    else:
        attempt(lambda: svc.change_state(lot_no, action, reason, actor()), f"lots.done_{action}")
    return redirect(url_for("console.lot", lot_no=lot_no))
