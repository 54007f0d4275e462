"""Request bodies through the real server stack as deployed (gunicorn with `neurohub up`'s
command line): bodies over their endpoint's limit are 413 and store nothing, chunked or not, on
every endpoint; a refused request leaves its kept-alive connection usable (or the server says
``Connection: close``)."""
from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import TEST_CONFIG
from tests.support.rows import row_counts
from tests.web.api.spec_walk import example, operations
from tests.support.procs import service_env, wait_until, web_server

MIB = 1024 * 1024
MAX_FIRMWARE = 300_000  # small, so the firmware cases stay quick
FORM_SLACK = MIB  # web.api.firmware.FORM_SLACK


@pytest.fixture(scope="module")
def server(pg_database, redis_url, tmp_path_factory):
    """The web process as deployed, on the session database."""
    log_dir = tmp_path_factory.mktemp("web-logs")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, WEB_WORKERS=1,
                      NEUROHUB_DATA_DIR=str(tmp_path_factory.mktemp("web-data")),
                      MAX_FIRMWARE_BYTES=MAX_FIRMWARE, **TEST_CONFIG)
    proc, url = web_server(env, log_dir)
    proc.start()

    def up():
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    try:
        wait_until(up, 60, 0.2, "gunicorn to answer /healthz")
    except AssertionError:
        proc.stop()
        raise AssertionError("gunicorn did not start:\n" + proc.output()) from None
    yield url
    proc.stop()


class RawConnection:
    """One client connection on a plain socket: a request is sent whole (a send error is kept:
    the server may answer early and close), then its answer is read from the same socket."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address, self.host = (parts.hostname, parts.port), parts.netloc
        self.sock = socket.create_connection(self.address, timeout=30)

    def request(self, method: str, path: str, headers: dict, body: bytes = b"",
                chunked: bool = False) -> http.client.HTTPResponse:
        """Send one request and return its (fully read) response."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
        try:
            self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            if chunked:
                for i in range(0, len(body), 64 * 1024):
                    piece = body[i:i + 64 * 1024]
                    self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.sock.sendall(b"0\r\n\r\n")
            else:
                self.sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading it all; its answer is still there
        resp = http.client.HTTPResponse(self.sock, method=method)
        resp.begin()
        resp.body = resp.read()
        return resp

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def _chunked_request(url: str, method: str, path: str, headers: dict, body: bytes):
    """One request with a raw chunked body (no Content-Length) on a fresh connection."""
    conn = RawConnection(url)
    try:
        resp = conn.request(method, path, headers, body, chunked=True)
        return resp.status, dict(resp.getheaders()), resp.body
    finally:
        conn.close()


def _multipart(product: str, image: bytes) -> tuple[str, bytes]:
    boundary = "nh-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"product\"\r\n\r\n{product}"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n1.0.0"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"fw.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += image + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def test_chunked_lot_over_the_limit_is_413_and_creates_nothing(server, factory, db):
    """The issue's case: a valid lot followed by 10 MiB of spaces, chunked."""
    product = factory.product()
    headers = factory.headers("supervisor") | {"Content-Type": "application/json"}
    before = row_counts(db)
    payload = json.dumps({"product": product, "quantity": 1}).encode() + b" " * (10 * MIB)
    status, _, body = _chunked_request(server, "POST", "/api/v1/lots", headers, payload)
    assert status == 413, body[:300]
    assert json.loads(body)["status"] == 413
    assert row_counts(db) == before
    # within the limit, the same chunked body is an ordinary request
    small = json.dumps({"product": product, "quantity": 1}).encode() + b" " * (MIB - 100)
    status, _, body = _chunked_request(server, "POST", "/api/v1/lots", headers, small)
    assert status == 201, body[:300]


def test_every_endpoint_refuses_a_chunked_body_over_its_limit(server, factory, db):
    spec = requests.get(server + "/api/v1/openapi.json", timeout=10).json()
    headers = factory.headers("admin") | {"Content-Type": "application/json",
                                           "Idempotency-Key": "chunked-1"}
    ctype, form = _multipart(factory.product(), b"\x00" * (MAX_FIRMWARE + FORM_SLACK + 1))
    before = row_counts(db)
    failures = []
    for op in operations(spec):
        if op.path == "/api/v1/firmware" and op.method == "post":
            continue  # its own, larger limit: below
        # A valid body, then spaces past the 1 MiB limit: cut at the limit, it would be accepted.
        valid = example(spec, op.body_schema) if op.body_schema is not None else {}
        over = json.dumps(valid).encode() + b" " * MIB
        status, _, body = _chunked_request(server, op.method.upper(), op.url(), headers, over)
        if status != 413:
            failures.append((op.method, op.path, status, body[:200]))
    assert not failures, "\n".join(map(str, failures))
    status, _, body = _chunked_request(server, "POST", "/api/v1/firmware",
                                       factory.headers("admin") | {"Content-Type": ctype}, form)
    assert status == 413, body[:300]
    assert row_counts(db) == before


