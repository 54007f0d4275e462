"""Products and their versioned routings: /api/v1/products."""
from __future__ import annotations

import copy

import pytest

from .api_helpers import assert_problem, row_counts

URL = "/api/v1/products"
ROUTING = [
    {"step": "SMT", "name": "SMT assembly"},
    {"step": "FCT", "name": "Functional test", "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50, "required": False}]},
    {"step": "PACK", "name": "Packing", "label_template": "box"},
]
NEW_ROUTING = [
    {"step": "SMT", "name": "SMT assembly"},
    {"step": "AOI", "name": "Optical inspection"},
    {"step": "FCT", "name": "Functional test"},
]


def _product(code="P-100", routing=None, name="Widget"):
    return {"code": code, "name": name, "routing": copy.deepcopy(routing or ROUTING)}


def _assert_routing_echoed(got: list[dict], sent: list[dict]):
    assert [s["step"] for s in got] == [s["step"] for s in sent]
    assert [s["seq"] for s in got] == sorted(s["seq"] for s in got)
    for g, s in zip(got, sent):
        assert g["name"] == s["name"]
        assert g["requires_firmware"] is s.get("requires_firmware", False)
        assert g["label_template"] == s.get("label_template")
        assert len(g["measurements"]) == len(s.get("measurements", []))
        for gm, sm in zip(g["measurements"], s.get("measurements", [])):
            assert {k: gm[k] for k in sm} == sm
            assert gm["required"] is sm.get("required", True)


# --- POST /api/v1/products --------------------------------------------------------------------

def test_create_product_is_201_with_revision_1_and_routing(client, auth):
    resp = client.post(URL, headers=auth("admin"), json=_product())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["code"] == "P-100" and body["name"] == "Widget"
    assert body["revision"] == 1 and body["revisions"] == [1]
    _assert_routing_echoed(body["routing"], ROUTING)
    # The stored product reads back the same.
    again = client.get(f"{URL}/P-100", headers=auth("operator")).get_json()
    assert again == body


def test_create_is_audited(client, auth, db):
    admin = auth("admin")
    before = row_counts(db)["audit_events"]
    assert client.post(URL, headers=admin, json=_product("P-AUD")).status_code == 201
    assert row_counts(db)["audit_events"] == before + 1


def test_duplicate_code_is_409(client, auth, db):
    assert client.post(URL, headers=auth("admin"), json=_product("P-DUP")).status_code == 201
    before = row_counts(db)
    resp = client.post(URL, headers=auth("admin"), json=_product("P-DUP", name="Other"))
    assert_problem(resp, 409)
    assert row_counts(db) == before
    assert client.get(f"{URL}/P-DUP", headers=auth("admin")).get_json()["name"] == "Widget"


def _with(**changes):
    body = _product()
    for path, value in changes.items():
        target = body
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if value is _DROP:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return body


_DROP = object()
DUP_STEPS = [{"step": "SMT", "name": "a"}, {"step": "SMT", "name": "b"}]
DUP_MEAS = [{"step": "FCT", "name": "f", "measurements": [{"name": "v"}, {"name": "v"}]}]


@pytest.mark.parametrize("body, field", [
    (_with(routing=[]), "routing"),
    (_with(routing=DUP_STEPS), "routing"),
    (_with(routing=DUP_MEAS), "routing.0.measurements"),
    (_with(routing__1__measurements__0__min=5, routing__1__measurements__0__max=1),
     "routing.1.measurements.0"),
    (_with(code="bad code!"), "code"),
    (_with(code="-leading-dash"), "code"),
    (_with(code="X" * 33), "code"),
    (_with(routing__0__step="has space"), "routing.0.step"),
    (_with(routing__2__label_template="Box Label"), "routing.2.label_template"),
    (_with(extra_field=1), "extra_field"),
    (_with(routing__0__colour="red"), "routing.0.colour"),
    (_with(name=123), "name"),
    (_with(name=""), "name"),
    (_with(code=_DROP), "code"),
    (_with(routing="SMT,FCT"), "routing"),
    (_with(routing__0__requires_firmware="yes"), "routing.0.requires_firmware"),
    (_with(routing__1__measurements__0__required=1), "routing.1.measurements.0.required"),
    (_with(routing__1__measurements="voltage"), "routing.1.measurements"),
], ids=["empty-routing", "dup-steps", "dup-measurements", "min-gt-max", "code-space",
        "code-dash", "code-long", "step-pattern", "template-pattern", "extra-top",
        "extra-step", "name-int", "name-empty", "code-missing", "routing-str",
        "firmware-str", "required-int", "measurements-str"])
def test_invalid_product_is_422_naming_the_field(client, auth, db, body, field):
    admin = auth("admin")
    before = row_counts(db)
    assert_problem(client.post(URL, headers=admin, json=body), 422, field)
    assert row_counts(db) == before
    assert client.get(URL, headers=auth("admin")).get_json()["items"] == []


def test_measurement_limit_of_wrong_type_names_the_limit(client, auth):
    """A string limit is reported at the limit itself, not at a pydantic union branch."""
    body = _with(routing__1__measurements__0__min="3.2")
    assert_problem(client.post(URL, headers=auth("admin"), json=body), 422,
                   "routing.1.measurements.0.min")


def test_create_product_not_json_is_415(client, auth):
    resp = client.post(URL, headers=auth("admin"), data="code=P", content_type="text/plain")
    assert_problem(resp, 415)


# --- POST /api/v1/products/{code}/routing -----------------------------------------------------

def test_new_routing_is_revision_2(client, auth, factory):
    code = factory.product("P-REV")
    resp = client.post(f"{URL}/{code}/routing", headers=auth("admin"),
                       json={"routing": NEW_ROUTING})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["revision"] == 2 and body["revisions"] == [1, 2]
    _assert_routing_echoed(body["routing"], NEW_ROUTING)
    assert client.get(f"{URL}/{code}", headers=auth("operator")).get_json() == body


def test_routing_for_unknown_product_is_404(client, auth, db):
    admin = auth("admin")
    before = row_counts(db)
    resp = client.post(f"{URL}/NOPE/routing", headers=admin, json={"routing": NEW_ROUTING})
    assert_problem(resp, 404)
    assert row_counts(db) == before


@pytest.mark.parametrize("body, field", [
    ({"routing": []}, "routing"),
    ({"routing": DUP_STEPS}, "routing"),
    ({}, "routing"),
    ({"routing": NEW_ROUTING, "code": "P-REV2"}, "code"),
])
def test_invalid_routing_is_422(client, auth, factory, body, field):
    code = factory.product()
    assert_problem(client.post(f"{URL}/{code}/routing", headers=auth("admin"), json=body), 422,
                   field)
    assert client.get(f"{URL}/{code}", headers=auth("admin")).get_json()["revision"] == 1


def test_existing_lots_keep_their_pinned_revision(client, auth, factory):
    code = factory.product("P-PIN")
    sup = auth("supervisor")
    old = client.post("/api/v1/lots", headers=sup, json={"product": code, "quantity": 2})
    assert old.status_code == 201 and old.get_json()["routing_revision"] == 1
    old_no = old.get_json()["lot_no"]
    revised = [{"step": "AOI", "name": "Optical inspection"}, {"step": "PACK", "name": "Pack"}]
    assert client.post(f"{URL}/{code}/routing", headers=auth("admin"),
                       json={"routing": revised}).status_code == 201
    kept = client.get(f"/api/v1/lots/{old_no}", headers=sup).get_json()
    assert kept["routing_revision"] == 1 and kept["current_step"] == "SMT"
    new = client.post("/api/v1/lots", headers=sup, json={"product": code, "quantity": 2})
    assert new.status_code == 201
    assert new.get_json()["routing_revision"] == 2 and new.get_json()["current_step"] == "AOI"
    dhr = client.get(f"/api/v1/lots/{old_no}/dhr", headers=sup).get_json()
    assert [s["step"] for s in dhr["steps"]] == ["SMT", "FCT", "PACK"]


# --- GET /api/v1/products, /api/v1/products/{code} --------------------------------------------

def test_list_walks_all_pages_with_the_cursor(client, auth, factory):
    codes = {factory.product(f"P-L{i}") for i in range(5)}
    headers, seen, cursor, pages = auth("operator"), [], None, 0
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        resp = client.get(URL, headers=headers, query_string=query)
        assert resp.status_code == 200
        body = resp.get_json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 2
        seen += [p["code"] for p in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not terminate"
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5 and set(seen) == codes


def test_list_items_carry_the_current_routing(client, auth, factory):
    factory.product("P-ONE")
    items = client.get(URL, headers=auth("operator")).get_json()["items"]
    assert [p["code"] for p in items] == ["P-ONE"]
    assert items[0]["revision"] == 1 and [s["step"] for s in items[0]["routing"]] == [
        "SMT", "FCT", "PACK"]


@pytest.mark.parametrize("query, field", [
    ({"limit": 0}, "query.limit"), ({"limit": 201}, "query.limit"),
    ({"limit": "ten"}, "query.limit"), ({"cursor": "x" * 201}, "query.cursor"),
    ({"colour": "red"}, "query.colour"),
])
def test_list_bad_query_is_400_naming_the_parameter(client, auth, query, field):
    assert_problem(client.get(URL, headers=auth("operator"), query_string=query), 400, field)


def test_list_bad_cursor_is_400(client, auth):
    resp = client.get(URL, headers=auth("operator"), query_string={"cursor": "%%%not-ours"})
    assert_problem(resp, 400, "query.cursor")


def test_get_one_product(client, auth, factory):
    factory.product("P-GET")
    resp = client.get(f"{URL}/P-GET", headers=auth("operator"))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["code"] == "P-GET" and body["revision"] == 1
    fct = body["routing"][1]
    assert fct["step"] == "FCT" and [m["name"] for m in fct["measurements"]] == [
        "voltage", "current_ma"]


def test_get_unknown_product_is_404(client, auth):
    assert_problem(client.get(f"{URL}/NO-SUCH", headers=auth("operator")), 404)
