"""The exact problem+json bytes of every domain error the endpoints answer with.

Each case pins status, Content-Type, the body byte for byte (type, title, status, detail,
errors, request_id: the request sends its own X-Request-ID) and the headers that matter
(Retry-After), so moving the mapping from the endpoints into the exceptions changes nothing.
"""
from __future__ import annotations

import io
import json
import uuid

import psycopg
import pytest

from tests.support.firmwaredata import image
from web.services import firmware as fw_svc

from .api_helpers import PROBLEM

RID = "rq-pinned"
TITLES = {400: "Bad request", 404: "Not found", 409: "Conflict", 422: "Unprocessable content"}
FLASH = [{"step": "SMT", "name": "SMT"}, {"step": "FLASH", "name": "Flash",
                                          "requires_firmware": True}]
MARK = [{"step": "MARK", "name": "Unit marking", "label_template": "unit"}]


def expect(resp, status: int, detail: str, field: str | None = None, headers=None) -> None:
    """The response is exactly this problem (a field error names ``field``, message after it)."""
    body = {"type": "about:blank", "title": TITLES[status], "status": status, "detail": detail}
    if field is not None:
        body["errors"] = [{"field": field, "message": detail.removeprefix(f"{field}: ")}]
    body["request_id"] = RID
    assert (resp.status_code, resp.mimetype) == (status, PROBLEM), resp.get_data(as_text=True)
    assert resp.get_data() == json.dumps(body).encode()
    for name, value in (headers or {}).items():
        assert resp.headers.get(name) == value, (name, dict(resp.headers))
    if "Retry-After" not in (headers or {}):
        assert "Retry-After" not in resp.headers


@pytest.fixture()
def call(client, auth):
    """call(role, method, path, **kw): the request with a pinned X-Request-ID."""

    def go(role, method, path, headers=None, **kw):
        return client.open(path, method=method, headers=auth(role) | {"X-Request-ID": RID}
                           | (headers or {}), **kw)
    return go


def test_completions(call, factory, pg_database):
    from web.services.completions import IDEMPOTENCY_LOCK_NS
    lot = factory.lot(factory.product(), 2, lot_no="L-PIN")
    station = factory.station("ST-PIN", steps=["SMT"])
    body = {"lot_no": lot, "step": "SMT", "station": station}

    def post(key, **change):
        return call("operator", "POST", "/api/v1/completions", json=body | change,
                    headers={"Idempotency-Key": key})
    assert post("k-1").status_code == 202
    expect(post("k-1", qty_good=1), 422, "header.Idempotency-Key: this Idempotency-Key was "
           "already used with a different request", "header.Idempotency-Key")
    expect(post("k-2", lot_no="NOPE"), 422, "lot_no: unknown lot 'NOPE'", "lot_no")
    expect(post("k-3", station="NOPE"), 422, "station: unknown or inactive station 'NOPE'",
           "station")
    expect(post("k-4", step="XX"), 422, "step: step 'XX' is not in this lot's routing", "step")
    expect(call("operator", "GET", "/api/v1/completions/999999999"), 404,
           "unknown completion 999999999")
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as holder:  # the key's first request is still running
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (IDEMPOTENCY_LOCK_NS,
                                                                          "k-5"))
        expect(post("k-5"), 409, "a request with this Idempotency-Key is still being processed",
               headers={"Retry-After": "1"})


