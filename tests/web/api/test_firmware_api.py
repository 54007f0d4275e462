"""Firmware HTTP API: streamed uploads (limits, checksums, roles, memory), release -> station
assignments -> acks, downloads (full, Range, ETag / If-None-Match, S3 presigned URLs), and
traversal-proof local file downloads."""
from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import http.client
import io
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import psutil
import pytest
import time_machine

from tests.support.firmwaredata import image
import requests
from sqlalchemy import func, select

from tests.storage.conftest import FAKE_AWS_ENV, aws_env, s3_bucket, s3_client, s3_endpoint  # noqa: F401
from web.models import AuditEvent, Firmware, OutboxMessage
from web.services import firmware as fw_svc

from .api_helpers import PROBLEM, assert_problem

URL = "/api/v1/firmware"
MIB = 1024 * 1024
ROUTING = [{"step": "SMT", "name": "SMT"},
           {"step": "FLASH", "name": "Flash", "requires_firmware": True}]






@pytest.fixture()
def line(factory, fw_dir):
    product = factory.product(routing=ROUTING)
    return {"product": product, "flash": [factory.station(steps=["FLASH"]),
                                          factory.station(steps=["FLASH", "SMT"])],
            "smt": factory.station(steps=["SMT"]), "admin": factory.headers("admin"),
            "op": factory.headers("operator"), "sup": factory.headers("supervisor")}


def post_image(client, headers, product, version, data=None, *, filename="fw.bin", **fields):
    data = image() if data is None else data
    form = {"product": product, "version": version, **fields}
    form["file"] = (io.BytesIO(data) if isinstance(data, bytes) else data, filename)
    return client.post(URL, headers=headers, data=form, content_type="multipart/form-data")


def files_in(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) \
        if path.exists() else []


def firmware_rows(db) -> int:
    n = db.session.scalar(select(func.count()).select_from(Firmware))
    db.session.rollback()
    return n


def spool_files() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("nh-firmware-")}


def uploaded(client, line, version="1.0.0", data=None) -> dict:
    resp = post_image(client, line["admin"], line["product"], version, data)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def release_and_distribute(app, client, line, fw_id) -> None:
    """POST release, then run the io worker's task body (the pipeline tests run the worker)."""
    resp = client.post(f"{URL}/{fw_id}/release", headers=line["admin"])
    assert resp.status_code == 202 and resp.get_json()["state"] == "released"
    with app.app_context():
        assert fw_svc.distribute(fw_id).startswith("distributed")


# --- upload -----------------------------------------------------------------------------------

def test_upload_streams_to_storage_and_answers_the_draft(client, line, db, fw_dir):
    data = image(300_000)
    sha = hashlib.sha256(data).hexdigest()
    resp = post_image(client, line["admin"], line["product"], "1.4.2-rc.1+b7", data,
                      filename="../../etc/evil name.bin", sha256=sha.upper(), notes="first cut")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert resp.headers["Location"] == f"{URL}/{body['id']}"
    assert (body["state"], body["sha256"], body["size"], body["version"], body["notes"]) == (
        "draft", sha, 300_000, "1.4.2-rc.1+b7", "first cut")
    assert body["filename"] == "evil_name.bin"  # a client's path never reaches storage
    assert files_in(fw_dir) == [body["storage_key"]]
    assert (fw_dir / body["storage_key"]).read_bytes() == data
    shown = client.get(f"{URL}/{body['id']}", headers=line["op"]).get_json()
    assert shown["assignments"] == [] and shown["sha256"] == sha