def test_firmware_upload_within_its_limit_still_streams_chunked(server, factory):
    product = factory.product()
    ctype, form = _multipart(product, b"\x01" * MAX_FIRMWARE)
    status, _, body = _chunked_request(server, "POST", "/api/v1/firmware",
                                       factory.headers("admin") | {"Content-Type": ctype}, form)
    assert status == 201, body[:300]


def _refusals(factory) -> list[tuple[str, str, str, dict, bytes]]:
    """Requests refused before their body is read: 403, 401, 413 (length and chunked)."""
    product = factory.product()
    ctype, form = _multipart(product, b"\x02" * (MAX_FIRMWARE // 2))
    lot = json.dumps({"product": product, "quantity": 1}).encode()
    return [
        ("403 operator uploads firmware", "POST", "/api/v1/firmware",
         factory.headers("operator") | {"Content-Type": ctype}, form),
        ("401 no token", "POST", "/api/v1/firmware", {"Content-Type": ctype}, form),
        ("401 no token, JSON", "POST", "/api/v1/lots", {"Content-Type": "application/json"},
         lot),
        ("415 not multipart", "POST", "/api/v1/firmware",
         factory.headers("admin") | {"Content-Type": "text/plain"}, form),
        ("413 over the limit", "POST", "/api/v1/lots",
         factory.headers("supervisor") | {"Content-Type": "application/json"},
         lot + b" " * (10 * MIB)),
    ]


def test_a_refused_request_leaves_the_kept_alive_connection_usable(server, factory, db):
    """One connection: after each refusal that says keep-alive, the next request on the same
    socket gets its answer; one that says close is followed by a new connection."""
    conn = RawConnection(server)
    try:
        for _round in range(3):
            for name, method, path, headers, body in _refusals(factory):
                resp = conn.request(method, path, headers, body)
                assert resp.status == int(name.split()[0]), (name, resp.status, resp.body[:200])
                said = (resp.getheader("Connection") or "").lower()
                assert said in ("keep-alive", "close"), (name, said)
                if said == "close":
                    conn.close()
                    conn = RawConnection(server)
                try:
                    nxt = conn.request("GET", "/healthz", {})
                except (http.client.HTTPException, OSError) as exc:
                    raise AssertionError(f"after {name} (Connection: {said}) the next request "
                                         f"on the connection failed: {exc!r}") from None
                assert nxt.status == 200, (name, nxt.status)
    finally:
        conn.close()
    # A client that stops sending its body does not hold a server thread: it gets its answer
    # (after the drain's time bound) and the connection is closed.
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(b"POST /api/v1/lots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100000\r\n\r\n{\"product\"")
        stalled = http.client.HTTPResponse(sock)
        stalled.begin()
        assert stalled.status == 401 and stalled.getheader("Connection") == "close"


def test_a_refused_request_then_the_next_on_a_requests_session(server, factory):
    """The issue's client: a requests.Session (one pooled keep-alive connection)."""
    session = requests.Session()
    for name, method, path, headers, body in _refusals(factory) * 2:
        resp = session.request(method, server + path, data=body, headers=headers, timeout=30)
        assert resp.status_code == int(name.split()[0]), (name, resp.status_code)
        try:
            assert session.get(server + "/healthz", timeout=10).status_code == 200
        except requests.ConnectionError as exc:
            raise AssertionError(f"after {name} the next request failed: {exc}") from None


def test_a_chunked_refusal_keeps_the_connection_too(server, factory):
    """403 on a chunked firmware upload within its limit: drained, the connection is kept."""
    ctype, form = _multipart(factory.product(), b"\x03" * (MAX_FIRMWARE // 2))
    conn = RawConnection(server)
    try:
        for _ in range(3):
            resp = conn.request("POST", "/api/v1/firmware",
                                factory.headers("operator") | {"Content-Type": ctype}, form,
                                chunked=True)
            assert resp.status == 403
            assert resp.getheader("Connection", "").lower() == "keep-alive"
            nxt = conn.request("GET", "/healthz", {})
            assert nxt.status == 200 and nxt.body
    finally:
        conn.close()
