"""One error shape everywhere: RFC 9457 application/problem+json for every 4xx."""
from __future__ import annotations

import pytest

from .api_helpers import PROBLEM, assert_problem, row_counts


def test_unknown_route_is_404_problem(client, auth):
    for path in ("/api/v1/nothing-here", "/nope", "/api/v2/lots"):
        body = assert_problem(client.get(path, headers=auth("operator")), 404)
        assert body["type"] == "about:blank" and body["detail"]


def test_unknown_route_without_token_is_404_not_html(client):
    resp = client.get("/api/v1/nothing-here")
    assert_problem(resp, 404)
    assert b"<html" not in resp.get_data().lower()


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/v1/products", {"GET", "POST"}),
    ("PUT", "/api/v1/completions", {"POST"}),
    ("GET", "/api/v1/auth/token", {"POST"}),
    ("DELETE", "/api/v1/lots/LOT-1", {"GET"}),
    ("GET", "/api/v1/lots/LOT-1/hold", {"POST"}),
    ("PATCH", "/api/v1/stations/ST-1/heartbeat", {"POST"}),
    ("POST", "/healthz", {"GET"}),
])
def test_wrong_method_is_405_with_allow(client, auth, method, path, allowed):
    resp = client.open(path, method=method, headers=auth("admin"), json={})
    assert_problem(resp, 405)
    allow = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert allowed <= allow, allow
    assert method not in allow


def test_problem_carries_the_request_id(client, auth):
    resp = client.get("/api/v1/lots/NO-LOT", headers=auth("operator") | {"X-Request-ID": "rq-42"})
    body = assert_problem(resp, 404)
    assert body["request_id"] == "rq-42" and resp.headers["X-Request-ID"] == "rq-42"


def test_field_errors_have_field_and_message(client, auth):
    resp = client.post("/api/v1/lots", headers=auth("supervisor"),
                       json={"product": "bad code", "quantity": 0})
    body = assert_problem(resp, 422)
    assert {e["field"] for e in body["errors"]} == {"product", "quantity"}
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    assert "product" in body["detail"] and "quantity" in body["detail"]


def test_oversize_body_on_any_endpoint_is_413(client, auth, db):
    admin = auth("admin")
    before = row_counts(db)
    resp = client.post("/api/v1/products", headers=admin, data="x" * (1024 * 1024 + 1),
                       content_type="application/json")
    assert_problem(resp, 413)
    assert row_counts(db) == before


@pytest.fixture()
def world(factory, auth, client):
    """A product, a station, an active lot, a scrapped lot and a completion."""
    product = factory.product("P-W")
    station = factory.station("ST-W", steps=["SMT"])
    lot = factory.lot(product, 2, lot_no="L-ACTIVE")
    factory.lot(product, 1, lot_no="L-SCRAP")
    sup = auth("supervisor")
    assert client.post("/api/v1/lots/L-SCRAP/scrap", headers=sup,
                       json={"reason": "x"}).status_code == 200
    done = client.post("/api/v1/completions", headers=auth("operator") | {"Idempotency-Key": "k1"},
                       json={"lot_no": lot, "step": "SMT", "station": station})
    assert done.status_code == 202
    return {"product": product, "station": station, "lot": lot}