@pytest.mark.parametrize("fields, field, status", [
    ({"version": "1.0"}, "version", 422),
    ({"version": "1.0.0.0"}, "version", 422),
    ({"version": "latest"}, "version", 422),
    ({"product": "NO-SUCH"}, "product", 422),
    ({"sha256": "0" * 64}, "sha256", 422),
    ({"sha256": "xyz"}, "sha256", 422),
    ({"data": b""}, "file", 422),
    ({"extra": "field"}, "extra", 422),
])
def test_bad_uploads_are_refused_and_store_nothing(client, line, db, fw_dir, fields, field,
                                                   status):
    args = {"product": line["product"], "version": "1.0.0", **fields}
    data = args.pop("data", None)
    resp = post_image(client, line["admin"], args.pop("product"), args.pop("version"), data,
                      **args)
    assert_problem(resp, status, field)
    assert files_in(fw_dir) == [] and firmware_rows(db) == 0


def test_missing_parts_and_wrong_media_type(client, line, db, fw_dir):
    no_file = client.post(URL, headers=line["admin"], content_type="multipart/form-data",
                          data={"product": line["product"], "version": "1.0.0"})
    assert_problem(no_file, 422, "file")
    no_product = client.post(URL, headers=line["admin"], content_type="multipart/form-data",
                             data={"version": "1.0.0", "file": (io.BytesIO(b"x"), "f.bin")})
    assert_problem(no_product, 422, "product")
    as_json = client.post(URL, headers=line["admin"], json={"product": line["product"]})
    assert_problem(as_json, 415)
    assert files_in(fw_dir) == [] and firmware_rows(db) == 0


def test_duplicate_version_is_409_and_stores_nothing(client, line, db, fw_dir):
    first = uploaded(client, line)
    resp = post_image(client, line["admin"], line["product"], "1.0.0", image(seed=b"other"))
    assert_problem(resp, 409)
    assert files_in(fw_dir) == [first["storage_key"]] and firmware_rows(db) == 1


def test_oversize_upload_is_413_and_leaves_nothing_behind(app, client, line, db, fw_dir,
                                                          monkeypatch):
    monkeypatch.setitem(app.config, "MAX_FIRMWARE_BYTES", 100_000)
    before = spool_files()
    ok = post_image(client, line["admin"], line["product"], "1.0.0", image(100_000))
    assert ok.status_code == 201  # exactly the limit is allowed
    over = post_image(client, line["admin"], line["product"], "1.0.1", image(100_001))
    body = assert_problem(over, 413, "file")
    assert "MAX_FIRMWARE_BYTES" in body["detail"]
    # a body far above the limit is refused from its Content-Length, before it is read
    huge = post_image(client, line["admin"], line["product"], "1.0.2", image(2 * MIB))
    assert_problem(huge, 413)
    assert files_in(fw_dir) == [ok.get_json()["storage_key"]] and firmware_rows(db) == 1
    assert spool_files() == before  # the spooled temp files are gone


def test_truncated_upload_is_4xx_and_stores_nothing(client, line, db, fw_dir):
    boundary = "nhboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"product\"\r\n\r\n"
            f"{line['product']}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"version\"\r\n\r\n1.0.0\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"file\"; filename=\"fw.bin\"\r\nContent-Type: application/octet-stream\r\n"
            f"\r\n").encode()
    full = head + image(200_000) + f"\r\n--{boundary}--\r\n".encode()
    cut = full[:len(head) + 120_000]  # the connection dropped mid-image
    for body, length in ((cut, len(full)), (cut, len(cut))):
        resp = client.post(URL, headers={**line["admin"], "Content-Length": str(length)},
                           input_stream=io.BytesIO(body),
                           content_type=f"multipart/form-data; boundary={boundary}")
        assert 400 <= resp.status_code < 500 and resp.mimetype == PROBLEM, resp.status_code
    assert files_in(fw_dir) == [] and firmware_rows(db) == 0


