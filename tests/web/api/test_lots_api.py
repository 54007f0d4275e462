"""Lots: create, list, show, hold / release / scrap and the device history record."""
from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime

import pytest

from .api_helpers import assert_problem, row_counts, run_concurrently

URL = "/api/v1/lots"
LOT_NO = re.compile(r"^LOT-(\d{8})-(\d{4})$")


def _create(client, headers, product, quantity=3, **extra):
    return client.post(URL, headers=headers, json={"product": product, "quantity": quantity}
                       | extra)


def _complete(app, client, headers, lot_no, step, station, measurements=None):
    """POST a completion and decide it in-process (no worker needed); returns its id."""
    resp = client.post("/api/v1/completions", headers=headers | {
        "Idempotency-Key": uuid.uuid4().hex}, json={"lot_no": lot_no, "step": step,
                                                    "station": station,
                                                    "measurements": measurements or {}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    from web.services.completions.processing import process_completion
    with app.app_context():
        process_completion(resp.get_json()["id"])
    return resp.get_json()["id"]


# --- POST /api/v1/lots ------------------------------------------------------------------------

def test_create_lot_generates_a_number(client, auth, factory):
    product = factory.product()
    day = datetime.now().astimezone().strftime("%Y%m%d")
    resp = _create(client, auth("supervisor"), product, 5)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    m = LOT_NO.match(body["lot_no"])
    assert m, body["lot_no"]
    # The date part is today in local time (either side of midnight if the test straddles it).
    assert m.group(1) in {day, datetime.now().astimezone().strftime("%Y%m%d")}
    assert body["product"] == product and body["quantity"] == 5 and body["qty_good"] == 5
    assert body["status"] == "created" and body["current_step"] == "SMT"
    assert body["routing_revision"] == 1 and body["hold_reason"] is None


def test_generated_numbers_increase(client, auth, factory):
    product, headers = factory.product(), auth("supervisor")
    numbers = [_create(client, headers, product).get_json()["lot_no"] for _ in range(4)]
    seqs = [int(LOT_NO.match(n).group(2)) for n in numbers]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_given_lot_no_is_used_and_skipped_by_the_generator(client, auth, factory):
    product, headers = factory.product(), auth("supervisor")
    first = _create(client, headers, product).get_json()["lot_no"]
    day, seq = LOT_NO.match(first).groups()
    taken = f"LOT-{day}-{int(seq) + 1:04d}"
    resp = _create(client, headers, product, lot_no=taken)
    assert resp.status_code == 201 and resp.get_json()["lot_no"] == taken
    nxt = _create(client, headers, product)
    assert nxt.status_code == 201 and nxt.get_json()["lot_no"] not in (first, taken)


def test_duplicate_lot_no_is_409(client, auth, factory, db):
    product, headers = factory.product(), auth("supervisor")
    assert _create(client, headers, product, lot_no="L-DUP").status_code == 201
    before = row_counts(db)
    assert_problem(_create(client, headers, product, lot_no="L-DUP"), 409)
    assert row_counts(db) == before


def test_unknown_product_is_422_naming_product(client, auth, db):
    headers = auth("supervisor")
    before = row_counts(db)
    assert_problem(_create(client, headers, "NO-SUCH"), 422, "product")
    assert row_counts(db) == before


def test_serials_are_stored(client, auth, factory):
    product, headers = factory.product(), auth("supervisor")
    resp = _create(client, headers, product, 2, serials=["SN-1", "SN-2"])
    assert resp.status_code == 201
    detail = client.get(f"{URL}/{resp.get_json()['lot_no']}", headers=headers).get_json()
    assert detail["serials"] == ["SN-1", "SN-2"]


@pytest.mark.parametrize("serials", [["SN-A"], ["SN-A", "SN-B", "SN-C"]])
def test_serial_count_not_quantity_is_422(client, auth, factory, serials):
    product, headers = factory.product(), auth("supervisor")
    assert_problem(_create(client, headers, product, 2, serials=serials), 422, "serials")
    assert client.get(URL, headers=headers).get_json()["items"] == []


@pytest.mark.parametrize("body, field", [
    ({"quantity": 0}, "quantity"), ({"quantity": "3"}, "quantity"), ({"quantity": 2.5}, "quantity"),
    ({"quantity": True}, "quantity"), ({"lot_no": "bad lot"}, "lot_no"),
    ({"serials": ["ok-1", "bad serial", "ok-3"]}, "serials.1"), ({"colour": "red"}, "colour"),
])
def test_invalid_lot_is_422_naming_the_field(client, auth, factory, body, field):
    product, headers = factory.product(), auth("supervisor")
    assert_problem(client.post(URL, headers=headers, json={"product": product, "quantity": 3}
                               | body), 422, field)


def test_missing_fields_are_named(client, auth):
    resp = client.post(URL, headers=auth("supervisor"), json={})
    assert_problem(resp, 422, "product")
    assert_problem(resp, 422, "quantity")


def test_serial_already_in_another_lot_is_409(client, auth, factory, db):
    product, headers = factory.product(), auth("supervisor")
    assert _create(client, headers, product, 2, serials=["SN-X1", "SN-X2"]).status_code == 201
    before = row_counts(db)
    assert_problem(_create(client, headers, product, 2, serials=["SN-X2", "SN-X3"]), 409)
    assert row_counts(db) == before
    assert len(client.get(URL, headers=headers).get_json()["items"]) == 1


def test_twenty_concurrent_creates_get_distinct_numbers(app, client, auth, factory):
    product, headers = factory.product(), auth("supervisor")

    def create(_):
        resp = _create(app.test_client(), headers, product, 1)
        return resp.status_code, (resp.get_json() or {}).get("lot_no")

    results = run_concurrently(20, create)
    assert [s for s, _ in results] == [201] * 20, results
    numbers = [n for _, n in results]
    assert len(set(numbers)) == 20 and all(LOT_NO.match(n) for n in numbers)
    listed = client.get(URL, headers=headers, query_string={"limit": 50}).get_json()["items"]
    assert sorted(lot["lot_no"] for lot in listed) == sorted(numbers)


def test_concurrent_creates_of_one_lot_no_make_one_lot(app, client, auth, factory):
    product, headers = factory.product(), auth("supervisor")

    def create(i):
        return _create(app.test_client(), headers, product, 1, lot_no="L-RACE",
                       serials=[f"SN-RACE-{i}"]).status_code

    results = run_concurrently(10, create)
    assert sorted(results) == [201] + [409] * 9, results
    detail = client.get(f"{URL}/L-RACE", headers=headers).get_json()
    assert len(detail["serials"]) == 1


# --- GET /api/v1/lots -------------------------------------------------------------------------

def test_list_filters(client, auth, factory):
    headers = auth("supervisor")
    p1 = factory.product()
    p2 = factory.product(routing=[{"step": "FCT", "name": "Test"}])
    a, b = factory.lot(p1), factory.lot(p1)
    c = factory.lot(p2)
    client.post(f"{URL}/{b}/hold", headers=headers, json={"reason": "check"})

    def lots(**q):
        resp = client.get(URL, headers=headers, query_string=q)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return sorted(x["lot_no"] for x in resp.get_json()["items"])

    assert lots() == sorted([a, b, c])
    assert lots(status="on_hold") == [b]
    assert lots(status="created") == sorted([a, c])
    assert lots(product=p1) == sorted([a, b])
    assert lots(step="FCT") == [c]
    assert lots(product=p1, status="created") == [a]
    assert lots(status="completed") == []


def test_list_walks_all_pages(client, auth, factory):
    product, headers = factory.product(), auth("operator")
    made = {factory.lot(product) for _ in range(5)}
    seen, cursor, pages = [], None, 0
    while True:
        body = client.get(URL, headers=headers, query_string={"limit": 2} | (
            {"cursor": cursor} if cursor else {})).get_json()
        seen += [x["lot_no"] for x in body["items"]]
        pages, cursor = pages + 1, body["next_cursor"]
        if cursor is None or pages > 10:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 5 and set(seen) == made


@pytest.mark.parametrize("cursor", ["not-a-cursor!!", "Zm9vOjE", "aWQ6YWJj"])  # foo:1, id:abc
def test_invalid_cursor_is_400_naming_query_cursor(client, auth, cursor):
    resp = client.get(URL, headers=auth("operator"), query_string={"cursor": cursor})
    assert_problem(resp, 400, "query.cursor")


@pytest.mark.parametrize("query, field", [
    ({"status": "lost"}, "query.status"), ({"limit": 0}, "query.limit"),
    ({"product": "bad code"}, "query.product"), ({"sort": "id"}, "query.sort"),
])
def test_invalid_filter_is_400_naming_it(client, auth, query, field):
    resp = client.get(URL, headers=auth("operator"), query_string=query)
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code, field)


# --- GET /api/v1/lots/{lot_no} ----------------------------------------------------------------

def test_show_lot_with_completions_and_serials(app, client, auth, factory):
    product, headers = factory.product(), auth("operator")
    station = factory.station(steps=["SMT"])
    lot = factory.lot(product, 2, serials=["U-1", "U-2"])
    cid = _complete(app, client, headers, lot, "SMT", station)
    resp = client.get(f"{URL}/{lot}", headers=headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["lot_no"] == lot and body["serials"] == ["U-1", "U-2"]
    assert [c["id"] for c in body["completions"]] == [cid]
    assert body["completions"][0]["status"] == "accepted" and body["current_step"] == "FCT"


def test_show_unknown_lot_is_404(client, auth):
    assert_problem(client.get(f"{URL}/LOT-00000000-0000", headers=auth("operator")), 404)


# --- hold / release / scrap -------------------------------------------------------------------

def _action(client, headers, lot, action, reason="checking"):
    return client.post(f"{URL}/{lot}/{action}", headers=headers, json={"reason": reason})


def test_hold_and_release_keep_the_step_and_are_audited(app, client, auth, factory):
    headers = auth("supervisor")
    station = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=1)
    _complete(app, client, headers, lot, "SMT", station)  # the lot is now at FCT
    held = _action(client, headers, lot, "hold", "suspect solder paste")
    assert held.status_code == 200, held.get_data(as_text=True)
    assert held.get_json()["status"] == "on_hold"
    assert held.get_json()["hold_reason"] == "suspect solder paste"
    released = _action(client, headers, lot, "release", "paste ok")
    assert released.status_code == 200
    body = released.get_json()
    assert body["status"] == "in_process" and body["current_step"] == "FCT"
    assert body["hold_reason"] is None
    audit = client.get(f"{URL}/{lot}/dhr", headers=headers).get_json()["audit"]
    actions = [a["action"] for a in audit]
    assert actions[0] == "lot.created" and actions[-2:] == ["lot.hold", "lot.release"]
    assert audit[-1]["before"]["status"] == "on_hold" and audit[-1]["after"]["reason"] == "paste ok"
    assert audit[-1]["actor"].startswith("supervisor-")


def test_scrap_then_no_more_changes(client, auth, factory, db):
    headers = auth("supervisor")
    lot = factory.lot()
    scrapped = _action(client, headers, lot, "scrap", "dropped")
    assert scrapped.status_code == 200 and scrapped.get_json()["status"] == "scrapped"
    before = row_counts(db)
    for action in ("hold", "release", "scrap"):
        assert_problem(_action(client, headers, lot, action), 409)
    assert row_counts(db) == before
    actions = [a["action"] for a in client.get(f"{URL}/{lot}/dhr", headers=headers)
               .get_json()["audit"]]
    assert actions == ["lot.created", "lot.scrap"]


def test_release_of_a_lot_not_on_hold_is_409(client, auth, factory, db):
    headers = auth("supervisor")
    lot = factory.lot()
    before = row_counts(db)
    assert_problem(_action(client, headers, lot, "release"), 409)
    assert row_counts(db) == before
    assert client.get(f"{URL}/{lot}", headers=headers).get_json()["status"] == "created"


def test_hold_twice_is_409_and_held_lot_can_be_scrapped(client, auth, factory):
    headers = auth("supervisor")
    lot = factory.lot()
    assert _action(client, headers, lot, "hold").status_code == 200
    assert_problem(_action(client, headers, lot, "hold"), 409)
    assert _action(client, headers, lot, "scrap").get_json()["status"] == "scrapped"


@pytest.mark.parametrize("action", ["hold", "release", "scrap"])
@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5},
                                  {"reason": "x" * 501}])