ROUTING = [{"step": "S", "name": "s"}]
C = {"lot_no": "L-ACTIVE", "step": "SMT", "station": "ST-W"}
CASES = [
    # (role, method, path, kwargs, status)
    (None, "POST", "/api/v1/auth/token", {"json": {"username": "x", "password": "wrong-pw"}}, 401),
    (None, "POST", "/api/v1/auth/token", {"json": {}}, 422),
    (None, "GET", "/api/v1/lots", {}, 401),
    ("operator", "POST", "/api/v1/products", {"json": {"code": "P-X", "name": "x",
                                                       "routing": ROUTING}}, 403),
    ("admin", "POST", "/api/v1/products", {"json": {"code": "P-W", "name": "x",
                                                    "routing": ROUTING}}, 409),
    ("admin", "POST", "/api/v1/products", {"json": {"code": "P-Y", "name": "x",
                                                    "routing": []}}, 422),
    ("admin", "POST", "/api/v1/products", {"data": "{", "content_type": "application/json"}, 400),
    ("admin", "POST", "/api/v1/products", {"data": "x", "content_type": "text/plain"}, 415),
    ("admin", "POST", "/api/v1/products/NOPE/routing", {"json": {"routing": ROUTING}}, 404),
    ("operator", "GET", "/api/v1/products/NOPE", {}, 404),
    ("operator", "GET", "/api/v1/products?limit=0", {}, 400),
    ("admin", "POST", "/api/v1/stations", {"json": {"code": "ST-W", "name": "x"}}, 409),
    ("admin", "POST", "/api/v1/stations", {"json": {"code": "ST-Z", "name": "x",
                                                    "printer_uri": "http://x"}}, 422),
    ("supervisor", "POST", "/api/v1/stations", {"json": {"code": "ST-Q", "name": "x"}}, 403),
    ("operator", "POST", "/api/v1/stations/NOPE/heartbeat", {}, 404),
    ("operator", "POST", "/api/v1/lots", {"json": {"product": "P-W", "quantity": 1}}, 403),
    ("supervisor", "POST", "/api/v1/lots", {"json": {"product": "P-W", "quantity": 1,
                                                     "lot_no": "L-ACTIVE"}}, 409),
    ("supervisor", "POST", "/api/v1/lots", {"json": {"product": "NOPE", "quantity": 1}}, 422),
    ("operator", "GET", "/api/v1/lots?status=lost", {}, 400),
    ("operator", "GET", "/api/v1/lots?cursor=bogus!", {}, 400),
    ("operator", "GET", "/api/v1/lots/NOPE", {}, 404),
    ("supervisor", "POST", "/api/v1/lots/L-ACTIVE/release", {"json": {"reason": "r"}}, 409),
    ("supervisor", "POST", "/api/v1/lots/L-SCRAP/hold", {"json": {"reason": "r"}}, 409),
    ("supervisor", "POST", "/api/v1/lots/L-ACTIVE/hold", {"json": {}}, 422),
    ("supervisor", "POST", "/api/v1/lots/NOPE/scrap", {"json": {"reason": "r"}}, 404),
    ("operator", "GET", "/api/v1/lots/NOPE/dhr", {}, 404),
    ("operator", "GET", "/api/v1/lots/L-ACTIVE/dhr?format=xml", {}, 400),
    ("operator", "POST", "/api/v1/completions", {"json": C}, 400),
    ("operator", "POST", "/api/v1/completions", {"json": C | {"lot_no": "NOPE"},
                                                 "headers": {"Idempotency-Key": "k2"}}, 422),
    ("operator", "POST", "/api/v1/completions", {"json": C | {"step": "PACK"},
                                                 "headers": {"Idempotency-Key": "k1"}}, 422),
    ("operator", "POST", "/api/v1/completions", {"json": [C],
                                                 "headers": {"Idempotency-Key": "k3"}}, 422),
    ("operator", "POST", "/api/v1/completions", {"data": "{", "content_type": "application/json",
                                                 "headers": {"Idempotency-Key": "k4"}}, 400),
    ("operator", "POST", "/api/v1/completions", {"data": "a=b", "headers": {
        "Idempotency-Key": "k5"}, "content_type": "application/x-www-form-urlencoded"}, 415),
    ("operator", "GET", "/api/v1/completions/999999999", {}, 404),
    ("operator", "GET", "/api/v1/completions/abc", {}, 404),
    ("operator", "DELETE", "/api/v1/completions/1", {}, 405),
]


@pytest.mark.parametrize("role, method, path, kwargs, status", CASES,
                         ids=[f"{c[4]}-{c[1]}-{c[2]}" for c in CASES])
def test_every_4xx_is_problem_json(client, auth, db, world, role, method, path, kwargs, status):
    kwargs = dict(kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if role:
        headers |= auth(role)
    before = row_counts(db)
    resp = client.open(path, method=method, headers=headers, **kwargs)
    body = assert_problem(resp, status)
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    assert body["type"] == "about:blank"
    assert isinstance(body.get("detail"), str) and body["detail"]
    assert isinstance(body.get("request_id"), str) and body["request_id"]
    for err in body.get("errors") or []:
        assert isinstance(err.get("field"), str) and err["field"]
        assert isinstance(err.get("message"), str) and err["message"]
    # A rejected request writes nothing (no completion, outbox message or audit row).
    assert row_counts(db) == before


NUL_CASES = [
    ("operator", "GET", "/api/v1/lots/L%00X", {}),
    ("admin", "POST", "/api/v1/products", {"json": {"code": "P-N", "name": "a\u0000b",
                                                    "routing": ROUTING}}),
    ("supervisor", "POST", "/api/v1/lots/L-ACTIVE/hold", {"json": {"reason": "a\u0000b"}}),
    ("operator", "POST", "/api/v1/completions", {"json": C, "headers": {
        "Idempotency-Key": "k\x00nul"}}),
    (None, "POST", "/api/v1/auth/token", {"json": {"username": "a\u0000b",
                                                   "password": "long-enough"}}),
]


@pytest.mark.parametrize("role, method, path, kwargs", NUL_CASES,
                         ids=[f"{c[1]}-{c[2]}-{i}" for i, c in enumerate(NUL_CASES)])
def test_nul_characters_are_a_4xx_not_a_500(client, auth, db, world, role, method, path, kwargs):
    """Bad input is a 4xx problem, never a 500 (PostgreSQL cannot store NUL in text/jsonb)."""
    kwargs = dict(kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if role:
        headers |= auth(role)
    before = row_counts(db)
    resp = client.open(path, method=method, headers=headers, **kwargs)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert_problem(resp, resp.status_code)
    db.session.rollback()  # requests here share the db fixture's session (tests/conftest.py)
    assert row_counts(db) == before
