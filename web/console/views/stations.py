"""The stations board: a live card per station (producing, idle, problem, offline)."""
from __future__ import annotations

from flask import render_template

from ...services import station_board
from ..blueprint import bp
from ..session import login_required

REFRESH_SECONDS = 5


@bp.get("/stations")
@login_required()
def stations():
    """The board of the line's stations, refreshing on its own."""
    return render_template("console/stations.html", cards=station_board.board(),
                           refresh=REFRESH_SECONDS)


@bp.get("/stations/live")
@login_required()
def stations_live():
    """The board's cards alone, polled by htmx."""
    return render_template("console/_station_cards.html", cards=station_board.board())