def test_an_upload_with_a_boundary_longer_than_70_is_stored(client, line, db, fw_dir):
    # Werkzeug's encoder (and so Flask's test client) made a 72-character boundary in CI.
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import stream_encode_multipart
    boundary = "-" * 15 + "WerkzeugFormPart_1795682522.1234567" + "1.2345678901234567e-05"
    data = image(300_000)
    stream, length, boundary = stream_encode_multipart(
        {"product": line["product"], "version": "1.0.0", "file": FileStorage(io.BytesIO(data), "fw.bin")},
        boundary=boundary)
    assert len(boundary) > 70
    resp = client.post(URL, headers={**line["admin"], "Content-Length": str(length)},
                       input_stream=stream, content_type=f"multipart/form-data; boundary={boundary}")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert (fw_dir / resp.get_json()["storage_key"]).read_bytes() == data
    assert firmware_rows(db) == 1


def test_a_local_upload_is_spooled_in_the_store_and_renamed_into_place(client, line, db, fw_dir,
                                                                     monkeypatch):
    from storage import LocalStorage

    def no_copy(*a, **kw):
        raise AssertionError("the image was copied instead of renamed")
    monkeypatch.setattr(LocalStorage, "put", no_copy)
    monkeypatch.setattr(LocalStorage, "upload", no_copy)
    before = spool_files()
    data = image(2 * MIB + 7)
    body = uploaded(client, line, "3.0.0", data)
    assert files_in(fw_dir) == [body["storage_key"]]  # no .tmp-upload-* left behind
    assert (fw_dir / body["storage_key"]).read_bytes() == data
    assert spool_files() == before


def test_a_second_file_part_or_a_repeated_field_is_refused(client, line, db, fw_dir):
    two = client.post(URL, headers=line["admin"], content_type="multipart/form-data", data={
        "product": line["product"], "version": "1.0.0", "file": (io.BytesIO(b"a"), "a.bin"),
        "other": (io.BytesIO(b"b"), "b.bin")})
    assert_problem(two, 422, "other")
    again = client.post(URL, headers=line["admin"], content_type="multipart/form-data", data={
        "product": line["product"], "version": ["1.0.0", "1.0.1"],
        "file": (io.BytesIO(b"a"), "a.bin")})
    assert_problem(again, 422, "version")
    assert files_in(fw_dir) == [] and firmware_rows(db) == 0


@pytest.mark.parametrize("role, status", [("operator", 403), ("supervisor", 403), (None, 401)])
def test_only_admins_upload_and_release(client, line, db, fw_dir, auth, role, status):
    headers = auth(role) if role else {}
    assert_problem(post_image(client, headers, line["product"], "1.0.0"), status)
    assert files_in(fw_dir) == []
    fw = uploaded(client, line)
    for action in ("release", "revoke"):
        resp = client.post(f"{URL}/{fw['id']}/{action}", headers=headers,
                           json={"reason": "x"})
        assert_problem(resp, status)
    assert client.get(f"{URL}/{fw['id']}", headers=line["op"]).get_json()["state"] == "draft"


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_100_mib_upload_keeps_server_memory_bounded(app, client, line, tmp_path, monkeypatch,
                                                    fw_dir):
    monkeypatch.setitem(app.config, "MAX_FIRMWARE_BYTES", 128 * MIB)
    src, digest = tmp_path / "big.bin", hashlib.sha256()
    with open(src, "wb") as out:
        block = os.urandom(MIB)
        for i in range(100):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            out.write(chunk)
    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    exact = _peak_rss_reset()
    samples, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(proc.memory_info().rss)
            time.sleep(0.002)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with open(src, "rb") as fh:
        resp = post_image(client, line["admin"], line["product"], "9.0.0", fh, filename="big.bin",
                          sha256=digest.hexdigest())
    stop.set()
    sampler.join()
    peak = max(max(samples), _peak_rss() if exact else 0)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert (body["size"], body["sha256"]) == (100 * MIB, digest.hexdigest())
    growth = peak - base
    print(f"100 MiB upload: peak RSS growth {growth / MIB:.1f} MiB (exact peak: {exact})")
    # the test client's own multipart encoding is spooled to disk too, so this bounds both sides
    assert growth < 40 * MIB, f"RSS grew by {growth / MIB:.1f} MiB for a 100 MiB upload"
    assert (fw_dir / body["storage_key"]).stat().st_size == 100 * MIB