def test_reason_is_required(client, auth, factory, db, action, body):
    headers = auth("supervisor")
    lot = factory.lot()
    before = row_counts(db)
    assert_problem(client.post(f"{URL}/{lot}/{action}", headers=headers, json=body), 422,
                   "reason")
    assert row_counts(db) == before


@pytest.mark.parametrize("action", ["hold", "release", "scrap"])
def test_state_change_of_unknown_lot_is_404(client, auth, action):
    assert_problem(_action(client, auth("supervisor"), "NO-LOT", action), 404)


# --- GET /api/v1/lots/{lot_no}/dhr ------------------------------------------------------------

def _lot_through_fct(app, client, factory, headers):
    station = factory.station(steps=["SMT", "FCT", "PACK"])
    lot = factory.lot(quantity=2)
    smt = _complete(app, client, headers, lot, "SMT", station)
    fct = _complete(app, client, headers, lot, "FCT", station,
                    {"voltage": 3.31, "current_ma": 42})
    return lot, station, smt, fct


def test_dhr_json_structure(app, client, auth, factory):
    headers = auth("operator")
    lot, station, smt, fct = _lot_through_fct(app, client, factory, headers)
    resp = client.get(f"{URL}/{lot}/dhr", headers=headers)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert {"lot", "steps", "audit", "generated_at"} <= set(body)
    assert body["lot"]["lot_no"] == lot and body["lot"]["current_step"] == "PACK"
    assert [s["step"] for s in body["steps"]] == ["SMT", "FCT", "PACK"]
    assert [s["seq"] for s in body["steps"]] == sorted(s["seq"] for s in body["steps"])
    smt_step, fct_step, pack_step = body["steps"]
    assert [c["id"] for c in smt_step["completions"]] == [smt]
    assert pack_step["completions"] == []
    (c,) = fct_step["completions"]
    assert c["id"] == fct and c["status"] == "accepted" and c["station"] == station
    assert c["operator"].startswith("operator-")
    assert c["measurements"] == [
        {"name": "voltage", "value": 3.31, "unit": "V", "min": 3.2, "max": 3.4, "pass": True},
        {"name": "current_ma", "value": 42, "unit": "mA", "min": 30, "max": 50, "pass": True}]
    actions = [a["action"] for a in body["audit"]]
    assert actions[0] == "lot.created" and actions.count("completion.accepted") == 2