def test_lots_products_stations_and_cursors(call, factory):
    product = factory.product("P-PIN")
    factory.lot(product, 1, lot_no="L-PIN")
    factory.station("ST-PIN")
    for method, path in (("GET", "/api/v1/lots/NOPE"), ("GET", "/api/v1/lots/NOPE/dhr"),
                         ("POST", "/api/v1/lots/NOPE/hold")):
        expect(call("supervisor", method, path, json={"reason": "r"} if method == "POST"
                    else None), 404, "unknown lot 'NOPE'")
    new_lot = {"product": product, "quantity": 1, "lot_no": "L-PIN"}
    expect(call("supervisor", "POST", "/api/v1/lots", json=new_lot), 409,
           "lot 'L-PIN' already exists")
    expect(call("supervisor", "POST", "/api/v1/lots", json=new_lot | {"product": "NOPE"}), 422,
           "product: unknown product 'NOPE'", "product")
    expect(call("supervisor", "POST", "/api/v1/lots/L-PIN/release", json={"reason": "r"}), 409,
           "cannot release a lot that is created")
    routing = [{"step": "S", "name": "s"}]
    expect(call("admin", "POST", "/api/v1/products", json={"code": product, "name": "x",
                                                           "routing": routing}), 409,
           "product 'P-PIN' already exists")
    expect(call("admin", "GET", "/api/v1/products/NOPE"), 404, "unknown product 'NOPE'")
    expect(call("admin", "POST", "/api/v1/products/NOPE/routing", json={"routing": routing}),
           404, "unknown product 'NOPE'")
    expect(call("admin", "POST", "/api/v1/stations", json={"code": "ST-PIN", "name": "x"}), 409,
           "station 'ST-PIN' already exists")
    expect(call("operator", "POST", "/api/v1/stations/NOPE/heartbeat"), 404,
           "unknown station 'NOPE'")


@pytest.mark.parametrize("path", ["/api/v1/lots", "/api/v1/products"])
def test_bad_cursor_names_the_query_parameter_without_prefixing_the_detail(call, path):
    resp = call("operator", "GET", f"{path}?cursor=bogus!")
    message = "cursor is not valid; use next_cursor from a previous page"
    assert (resp.status_code, resp.mimetype) == (400, PROBLEM)
    assert resp.get_data() == json.dumps({
        "type": "about:blank", "title": "Bad request", "status": 400, "detail": message,
        "errors": [{"field": "query.cursor", "message": message}], "request_id": RID},
        ).encode()