# --- list, show, release, revoke --------------------------------------------------------------

def test_list_filters_and_paginates(app, client, line, factory, db):
    other = factory.product(routing=ROUTING)
    ids = [uploaded(client, line, f"1.0.{i}", image(seed=bytes([i])))["id"] for i in range(3)]
    other_id = uploaded(client, dict(line, product=other), "1.0.0")["id"]
    release_and_distribute(app, client, line, ids[1])
    page1 = client.get(URL, headers=line["op"], query_string={"limit": 2}).get_json()
    assert [f["id"] for f in page1["items"]] == [other_id, ids[2]]
    page2 = client.get(URL, headers=line["op"], query_string={
        "limit": 2, "cursor": page1["next_cursor"]}).get_json()
    assert [f["id"] for f in page2["items"]] == [ids[1], ids[0]] and page2["next_cursor"] is None
    mine = client.get(URL, headers=line["op"], query_string={"product": line["product"]})
    assert [f["id"] for f in mine.get_json()["items"]] == ids[::-1]
    rel = client.get(URL, headers=line["op"], query_string={"state": "released"}).get_json()
    assert [f["id"] for f in rel["items"]] == [ids[1]]
    assert_problem(client.get(URL, headers=line["op"], query_string={"state": "gone"}), 400,
                   "query.state")
    assert_problem(client.get(URL, headers=line["op"], query_string={"cursor": "junk"}), 400,
                   "query.cursor")
    assert_problem(client.get(f"{URL}/999999", headers=line["op"]), 404)


def test_release_assigns_the_flash_stations_and_acks_verify_or_fail(app, client, line, db):
    data = image(seed=b"rel")
    sha = hashlib.sha256(data).hexdigest()
    fw = uploaded(client, line, "2.0.0", data)
    resp = client.post(f"{URL}/{fw['id']}/release", headers=line["admin"])
    assert resp.status_code == 202
    with app.app_context():
        msg = db.session.scalar(select(OutboxMessage).where(
            OutboxMessage.task == "firmware.distribute"))
        assert (msg.queue, msg.args) == ("io", [fw["id"]])
        fw_svc.distribute(fw["id"])
    a, b = line["flash"]
    for code in (a, b):
        (item,) = client.get(f"/api/v1/stations/{code}/firmware",
                             headers=line["op"]).get_json()["items"]
        assert (item["firmware_id"], item["product"], item["version"], item["sha256"],
                item["size"], item["state"]) == (fw["id"], line["product"], "2.0.0", sha,
                                                 len(data), "pending")
        assert item["download_url"] == f"{URL}/{fw['id']}/download?station={code}"
    assert client.get(f"/api/v1/stations/{line['smt']}/firmware",
                      headers=line["op"]).get_json()["items"] == []
    assert_problem(client.get("/api/v1/stations/NOPE/firmware", headers=line["op"]), 404)
    # station A downloads through its URL (-> delivered), proves the bytes (-> verified)
    item_a = client.get(f"/api/v1/stations/{a}/firmware", headers=line["op"]).get_json()["items"][0]
    got = client.get(item_a["download_url"], headers=line["op"])
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == sha
    state = client.get(f"/api/v1/stations/{a}/firmware", headers=line["op"]).get_json()
    assert state["items"][0]["state"] == "delivered"
    ok = client.post(f"/api/v1/stations/{a}/firmware/{item_a['id']}/ack", headers=line["op"],
                     json={"sha256": sha})
    assert ok.status_code == 200 and ok.get_json()["state"] == "verified"
    # station B holds other bytes: failed, audited with both hashes
    item_b = client.get(f"/api/v1/stations/{b}/firmware", headers=line["op"]).get_json()["items"][0]
    bad = client.post(f"/api/v1/stations/{b}/firmware/{item_b['id']}/ack", headers=line["op"],
                      json={"sha256": "ab" * 32})
    assert bad.status_code == 200 and bad.get_json()["state"] == "failed"
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "firmware_assignment.failed"))
        assert event.after["acked_sha256"] == "ab" * 32 and event.after["expected_sha256"] == sha
    assert_problem(client.post(f"/api/v1/stations/{b}/firmware/{item_a['id']}/ack",
                               headers=line["op"], json={"sha256": sha}), 404)
    assert_problem(client.post(f"/api/v1/stations/{a}/firmware/{item_a['id']}/ack",
                               headers=line["op"], json={"sha256": "nothex"}), 422, "sha256")
    shown = client.get(f"{URL}/{fw['id']}", headers=line["op"]).get_json()
    assert {x["station"]: x["state"] for x in shown["assignments"]} == {a: "verified",
                                                                        b: "failed"}


