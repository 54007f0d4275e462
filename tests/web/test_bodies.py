"""Body limits per endpoint through the test client: over the limit is 413 and stores nothing,
with a Content-Length or chunked (the server ends the body), on every operation of the spec."""
from __future__ import annotations

import io
import json

import pytest

from tests.support.rows import row_counts
from tests.web.api.spec_walk import example, load_spec, operations

MIB = 1024 * 1024


def _send(client, method, path, headers, body: bytes, chunked: bool):
    if chunked:  # as gunicorn hands it over: no length, the server ends the stream
        return client.open(path, method=method, input_stream=io.BytesIO(body),
                           headers=headers | {"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    return client.open(path, method=method, data=body, headers=headers)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_lot_padded_past_the_limit_is_413_and_not_created(client, factory, db, chunked):
    product = factory.product()
    headers = factory.headers("supervisor") | {"Content-Type": "application/json"}
    lot = json.dumps({"product": product, "quantity": 1}).encode()
    before = row_counts(db)
    resp = _send(client, "POST", "/api/v1/lots", headers, lot + b" " * (10 * MIB), chunked)
    assert resp.status_code == 413 and resp.mimetype == "application/problem+json"
    assert "MAX_CONTENT_LENGTH" in resp.get_json()["detail"]
    assert row_counts(db) == before
    ok = _send(client, "POST", "/api/v1/lots", headers, lot + b" " * (MIB - len(lot)), chunked)
    assert ok.status_code == 201, ok.get_json()  # exactly the limit is allowed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_every_operation_refuses_a_body_over_its_limit(client, factory, db, chunked):
    doc = load_spec(client)
    headers = factory.headers("admin") | {"Content-Type": "application/json",
                                           "Idempotency-Key": "over-1"}
    before = row_counts(db)
    failures = []
    for op in operations(doc):
        if op.path == "/api/v1/firmware" and op.method == "post":
            continue  # multipart with its own limit: tests/web/api/test_firmware_api.py
        valid = example(doc, op.body_schema) if op.body_schema is not None else {}
        body = json.dumps(valid).encode() + b" " * MIB
        resp = _send(client, op.method.upper(), op.url(), headers, body, chunked)
        if resp.status_code != 413:
            failures.append((op.method, op.path, resp.status_code))
    assert not failures, failures
    assert row_counts(db) == before


def test_firmware_upload_has_its_own_larger_limit_chunked_too(app, client, factory, db,
                                                              fw_dir, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_FIRMWARE_BYTES", 3 * MIB)
    product = factory.product()
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"product\"\r\n\r\n"
            f"{product}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"version\"\r\n"
            f"\r\n1.0.0\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"fw.bin\"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = factory.headers("admin") | {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}
    ok = _send(client, "POST", "/api/v1/firmware", headers, head + b"\x01" * (2 * MIB) + tail,
               chunked=True)
    assert ok.status_code == 201, ok.get_json()  # over 1 MiB, within the firmware limit
    before = row_counts(db)
    over = _send(client, "POST", "/api/v1/firmware", headers | {},
                 head.replace(b"1.0.0", b"1.0.1") + b"\x01" * (5 * MIB) + tail, chunked=True)
    assert over.status_code == 413
    assert row_counts(db) == before