def test_dhr_csv(app, client, auth, factory):
    headers = auth("operator")
    lot, station, smt, fct = _lot_through_fct(app, client, factory, headers)
    resp = client.get(f"{URL}/{lot}/dhr", headers=headers, query_string={"format": "csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert lot in resp.headers.get("Content-Disposition", "")
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    header, data = rows[0], rows[1:]
    for col in ("lot_no", "step", "completion_id", "measurement", "value", "unit", "min", "max",
                "pass", "station", "operator"):
        assert col in header
    recs = [dict(zip(header, r)) for r in data]
    assert all(r["lot_no"] == lot for r in recs)
    fct_rows = [r for r in recs if r["step"] == "FCT"]
    assert [(r["measurement"], r["value"], r["unit"], r["min"], r["max"], r["pass"])
            for r in fct_rows] == [("voltage", "3.31", "V", "3.2", "3.4", "True"),
                                   ("current_ma", "42", "mA", "30", "50", "True")]
    smt_rows = [r for r in recs if r["step"] == "SMT"]
    assert len(smt_rows) == 1 and smt_rows[0]["completion_id"] == str(smt)
    assert len(recs) == 3


@pytest.mark.parametrize("fmt", ["xml", "PDF", ""])
def test_dhr_unknown_format_is_400(client, auth, factory, fmt):
    lot = factory.lot()
    resp = client.get(f"{URL}/{lot}/dhr", headers=auth("operator"), query_string={"format": fmt})
    assert_problem(resp, 400, "query.format")


def test_dhr_unknown_lot_is_404(client, auth):
    assert_problem(client.get(f"{URL}/NO-LOT/dhr", headers=auth("operator")), 404)
    assert_problem(client.get(f"{URL}/NO-LOT/dhr?format=csv", headers=auth("operator")), 404)
