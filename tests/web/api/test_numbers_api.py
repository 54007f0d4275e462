"""Every numeric input the OpenAPI document declares refuses numbers past any range (a 310-digit
integer literal, its negative, a float literal that overflows) with a 4xx naming the field."""
from __future__ import annotations

import json

import pytest

from .api_helpers import assert_problem
from .spec_walk import dotted, load_spec, numeric_fields, operations, put_at

HUGE = "1" + "0" * 309  # one past float's range: 1e309 as an integer literal
LITERALS = (HUGE, "-" + HUGE, "1e400")
MARK = "__number__"


def _body_cases(client):
    doc = load_spec(client)
    cases = []
    for op in operations(doc):
        if op.body_schema is not None:
            for path, _schema in numeric_fields(doc, op.body_schema):
                cases.append((op, path))
    return cases


def _query_cases(client):
    doc = load_spec(client)
    return [(op, p["name"]) for op in operations(doc) for p in op.params
            if p["in"] == "query" and any(
                v.get("type") in ("integer", "number")
                for v in [p["schema"], *p["schema"].get("anyOf", [])])]


def test_the_spec_declares_numeric_inputs_where_we_expect_them(client):
    """The walk finds the fields of the issue (so an empty walk cannot pass the tests below)."""
    found = {(op.path, dotted(path)) for op, path in _body_cases(client)}
    assert ("/api/v1/completions", "measurements.x") in found
    assert ("/api/v1/products", "routing.0.measurements.0.min") in found
    assert ("/api/v1/products/{code}/routing", "routing.0.measurements.0.max") in found
    assert ("/api/v1/lots", "quantity") in found
    assert ("/api/v1/stations/{code}/heartbeat", "queued") in found
    assert {name for _, name in _query_cases(client)} >= {"limit"}


@pytest.mark.parametrize("literal", LITERALS)
def test_every_numeric_body_field_refuses_out_of_range_numbers(client, auth, literal):
    headers = auth("admin") | {"Content-Type": "application/json", "Idempotency-Key": "k-1"}
    failures = []
    for op, path in _body_cases(client):
        raw = json.dumps(put_at({}, path, MARK)).replace(f'"{MARK}"', literal)
        resp = client.open(op.url(), method=op.method.upper(), data=raw, headers=headers)
        field = dotted(path)
        body = resp.get_json(silent=True) or {}
        fields = [e.get("field") for e in body.get("errors") or []]
        if resp.status_code != 422 or field not in fields:
            failures.append((op.method, op.path, field, resp.status_code, fields,
                             body.get("detail")))
    assert not failures, "\n".join(map(str, failures))


def test_measurement_of_310_digits_is_422_on_completions(client, auth):
    """The issue's example, with an otherwise valid completion."""
    raw = ('{"lot_no": "LOT-1", "step": "FCT", "station": "ST-1", "measurements": '
           '{"voltage": %s}}' % HUGE)
    resp = client.post("/api/v1/completions", data=raw, headers=auth("operator") | {
        "Content-Type": "application/json", "Idempotency-Key": "k-310"})
    body = assert_problem(resp, 422, "measurements.voltage")
    assert "finite" in body["errors"][0]["message"]


@pytest.mark.parametrize("literal", LITERALS)
def test_every_numeric_query_parameter_refuses_out_of_range_numbers(client, auth, literal):
    failures = []
    for op, name in _query_cases(client):
        resp = client.open(op.url(), method=op.method.upper(), query_string={name: literal},
                           headers=auth("admin"))
        body = resp.get_json(silent=True) or {}
        fields = [e.get("field") for e in body.get("errors") or []]
        # Query errors are 400 Bad request throughout the API (a malformed URL, not a body).
        if resp.status_code != 400 or f"query.{name}" not in fields:
            failures.append((op.method, op.path, name, resp.status_code, fields))
    assert not failures, "\n".join(map(str, failures))
