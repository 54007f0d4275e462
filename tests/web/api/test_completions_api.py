"""Process completions: POST /api/v1/completions (idempotent hot path) and GET one."""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from .api_helpers import assert_problem, row_counts, run_concurrently

URL = "/api/v1/completions"


@pytest.fixture()
def line(factory, auth):
    """A product, a station serving every step, a lot at SMT and an operator's headers."""
    product = factory.product()
    station = factory.station(steps=["SMT", "FCT", "PACK"])
    lot = factory.lot(product, 4)
    return {"product": product, "station": station, "lot": lot, "headers": auth("operator")}


def _body(line, **over):
    return {"lot_no": line["lot"], "step": "SMT", "station": line["station"],
            "measurements": {}} | over


def _post(client, headers, body, key=None, **kw):
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = key
    if "data" in kw:
        return client.post(URL, headers=h, **kw)
    return client.post(URL, headers=h, json=body)


def _key():
    return f"key-{uuid.uuid4().hex}"


def _count(db, table="completions"):
    return row_counts(db)[table]


# --- 202 and replay ---------------------------------------------------------------------------

def test_post_is_202_with_id_and_location(client, line, db):
    before = row_counts(db)
    resp = _post(client, line["headers"], _body(line), _key())
    assert resp.status_code == 202, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"id", "status"} and body["status"] == "received"
    assert isinstance(body["id"], int)
    assert resp.headers["Location"] == f"{URL}/{body['id']}"
    assert "Idempotent-Replayed" not in resp.headers
    after = row_counts(db)
    # One transaction wrote the completion, its outbox message and its audit row.
    assert after == {t: n + 1 for t, n in before.items()}
    shown = client.get(resp.headers["Location"], headers=line["headers"])
    assert shown.status_code == 200 and shown.get_json()["status"] == "received"


def test_same_key_same_body_replays_the_first_answer(client, line, db):
    key = _key()
    first = _post(client, line["headers"], _body(line), key)
    assert first.status_code == 202
    before = row_counts(db)
    again = _post(client, line["headers"], _body(line), key)
    assert again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert row_counts(db) == before


def test_replay_ignores_json_key_order_and_whitespace(client, line):
    key = _key()
    first = _post(client, line["headers"], _body(line), key)
    raw = json.dumps(dict(reversed(list(_body(line).items()))), indent=2)
    again = _post(client, line["headers"], None, key, data=raw, content_type="application/json")
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]


def test_same_key_different_body_is_422(client, line, db):
    key = _key()
    assert _post(client, line["headers"], _body(line), key).status_code == 202
    before = row_counts(db)
    resp = _post(client, line["headers"], _body(line, unit_serial="SN-9"), key)
    assert_problem(resp, 422, "header.Idempotency-Key")
    assert row_counts(db) == before


def test_same_key_from_another_user_is_422(client, line, factory, db):
    key = _key()
    assert _post(client, line["headers"], _body(line), key).status_code == 202
    other = factory.headers("supervisor")  # a different user (and role)
    before = row_counts(db)
    assert_problem(_post(client, other, _body(line), key), 422, "header.Idempotency-Key")
    assert row_counts(db) == before


# --- header problems --------------------------------------------------------------------------

@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_idempotency_key_is_400(client, line, db, key):
    before = row_counts(db)
    assert_problem(_post(client, line["headers"], _body(line), key), 400,
                   "header.Idempotency-Key")
    assert row_counts(db) == before


def test_overlong_idempotency_key_is_400(client, line, db):
    before = row_counts(db)
    assert_problem(_post(client, line["headers"], _body(line), "k" * 256), 400,
                   "header.Idempotency-Key")
    assert row_counts(db) == before


# --- unknown references and bad bodies --------------------------------------------------------

@pytest.mark.parametrize("over, field", [
    ({"lot_no": "LOT-NOPE"}, "lot_no"),
    ({"station": "ST-NOPE"}, "station"),
    ({"step": "BURNIN"}, "step"),
])
def test_unknown_reference_is_422_naming_it(client, line, db, over, field):
    before = row_counts(db)
    assert_problem(_post(client, line["headers"], _body(line, **over), _key()), 422, field)
    assert row_counts(db) == before


def test_key_of_a_rejected_request_is_not_burnt(client, line):
    key = _key()
    assert_problem(_post(client, line["headers"], _body(line, step="BURNIN"), key), 422, "step")
    resp = _post(client, line["headers"], _body(line), key)
    assert resp.status_code == 202 and "Idempotent-Replayed" not in resp.headers


BAD_BODIES = [
    ({"measurements": {"voltage": "3.3"}}, "measurements.voltage"),
    ({"measurements": {"voltage": True}}, "measurements.voltage"),
    ({"measurements": {"voltage": None}}, "measurements.voltage"),
    ({"measurements": [3.3]}, "measurements"),
    ({"qty_good": -1}, "qty_good"),
    ({"qty_good": 1.5}, "qty_good"),
    ({"qty_good": "2"}, "qty_good"),
    ({"qty_scrap": -3}, "qty_scrap"),
    ({"unit_serial": "has space"}, "unit_serial"),
    ({"firmware_sha256": "ABC"}, "firmware_sha256"),
    ({"firmware_version": ""}, "firmware_version"),
    ({"lot_no": 12}, "lot_no"),
    ({"step": "bad step"}, "step"),
    ({"operator": "someone-else"}, "operator"),
    ({"status": "accepted"}, "status"),
]


@pytest.mark.parametrize("over, field", BAD_BODIES,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_BODIES)])
def test_invalid_body_is_422_naming_the_field(client, line, db, over, field):
    before = row_counts(db)
    assert_problem(_post(client, line["headers"], _body(line, **over), _key()), 422, field)
    assert row_counts(db) == before


