"""The line overview (the console's landing page) and its self-refreshing fragment."""
from __future__ import annotations

from flask import render_template

from ...services import overview as svc
from ..blueprint import bp
from ..session import login_required

REFRESH_SECONDS = 15


@bp.get("/")
@login_required()
def overview():
    """The line overview: WIP, today's throughput, first-pass yield, rejects, holds."""
    return render_template("console/overview.html", data=svc.snapshot(),
                           refresh=REFRESH_SECONDS)


@bp.get("/overview/live")
@login_required()
def overview_live():
    """The overview's body alone, polled by htmx every REFRESH_SECONDS."""
    return render_template("console/_overview_body.html", data=svc.snapshot(),
                           refresh=REFRESH_SECONDS)
