"""Station PCs: /api/v1/stations and their heartbeats."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .api_helpers import assert_problem, row_counts

URL = "/api/v1/stations"


def _station(code="ST-01", **over):
    return {"code": code, "name": f"Station {code}", "steps": ["SMT", "FCT"],
            "printer_uri": "tcp://10.0.0.21:9100"} | over


# --- POST /api/v1/stations --------------------------------------------------------------------

def test_create_station_is_201(client, auth, db):
    admin = auth("admin")
    before = row_counts(db)["audit_events"]
    resp = client.post(URL, headers=admin, json=_station())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json() == {"code": "ST-01", "name": "Station ST-01", "steps": ["SMT", "FCT"],
                               "printer_uri": "tcp://10.0.0.21:9100", "active": True,
                               "last_heartbeat_at": None}
    assert row_counts(db)["audit_events"] == before + 1


@pytest.mark.parametrize("uri", ["sim://", "station://", "file:///var/labels", None])
def test_every_printer_scheme_is_accepted(client, auth, uri):
    resp = client.post(URL, headers=auth("admin"), json=_station("ST-U", printer_uri=uri))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["printer_uri"] == uri


def test_minimal_station_defaults(client, auth):
    resp = client.post(URL, headers=auth("admin"), json={"code": "ST-MIN", "name": "Min"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["steps"] == [] and body["printer_uri"] is None and body["active"] is True


def test_duplicate_station_is_409(client, auth, db):
    admin = auth("admin")
    assert client.post(URL, headers=admin, json=_station("ST-D")).status_code == 201
    before = row_counts(db)
    assert_problem(client.post(URL, headers=admin, json=_station("ST-D", name="Other")), 409)
    assert row_counts(db) == before
    items = client.get(URL, headers=admin).get_json()["items"]
    assert [(s["code"], s["name"]) for s in items] == [("ST-D", "Station ST-D")]


@pytest.mark.parametrize("uri", ["http://printer:9100", "lpt1", "ftp://x", "", "TCP:/x"])
def test_bad_printer_uri_is_422_naming_printer_uri(client, auth, db, uri):
    admin = auth("admin")
    before = row_counts(db)
    assert_problem(client.post(URL, headers=admin, json=_station(printer_uri=uri)), 422,
                   "printer_uri")
    assert row_counts(db) == before


@pytest.mark.parametrize("over, field", [
    ({"code": "ST 01"}, "code"),
    ({"code": ""}, "code"),
    ({"name": ""}, "name"),
    ({"steps": ["SMT", "bad step"]}, "steps.1"),
    ({"steps": "SMT"}, "steps"),
    ({"printer_uri": 9100}, "printer_uri"),
    ({"printer_uri": "tcp://" + "x" * 500}, "printer_uri"),
    ({"active": False}, "active"),
])
def test_invalid_station_is_422_naming_the_field(client, auth, over, field):
    admin = auth("admin")
    assert_problem(client.post(URL, headers=admin, json=_station(**over)), 422, field)
    assert client.get(URL, headers=admin).get_json()["items"] == []


def test_missing_fields_are_named(client, auth):
    resp = client.post(URL, headers=auth("admin"), json={})
    assert_problem(resp, 422, "code")
    assert_problem(resp, 422, "name")


def test_create_station_not_json_is_415(client, auth):
    resp = client.post(URL, headers=auth("admin"), data="<station/>", content_type="text/xml")
    assert_problem(resp, 415)


# --- GET /api/v1/stations ---------------------------------------------------------------------

def test_list_stations(client, auth, factory):
    codes = [factory.station(f"ST-L{i}", steps=["SMT"]) for i in range(3)]
    resp = client.get(URL, headers=auth("operator"))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["next_cursor"] is None
    assert sorted(s["code"] for s in body["items"]) == sorted(codes)
    assert all(s["steps"] == ["SMT"] and s["printer_uri"] == "sim://" for s in body["items"])


def test_list_stations_paginates(client, auth, factory):
    codes = {factory.station(f"ST-P{i}") for i in range(5)}
    headers, seen, cursor = auth("operator"), [], None
    for _ in range(10):
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = client.get(URL, headers=headers, query_string=query).get_json()
        assert len(body["items"]) <= 2
        seen += [s["code"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    assert len(seen) == len(set(seen)) == 5 and set(seen) == codes


def test_list_stations_bad_limit_is_400(client, auth):
    assert_problem(client.get(URL, headers=auth("operator"), query_string={"limit": -1}), 400,
                   "query.limit")


def test_list_stations_bad_cursor_is_400(client, auth):
    resp = client.get(URL, headers=auth("operator"), query_string={"cursor": "garbage!"})
    assert_problem(resp, 400, "query.cursor")


# --- POST /api/v1/stations/{code}/heartbeat ---------------------------------------------------

def _recent(iso: str) -> bool:
    at = datetime.fromisoformat(iso)
    assert at.tzinfo is not None, f"{iso} has no time zone"
    return abs(datetime.now(timezone.utc) - at) < timedelta(minutes=1)


def test_heartbeat_with_body(client, auth, factory, db):
    code = factory.station("ST-HB")
    headers = auth("operator")
    before = row_counts(db)
    resp = client.post(f"{URL}/{code}/heartbeat", headers=headers,
                       json={"app_version": "1.4.2", "queued": 3, "printer_status": "ok"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["code"] == code and body["last_heartbeat_at"] and _recent(body["last_heartbeat_at"])
    listed = client.get(URL, headers=headers).get_json()["items"]
    assert listed[0]["last_heartbeat_at"] == body["last_heartbeat_at"]
    assert row_counts(db) == before  # a heartbeat is not a state change: no audit row


def test_heartbeat_without_body(client, auth, factory):
    code = factory.station("ST-HB0")
    resp = client.post(f"{URL}/{code}/heartbeat", headers=auth("operator"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert _recent(resp.get_json()["last_heartbeat_at"])


def test_heartbeat_with_empty_json_object(client, auth, factory):
    code = factory.station("ST-HB1")
    resp = client.post(f"{URL}/{code}/heartbeat", headers=auth("operator"), json={})
    assert resp.status_code == 200
    assert _recent(resp.get_json()["last_heartbeat_at"])


def test_second_heartbeat_moves_the_time(client, auth, factory):
    code = factory.station("ST-HB2")
    headers = auth("operator")
    first = client.post(f"{URL}/{code}/heartbeat", headers=headers).get_json()["last_heartbeat_at"]
    second = client.post(f"{URL}/{code}/heartbeat", headers=headers).get_json()["last_heartbeat_at"]
    assert datetime.fromisoformat(second) >= datetime.fromisoformat(first)


def test_heartbeat_unknown_station_is_404(client, auth):
    resp = client.post(f"{URL}/ST-NOPE/heartbeat", headers=auth("operator"), json={})
    assert_problem(resp, 404)
    assert_problem(client.post(f"{URL}/ST-NOPE/heartbeat", headers=auth("operator")), 404)


@pytest.mark.parametrize("body, field", [
    ({"queued": -1}, "queued"), ({"queued": "many"}, "queued"),
    ({"app_version": "x" * 65}, "app_version"), ({"cpu": 99}, "cpu"),
])
def test_heartbeat_bad_body_is_422(client, auth, factory, body, field):
    code = factory.station()
    headers = auth("operator")
    assert_problem(client.post(f"{URL}/{code}/heartbeat", headers=headers, json=body), 422, field)
    assert client.get(URL, headers=headers).get_json()["items"][0]["last_heartbeat_at"] is None


def test_heartbeat_malformed_json_is_400(client, auth, factory):
    code = factory.station()
    resp = client.post(f"{URL}/{code}/heartbeat", headers=auth("operator"), data="{oops",
                       content_type="application/json")
    assert_problem(resp, 400, "body")