def test_revoke_blocks_use_and_release(app, client, line, db):
    fw = uploaded(client, line)
    release_and_distribute(app, client, line, fw["id"])
    assert_problem(client.post(f"{URL}/{fw['id']}/revoke", headers=line["admin"], json={}),
                   422, "reason")
    resp = client.post(f"{URL}/{fw['id']}/revoke", headers=line["admin"],
                       json={"reason": "field failures"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["state"] == "revoked" and body["revoke_reason"] == "field failures"
    assert {x["state"] for x in body["assignments"]} == {"revoked"}
    assert client.get(f"/api/v1/stations/{line['flash'][0]}/firmware",
                      headers=line["op"]).get_json()["items"] == []
    assert_problem(client.post(f"{URL}/{fw['id']}/release", headers=line["admin"]), 409)
    assert_problem(client.post(f"{URL}/{fw['id']}/revoke", headers=line["admin"],
                               json={"reason": "again"}), 409)
    assert_problem(client.get(f"{URL}/{fw['id']}/download", headers=line["op"]), 410)
    assert client.get(f"{URL}/{fw['id']}/download", headers=line["admin"]).status_code == 200


# --- downloads (local storage) ----------------------------------------------------------------

def test_download_full_range_etag_and_if_none_match(app, client, line, db):
    data = image(1_000_003, seed=b"dl")
    sha = hashlib.sha256(data).hexdigest()
    fw = uploaded(client, line, "3.0.0", data)
    assert_problem(client.get(f"{URL}/{fw['id']}/download", headers=line["op"]), 403)  # draft
    release_and_distribute(app, client, line, fw["id"])
    url = f"{URL}/{fw['id']}/download"
    full = client.get(url, headers=line["op"])
    assert full.status_code == 200 and full.data == data
    assert full.headers["ETag"] == f'"{sha}"' and full.headers["Accept-Ranges"] == "bytes"
    assert int(full.headers["Content-Length"]) == len(data)
    assert "fw.bin" in full.headers["Content-Disposition"]
    part = client.get(url, headers={**line["op"], "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    # resume: everything after what the station already has
    tail = client.get(url, headers={**line["op"], "Range": "bytes=600000-",
                                    "If-Range": f'"{sha}"'})
    assert tail.status_code == 206 and data[:600000] + tail.data == data
    stale = client.get(url, headers={**line["op"], "Range": "bytes=600000-",
                                     "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.data == data  # changed since: the whole image
    cached = client.get(url, headers={**line["op"], "If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304 and cached.data == b""
    other = client.get(url, headers={**line["op"], "If-None-Match": '"feed"'})
    assert other.status_code == 200 and other.data == data
    bad_range = client.get(url, headers={**line["op"], "Range": f"bytes={len(data) + 5}-"})
    assert bad_range.status_code == 416
    assert_problem(client.get(url), 401)


TRAVERSALS = ["firmware/../x", "firmware/..%2f..%2fetc/passwd", "firmware//etc/passwd",
              "firmware/a/../../b", "firmware/%2e%2e/secret", "%2e%2e/%2e%2e/etc/passwd",
              "firmware/a%00b", "firmware/a\\..\\b", "/etc/passwd", "../x", "etc/passwd",
              "firmware/.tmp-x", "firmware/"]


def test_files_endpoint_serves_stored_files_and_refuses_traversal(app, client, line, db,
                                                                  fw_dir, tmp_path):
    data = image(seed=b"files")
    fw = uploaded(client, line, "4.0.0", data)
    release_and_distribute(app, client, line, fw["id"])
    (tmp_path / "secret").write_bytes(b"SECRET")
    (fw_dir / "x").write_bytes(b"not firmware")
    ok = client.get(f"/api/v1/files/firmware/{fw['storage_key']}", headers=line["op"])
    assert ok.status_code == 200 and ok.data == data
    assert ok.headers["ETag"] == f'"{fw["sha256"]}"'
    for path in TRAVERSALS:
        resp = client.get(f"/api/v1/files/{path}", headers=line["admin"])
        assert 400 <= resp.status_code < 500, (path, resp.status_code)
        assert resp.mimetype == PROBLEM, path
        assert b"SECRET" not in resp.data and b"root:" not in resp.data, path
    # an object that is not a firmware is for admins only; backups too; no token: 401
    assert_problem(client.get("/api/v1/files/firmware/x", headers=line["op"]), 404)
    assert client.get("/api/v1/files/firmware/x", headers=line["admin"]).data == b"not firmware"
    assert_problem(client.get("/api/v1/files/backups/db/x.dump", headers=line["op"]), 403)
    assert_problem(client.get("/api/v1/files/backups/db/x.dump", headers=line["admin"]), 404)
    assert_problem(client.get(f"/api/v1/files/firmware/{fw['storage_key']}"), 401)


def test_firmware_routes_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in [("/api/v1/firmware", "post"), ("/api/v1/firmware", "get"),
                         ("/api/v1/firmware/{firmware_id}", "get"),
                         ("/api/v1/firmware/{firmware_id}/release", "post"),
                         ("/api/v1/firmware/{firmware_id}/revoke", "post"),
                         ("/api/v1/firmware/{firmware_id}/download", "get"),
                         ("/api/v1/files/{key}", "get"),
                         ("/api/v1/stations/{code}/firmware", "get"),
                         ("/api/v1/stations/{code}/firmware/{assignment_id}/ack", "post")]:
        assert method in paths[path], (path, method)
    query = {p["name"] for p in paths["/api/v1/firmware"]["get"]["parameters"]}
    assert {"product", "state", "cursor", "limit"} <= query


# --- S3 (USE_S3=true) against moto_server -----------------------------------------------------

class SigV4Gate:
    """An S3 front for moto_server that checks presigned GET URLs the way S3 does.

    moto_server 5.2.5 serves a presigned GET whatever its signature or age (checked: it answers
    200 to an expired and to a tampered URL), so this gate recomputes the SigV4 query signature
    with the test credentials and refuses the URL once X-Amz-Date + X-Amz-Expires has passed
    (403 AccessDenied "Request has expired"); valid requests are forwarded to moto.
    """

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                error = gate.check(self.path, self.headers["Host"])
                if error:
                    body = f"<Error><Code>{error[0]}</Code><Message>{error[1]}</Message></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                conn = http.client.HTTPConnection(gate.upstream.hostname, gate.upstream.port)
                conn.request("GET", self.path, headers={"Host": self.headers["Host"]})
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def check(path: str, host: str):
        parts = urlsplit(path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        p = dict(query)
        if "X-Amz-Signature" not in p:
            return "AccessDenied", "not a presigned URL"
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                   for k, v in sorted(query) if k != "X-Amz-Signature")
        request = "\n".join(["GET", parts.path, canonical_query, f"host:{host}\n",
                             p["X-Amz-SignedHeaders"], "UNSIGNED-PAYLOAD"])
        scope = p["X-Amz-Credential"].split("/", 1)[1]
        to_sign = "\n".join(["AWS4-HMAC-SHA256", p["X-Amz-Date"], scope,
                             hashlib.sha256(request.encode()).hexdigest()])
        key = ("AWS4" + FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"]).encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest() != p["X-Amz-Signature"]:
            return "SignatureDoesNotMatch", "the signature does not match"
        signed_at = dt.datetime.strptime(p["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.timezone.utc)
        if dt.datetime.now(dt.timezone.utc) > signed_at + dt.timedelta(
                seconds=int(p["X-Amz-Expires"])):
            return "AccessDenied", "Request has expired"
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def s3_app(app, s3_endpoint, s3_bucket, monkeypatch):
    """The app with USE_S3=true on a fresh moto bucket."""
    for k, v in {"USE_S3": True, "S3_BUCKET": s3_bucket, "AWS_ENDPOINT_URL": s3_endpoint,
                 "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setitem(app.config, k, v)
    return app


def test_s3_upload_then_download_redirects_to_a_working_presigned_url(
        s3_app, client, line, db, fw_dir, s3_client, s3_bucket, s3_endpoint):
    data = image(2 * MIB + 5, seed=b"s3")
    sha = hashlib.sha256(data).hexdigest()
    fw = uploaded(client, line, "5.0.0", data)
    assert files_in(fw_dir) == []  # nothing on local disk
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"firmware/{fw['storage_key']}")
    assert head["ContentLength"] == len(data) and head["Metadata"]["sha256"] == sha
    release_and_distribute(s3_app, client, line, fw["id"])
    resp = client.get(f"{URL}/{fw['id']}/download", headers=line["op"])
    assert resp.status_code == 302 and resp.headers["Cache-Control"] == "no-store"
    location = resp.headers["Location"]
    assert location.startswith(f"{s3_endpoint}/{s3_bucket}/firmware/")
    assert "X-Amz-Expires=300" in location and "X-Amz-Signature=" in location
    got = requests.get(location, timeout=10)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha
    ranged = requests.get(location, headers={"Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == data[10:20]


def test_s3_presigned_url_expires(s3_app, client, line, db, monkeypatch, s3_endpoint):
    data = image(seed=b"exp")
    fw = uploaded(client, line, "6.0.0", data)
    release_and_distribute(s3_app, client, line, fw["id"])
    gate = SigV4Gate(s3_endpoint)
    try:
        monkeypatch.setitem(s3_app.config, "AWS_ENDPOINT_URL", gate.url)
        monkeypatch.setitem(s3_app.config, "FIRMWARE_URL_EXPIRES", 1)
        location = client.get(f"{URL}/{fw['id']}/download", headers=line["op"]).headers[
            "Location"]
        assert location.startswith(gate.url) and "X-Amz-Expires=1&" in location
        # X-Amz-Date is whole seconds, so a 1 s URL can be past its time a moment after it was
        # signed: the fresh fetch happens, on S3's clock (the gate's), at the signing second.
        signed_at = dt.datetime.strptime(dict(parse_qsl(urlsplit(location).query))[
            "X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        with time_machine.travel(signed_at):
            fresh = requests.get(location, timeout=10)
        assert fresh.status_code == 200 and fresh.content == data
        tampered = requests.get(location.replace("X-Amz-Expires=1&", "X-Amz-Expires=999&"),
                                timeout=10)
        assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
        # S3's clock (the gate's) passes X-Amz-Date + X-Amz-Expires: no waiting for it
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)):
            expired = requests.get(location, timeout=10)
        assert expired.status_code == 403 and b"Request has expired" in expired.content
    finally:
        gate.close()
