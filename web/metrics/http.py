"""The web's request metrics: a counter by method, route and status, and a latency histogram.

The route is Flask's URL rule (``/api/v1/completions/<int:completion_id>``), never the path, so a
label value names an endpoint, not a record; a request no rule matched (404, 405 before routing)
counts under one fixed route, ``<unmatched>``.
"""
from __future__ import annotations

import time

from flask import Flask, request

from . import instruments

UNMATCHED = "<unmatched>"
_START = "neurohub.metrics.start"  # the WSGI environ key of the request's start time


def install_hooks(app: Flask) -> None:
    """Time every request from the first before-request hook to the answer."""

    def _start():
        request.environ[_START] = time.perf_counter()

    def _count(response):
        start = request.environ.get(_START)
        rule = request.url_rule
        instruments.http_request(request.method, rule.rule if rule is not None else UNMATCHED,
                                 response.status_code,
                                 time.perf_counter() - start if start is not None else 0.0)
        return response

    # First of the before-request hooks: a request another hook refuses (body limits, an id
    # out of range) is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_count)
