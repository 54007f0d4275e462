"""Every integer path parameter the OpenAPI document declares: an id past 32 or 64 bits (past the
column's range) is 404, like any id that does not exist, never 400 or 500."""
from __future__ import annotations

import json

import pytest

from web.api import path_id_limits

from .api_helpers import assert_problem
from .spec_walk import example, load_spec, operations

PAST = (2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, 10**309)


def _id_operations(client):
    doc = load_spec(client)
    out = []
    for op in operations(doc):
        ids = [p["name"] for p in op.params
               if p["in"] == "path" and p["schema"].get("type") == "integer"]
        if ids:
            body = example(doc, op.body_schema) if op.body_schema is not None else None
            out.append((op, ids, body))
    return out


def test_the_walk_finds_the_id_routes(client):
    found = {(op.method, op.path) for op, _, _ in _id_operations(client)}
    assert ("get", "/api/v1/firmware/{firmware_id}") in found
    assert ("get", "/api/v1/completions/{completion_id}") in found
    assert ("post", "/api/v1/stations/{code}/labels/{job_id}/ack") in found
    assert len(found) >= 12


@pytest.mark.parametrize("value", PAST)
def test_every_path_id_past_its_range_is_404(client, auth, value):
    failures = []
    for op, ids, body in _id_operations(client):
        for name in ids:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"} \
                if body is not None else {}
            resp = client.open(op.url(**{name: value}), method=op.method.upper(),
                               headers=auth("admin"), **kwargs)
            if resp.status_code != 404 or resp.mimetype != "application/problem+json":
                failures.append((op.method, op.path, name, resp.status_code,
                                 resp.get_data(as_text=True)[:200]))
    assert not failures, "\n".join(map(str, failures))


def test_the_issue_examples(client, auth):
    assert_problem(client.get("/api/v1/firmware/2147483648", headers=auth("admin")), 404)
    assert_problem(client.get(f"/api/v1/completions/{2**63}", headers=auth("admin")), 404)


def test_every_integer_route_parameter_has_a_column(app):
    limits = path_id_limits(app)
    assert limits["firmware_id"] == 2**31 - 1 and limits["completion_id"] == 2**63 - 1