def test_backups(call, app, db, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    expect(call("admin", "GET", "/api/v1/backups/999999"), 404, "unknown backup 999999")
    expect(call("admin", "POST", "/api/v1/backups/999999/verify"), 404, "unknown backup 999999")
    bid = call("admin", "POST", "/api/v1/backups").get_json()["id"]
    expect(call("admin", "POST", f"/api/v1/backups/{bid}/verify"), 409,
           f"backup {bid} is queued; only stored, done backups can be verified")


def _upload(call, product, version, data=None):
    form = {"product": product, "version": version, "file": (io.BytesIO(image() if data is None else data),
                                                        "f.bin")}
    return call("admin", "POST", "/api/v1/firmware", data=form, content_type="multipart/form-data")


def test_firmware(call, app, factory, fw_dir):
    product = factory.product(routing=FLASH)
    station = factory.station(steps=["FLASH"])
    for method, path in (("GET", ""), ("POST", "/release"), ("POST", "/revoke")):
        expect(call("admin", method, f"/api/v1/firmware/999999{path}",
                    json={"reason": "r"} if path == "/revoke" else None), 404,
               "unknown firmware 999999")
    expect(_upload(call, "NOPE", "1.0.0"), 422, "product: unknown product 'NOPE'", "product")
    expect(_upload(call, product, "1.0.0", b""), 422, "file: the firmware image is empty", "file")
    fw_id = _upload(call, product, "1.0.0").get_json()["id"]
    expect(_upload(call, product, "1.0.0"), 409, f"{product} already has firmware 1.0.0")
    assert call("admin", "POST", f"/api/v1/firmware/{fw_id}/release").status_code == 202
    with app.app_context():
        fw_svc.distribute(fw_id)
    items = call("operator", "GET", f"/api/v1/stations/{station}/firmware").get_json()["items"]
    aid = items[0]["id"]
    expect(call("operator", "GET", "/api/v1/stations/NOPE/firmware"), 404,
           "unknown station 'NOPE'")
    sha = {"sha256": "ab" * 32}
    expect(call("operator", "POST", f"/api/v1/stations/NOPE/firmware/{aid}/ack", json=sha), 404,
           f"station 'NOPE' has no firmware assignment {aid}")
    expect(call("operator", "POST", f"/api/v1/stations/{station}/firmware/999999/ack", json=sha),
           404, f"station {station!r} has no firmware assignment 999999")
    assert call("admin", "POST", f"/api/v1/firmware/{fw_id}/revoke",
                json={"reason": "r"}).status_code == 200
    expect(call("operator", "POST", f"/api/v1/stations/{station}/firmware/{aid}/ack", json=sha),
           409, f"assignment {aid} is revoked")
    expect(call("admin", "POST", f"/api/v1/firmware/{fw_id}/release"), 409,
           f"firmware {fw_id} is revoked and cannot be released")
    expect(call("admin", "POST", f"/api/v1/firmware/{fw_id}/revoke", json={"reason": "r"}), 409,
           f"firmware {fw_id} is already revoked")


def test_label_templates_and_previews(call, monkeypatch):
    expect(call("admin", "POST", "/api/v1/labels/templates", json={
        "name": "unit", "body": "^XA^FO1,1^FDx^FS", "variables": [], "width_mm": 50,
        "height_mm": 25}), 422, "body: the body must not contain ^XA or ^XZ (added when "
           "rendering)", "body")
    preview = {"template": "unit", "data": {"product_code": "P"}}
    expect(call("operator", "POST", "/api/v1/labels/preview", json=preview | {"template": "nope"}),
           422, "template: no label template 'nope'", "template")
    expect(call("operator", "POST", "/api/v1/labels/preview", json=preview), 422,
           "data.product_name: missing variable 'product_name' for template unit",
           "data.product_name")
    from printers import PreviewError
    from web.api import labels as api

    def refuse(*_a, **_k):
        raise PreviewError("no ^XA...^XZ label to preview")
    monkeypatch.setattr(api, "preview_png", refuse)
    full = {"product_code": "P", "product_name": "N", "lot_no": "L", "date": "2026-01-01",
            "serial": "S"}
    expect(call("operator", "POST", "/api/v1/labels/preview", json=preview | {"data": full}),
           422, "template: the label cannot be previewed: no ^XA...^XZ label to preview",
           "template")


def test_label_jobs_and_the_station_pull(call, app, factory):
    from web.services.completions.processing import process_completion
    station = factory.station(steps=["MARK"], printer_uri="station://")
    other = factory.station(steps=["MARK"], printer_uri="station://")
    lot = factory.lot(factory.product(routing=MARK), 2, serials=["SN-PIN-1", "SN-PIN-2"])
    done = call("operator", "POST", "/api/v1/completions", headers={
        "Idempotency-Key": uuid.uuid4().hex}, json={"lot_no": lot, "step": "MARK",
                                                    "station": station})
    with app.app_context():
        assert process_completion(done.get_json()["id"]) == "accepted"
    for method, path in (("GET", ""), ("GET", "/preview.png"), ("POST", "/reprint")):
        expect(call("supervisor", method, f"/api/v1/labels/jobs/999999{path}",
                    json={"reason": "r"} if method == "POST" else None), 404,
               "unknown label job 999999")
    expect(call("operator", "GET", "/api/v1/stations/ST-NOPE/labels/next"), 404,
           "unknown station 'ST-NOPE'")
    queued = call("operator", "GET", "/api/v1/stations/%s/labels/next" % station).get_json()["id"]
    ack = {"printed": True}
    for code, job in (("ST-NOPE", queued), (other, queued), (station, 999999)):
        expect(call("operator", "POST", f"/api/v1/stations/{code}/labels/{job}/ack", json=ack),
               404, f"unknown label job {job} for station {code!r}")
    assert call("operator", "POST", f"/api/v1/stations/{station}/labels/{queued}/ack",
                json=ack).status_code == 200
    expect(call("operator", "POST", f"/api/v1/stations/{station}/labels/{queued}/ack", json=ack),
           409, f"job {queued} is printed, not sent")
