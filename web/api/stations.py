"""Stations and their heartbeats."""
from flask import Blueprint

from ..auth import require
from ..openapi import spec
from ..services import stations as svc
from . import actor
from .schemas import HeartbeatIn, PageQuery, StationIn, StationOut, StationPage

bp = Blueprint("stations", __name__, url_prefix="/api/v1/stations")


@bp.post("")
@require("admin")
@spec(body=StationIn, responses={201: StationOut}, tags=["stations"], errors=(409,))
def create(body: StationIn):
    """Register a station PC."""
    profile = body.printer_profile.model_dump(exclude_none=True) if body.printer_profile \
        else None
    station = svc.create_station(body.code, body.name, body.steps, body.printer_uri, actor(),
                                 profile)
    return svc.station_dict(station), 201


@bp.get("")
@require("operator")
@spec(query=PageQuery, responses={200: StationPage}, tags=["stations"])
def index(query: PageQuery):
    """List stations."""
    rows, nxt = svc.list_stations(query.cursor, query.limit)
    return {"items": [svc.station_dict(s) for s in rows], "next_cursor": nxt}


@bp.post("/<code>/heartbeat")
@require("operator")
@spec(body=HeartbeatIn, optional_body=True, responses={200: StationOut}, tags=["stations"])
def heartbeat(code: str, body: HeartbeatIn):
    """Record that the station app is alive (the body is optional)."""
    return svc.station_dict(svc.heartbeat(code, body.model_dump(exclude_none=True)))
