"""Every integer path parameter the OpenAPI document declares: an id past 32 or 64 bits (past the
column's range) is 404, like any id that does not exist, never 400 or 500; a cursor (which carries
an id) past any column's range is a 400 naming the cursor, not a database error."""
from __future__ import annotations

import base64
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


def _cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"id:{value}".encode()).decode().rstrip("=")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_every_cursor_holding_an_id_past_any_column_is_400_naming_the_cursor(client, auth,
                                                                             value):
    """Cursors carry the last id of a page: one past the column's range was never issued."""
    doc = load_spec(client)
    listed = [op for op in operations(doc)
              if any(p["in"] == "query" and p["name"] == "cursor" for p in op.params)]
    assert len(listed) >= 5
    failures = []
    for op in listed:
        resp = client.open(op.url(), method=op.method.upper(), headers=auth("admin"),
                           query_string={"cursor": _cursor(value)})
        body = resp.get_json(silent=True) or {}
        if resp.status_code != 400 or "query.cursor" not in [
                e.get("field") for e in body.get("errors") or []]:
            failures.append((op.method, op.path, resp.status_code, body.get("detail")))
    assert not failures, "\n".join(map(str, failures))


def test_a_cursor_within_the_bigint_range_still_pages(client, auth):
    resp = client.get("/api/v1/lots", headers=auth("admin"), query_string={
        "cursor": _cursor(2**31 - 1)})
    assert resp.status_code == 200 and resp.get_json()["items"] == []
