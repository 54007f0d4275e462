"""``GET /metrics``: the web's Prometheus text exposition (internal: nginx refuses it from
outside, so it takes no token)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from ..openapi import spec
from . import core
from .state import StateCollector

bp = Blueprint("metrics", __name__)
EXPOSITION = {"text/plain": {"type": "string", "description": "Prometheus text format 0.0.4"}}


class _Sources:
    """Several collectors read as one registry (generate_latest only calls ``collect``)."""

    def __init__(self, *sources):
        self.sources = sources

    def collect(self):
        """The metric families of every source, in order."""
        for source in self.sources:
            yield from source.collect()


@bp.get("/metrics")
@spec(responses={200: EXPOSITION}, tags=["health"], public=True)
def metrics():
    """Prometheus metrics of this web service and of the state in its database (internal)."""
    body = generate_latest(_Sources(core.exposition_registry(),
                                    StateCollector(current_app.config)))
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