@pytest.mark.parametrize("drop", ["lot_no", "step", "station"])
def test_missing_required_field_is_422(client, line, db, drop):
    body = _body(line)
    del body[drop]
    before = row_counts(db)
    assert_problem(_post(client, line["headers"], body, _key()), 422, drop)
    assert row_counts(db) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_measurement_is_422(client, line, db, literal):
    raw = json.dumps(_body(line, measurements={"voltage": "X"})).replace('"X"', literal)
    before = row_counts(db)
    resp = _post(client, line["headers"], None, _key(), data=raw, content_type="application/json")
    assert_problem(resp, 422, "measurements.voltage")
    assert row_counts(db) == before


@pytest.mark.parametrize("raw", ['{"lot_no": ', "not json", '{"lot_no": "L",}', "\x00\x01"])
def test_malformed_json_is_400(client, line, db, raw):
    before = row_counts(db)
    resp = _post(client, line["headers"], None, _key(), data=raw, content_type="application/json")
    assert_problem(resp, 400, "body")
    assert row_counts(db) == before


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None])
def test_not_json_content_type_is_415(client, line, db, ctype):
    before = row_counts(db)
    kw = {"data": json.dumps(_body(line))}
    if ctype:
        kw["content_type"] = ctype
    assert_problem(_post(client, line["headers"], None, _key(), **kw), 415)
    assert row_counts(db) == before


@pytest.mark.parametrize("raw", ["[]", '[{"lot_no": "L"}]', '"text"', "42", "null"])
def test_json_that_is_not_an_object_is_422(client, line, db, raw):
    before = row_counts(db)
    resp = _post(client, line["headers"], None, _key(), data=raw, content_type="application/json")
    assert_problem(resp, 422, "body")
    assert row_counts(db) == before


def test_oversize_body_is_413(client, line, db):
    body = _body(line, firmware_version="1.0", padding="x" * (1024 * 1024 + 10))
    before = row_counts(db)
    resp = _post(client, line["headers"], body, _key())
    assert_problem(resp, 413)
    assert row_counts(db) == before


# --- concurrency ------------------------------------------------------------------------------

def test_twenty_concurrent_posts_with_one_key_make_one_completion(app, line, db):
    key, body = _key(), _body(line)

    def post(_):
        resp = _post(app.test_client(), line["headers"], body, key)
        return resp.status_code, resp.get_json(), dict(resp.headers)

    results = run_concurrently(20, post)
    assert _count(db) == 1
    assert _count(db, "outbox_messages") == 1
    statuses = [s for s, _, _ in results]
    assert set(statuses) <= {202, 409}, statuses
    accepted = [b["id"] for s, b, _ in results if s == 202]
    assert accepted and len(set(accepted)) == 1
    for status, body_, headers in results:
        if status == 409:
            assert headers["Content-Type"].startswith("application/problem+json")
            assert "Retry-After" in headers
    assert sum(1 for s, _, h in results if s == 202 and "Idempotent-Replayed" not in h) == 1


def test_in_flight_retry_is_409_until_the_first_commits(client, line, db, pg_database):
    from web.services.completions import IDEMPOTENCY_LOCK_NS
    key = _key()
    before = row_counts(db)
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as holder:  # a transaction is open until commit
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (IDEMPOTENCY_LOCK_NS, key))
        resp = _post(client, line["headers"], _body(line), key)
        assert_problem(resp, 409)
        assert int(resp.headers["Retry-After"]) >= 1
        assert row_counts(db) == before
        holder.commit()
        resp = _post(client, line["headers"], _body(line), key)
        assert resp.status_code == 202, resp.get_data(as_text=True)
    assert _count(db) == before["completions"] + 1


# --- GET /api/v1/completions/{id} -------------------------------------------------------------

def test_get_completion_received(client, line, factory):
    cid = _post(client, line["headers"], _body(line, measurements={"temp_c": 24.5}),
                _key()).get_json()["id"]
    resp = client.get(f"{URL}/{cid}", headers=factory.headers("supervisor"))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == cid and body["status"] == "received" and body["reasons"] == []
    assert body["lot_no"] == line["lot"] and body["step"] == "SMT"
    assert body["station"] == line["station"] and body["operator"].startswith("operator-")
    assert body["measurements"] == {"temp_c": 24.5} and body["processed_at"] is None


def test_get_completion_after_processing(app, client, factory, auth):
    station = factory.station(steps=["FCT"])
    product = factory.product(routing=[{"step": "FCT", "name": "Test", "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}])
    lot = factory.lot(product, 1)
    headers = auth("operator")
    cid = _post(client, headers, {"lot_no": lot, "step": "FCT", "station": station,
                                  "measurements": {"voltage": 3.9}}, _key()).get_json()["id"]
    from web.services.completions.processing import process_completion
    with app.app_context():
        assert process_completion(cid) == "rejected"
    body = client.get(f"{URL}/{cid}", headers=headers).get_json()
    assert body["status"] == "rejected" and body["processed_at"]
    assert [r["code"] for r in body["reasons"]] == ["out_of_spec"]
    assert body["results"] == [{"name": "voltage", "value": 3.9, "unit": "V", "min": 3.2,
                                "max": 3.4, "pass": False}]


def test_get_unknown_completion_is_404(client, auth):
    assert_problem(client.get(f"{URL}/999999999", headers=auth("operator")), 404)


@pytest.mark.parametrize("cid", ["abc", "1.5", "-1", "1e3"])
def test_get_non_integer_completion_id_is_404(client, auth, cid):
    assert_problem(client.get(f"{URL}/{cid}", headers=auth("operator")), 404)
