"""deploy/nginx/neurohub.conf with Debian's nginx in front of two real gunicorns on loopback:
an instance killed with SIGKILL mid-load costs no POST, idle upstream connections are never
reused after gunicorn closed them, and what must not leave the network does not."""
from __future__ import annotations

import gzip
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_CONFIG
from tests.deploy.nginxrun import Nginx, site_config
from tests.support.live import LiveServer
from tests.support.procs import service_env, stop_all
from web.models import Completion

CLIENTS, POSTS_EACH = 8, 30
IDLE_PAUSES = 2


def _stack(redis_url, pg_database, tmp_path):
    env = service_env(**dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                             NEUROHUB_DATA_DIR=str(tmp_path / "data"), TRUSTED_PROXY_HOPS=1))
    a, b = LiveServer(env, tmp_path), LiveServer(env, tmp_path)
    b.proc.log_path = tmp_path / "gunicorn-b.log"
    a.start()
    b.start()
    nginx = Nginx(tmp_path / "nginx", [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]).start()
    return a, b, nginx


def test_nginx_config_is_valid(tmp_path):
    nginx = Nginx(tmp_path / "nginx", ["127.0.0.1:1", "127.0.0.1:2"])
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.deploy
def test_two_gunicorns_behind_nginx(db, factory, pg_database, redis_url, tmp_path):
    """One stack (two gunicorns take seconds to start): headers and what stays inside, idle
    upstream connections, then one instance SIGKILLed mid-load."""
    st = factory.station(steps=["SMT"])
    product = factory.product()
    lots = [factory.lot(product=product, quantity=1000) for _ in range(CLIENTS)]
    for _ in range(20):
        factory.lot(product=product)
    headers = factory.headers("operator")
    sup = factory.headers("supervisor")
    a, b, nginx = _stack(redis_url, pg_database, tmp_path)
    try:
        _check_headers_and_inside(nginx, sup)
        _check_idle_pauses(nginx, sup, product)
        _check_kill_mid_load(nginx, a, db, headers, st, lots)
    finally:
        stop_all(nginx.proc, a.proc, b.proc)


def _check_headers_and_inside(nginx, headers):
    with requests.Session() as s:
        r = s.get(nginx.url + "/api/v1/lots?limit=30", headers={**headers, "Accept-Encoding": "gzip"},
                  stream=True, timeout=10, verify=nginx.cert)
        assert r.status_code == 200
        assert r.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(r.raw.read())[:1] == b"{"
        for h in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                  "Referrer-Policy", "Content-Security-Policy"):
            assert h in r.headers, h
        for path in ("/metrics", "/flower/metrics", "/flower/healthcheck"):
            assert s.get(nginx.url + path, timeout=10, verify=nginx.cert).status_code == 404, path
    r = requests.get(f"http://127.0.0.1:{nginx.http_port}/api/v1/lots", allow_redirects=False,
                     timeout=10)
    assert r.status_code == 301 and r.headers["Location"].startswith("https://")


def _check_idle_pauses(nginx, headers, product):
    """A POST (never retried by nginx) after each pause longer than gunicorn's --keep-alive (2 s):
    nginx must have dropped its idle upstream connections first (keepalive_timeout 1s). A smoke
    check only: nginx also notices most upstream closes of idle connections by itself, so this
    passes with a longer keepalive_timeout too; the race it guards against needs a request in
    the very moment gunicorn closes."""
    with requests.Session() as s:
        for _ in range(IDLE_PAUSES):
            r = s.post(nginx.url + "/api/v1/lots", json={"product": product, "quantity": 1},
                       headers=headers, timeout=10, verify=nginx.cert)
            assert r.status_code == 201, r.text
            time.sleep(2.2)


def _check_kill_mid_load(nginx, a, db, headers, st, lots):
    """nginx sends a request the killed instance never got to the other one, so clients see no
    error; the one case no proxy can hide is an answer cut off mid-way (the instance had decided
    and begun to answer): the station sends it again with the same Idempotency-Key and gets the
    stored answer. At most one such answer per client (one request in flight each), and every
    completion stored exactly once."""
    codes, resent, started = [], [], threading.Event()

    def client(lot):
        with requests.Session() as s:
            for i in range(POSTS_EACH):
                key = uuid.uuid4().hex
                for _ in range(3):
                    try:
                        r = s.post(nginx.url + "/api/v1/completions", json={
                            "lot_no": lot, "step": "SMT", "station": st, "qty_good": 1},
                            headers={**headers, "Idempotency-Key": key}, timeout=30,
                            verify=nginx.cert)
                        break
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) \
                            as exc:  # an answer cut off by the kill
                        resent.append(repr(exc))
                else:
                    codes.append("no answer in 3 tries")
                    continue
                codes.append(r.status_code)
                if i == 3:
                    started.set()
    before = db.session.query(Completion).count()
    db.session.rollback()
    threads = [threading.Thread(target=client, args=(lot,)) for lot in lots]
    for t in threads:
        t.start()
    assert started.wait(60)
    a.proc.kill()  # SIGKILL to master and workers, mid-load
    for t in threads:
        t.join(120)
    assert codes.count(202) == CLIENTS * POSTS_EACH, sorted(set(codes))
    assert len(resent) <= CLIENTS, resent
    n = db.session.query(Completion).count() - before
    assert n == CLIENTS * POSTS_EACH  # each POST stored once, none twice


def test_firmware_body_limit_is_the_apps():
    from web.api.firmware import FORM_SLACK
    from web.config import load_config
    text = site_config(["x:1", "y:2"], "z:3", 1, 2, Path("/c"))
    block = text[text.index("location = /api/v1/firmware"):]
    block = block[:block.index("}")]
    size = int(block.split("client_max_body_size")[1].split(";")[0].strip().rstrip("m"))
    limit = load_config(environ={})["MAX_FIRMWARE_BYTES"] + FORM_SLACK
    assert size * 1024 * 1024 == limit
    assert "proxy_request_buffering off;" in block
