"""/readyz tells anyone its status and each check's ok|error; the detail (backup ids, canaries,
error classes) goes only to an admin's token or an internal address, and an X-Forwarded-For the
client wrote itself does not make it internal."""
from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest

from tests.conftest import TEST_CONFIG
from web.config import ConfigError, load_config
from web.models import PeriodicRun, utcnow

OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}  # TEST-NET-3: no network of ours
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
ALL_OK = {"database": "ok", "broker": "ok", "storage": "ok"}
DETAIL = {"workers", "canary", "beat", "backup", "restore_drill", "stations_offline"}


def _ready(client, environ, headers=None):
    r = client.get("/readyz", environ_base=environ, headers=headers or {})
    return r.status_code, r.get_json()


def test_the_public_gets_status_and_ok_or_error_only(client, auth):
    assert _ready(client, OUTSIDE) == (200, {"status": "ready", "checks": ALL_OK})
    # Neither a lower role's token nor a bad credential opens the detail, nor fails the probe.
    for headers in (auth("supervisor"), {"Authorization": "Bearer not-a-token"},
                    {"Authorization": "Basic YWRtaW46YWRtaW4="}):
        assert _ready(client, OUTSIDE, headers) == (200, {"status": "ready", "checks": ALL_OK})


def test_an_admin_token_gets_the_detail_from_outside(client, auth):
    status, body = _ready(client, OUTSIDE, auth("admin"))
    assert status == 200 and body["checks"] == ALL_OK
    assert set(body["detail"]) == DETAIL
    assert body["detail"]["backup"] == {"status": "none", "id": None, "finished_at": None,
                                        "age_hours": None}


def test_loopback_and_the_configured_networks_get_the_detail(app, client, monkeypatch):
    for addr in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert set(_ready(client, {"REMOTE_ADDR": addr})[1]["detail"]) == DETAIL, addr
    assert "detail" not in _ready(client, {"REMOTE_ADDR": "10.1.2.3"})[1]
    monkeypatch.setitem(app.config, "READYZ_DETAIL_NETWORKS", "127.0.0.0/8,10.0.0.0/8")
    assert "detail" in _ready(client, {"REMOTE_ADDR": "10.1.2.3"})[1]
    assert "detail" not in _ready(client, {"REMOTE_ADDR": "192.168.0.5"})[1]
    assert "detail" not in _ready(client, OUTSIDE)[1]


def test_a_failing_check_names_its_error_class_only_inside(app, client, db, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the firmware directory should be")
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(blocker))
    stale = utcnow() - timedelta(seconds=app.config["CANARY_STALE_SECONDS"] + 60)
    db.session.merge(PeriodicRun(name="workers.canary:completions", slot=stale, state="done",
                                 started_at=stale, finished_at=stale, last_success_at=stale,
                                 runs=1, skipped=0))
    db.session.commit()
    status, public = _ready(client, OUTSIDE)
    assert status == 503
    assert public == {"status": "unavailable", "checks": {
        "database": "ok", "broker": "ok", "storage": "error", "completions_worker": "error"}}
    status, inside = _ready(client, LOOPBACK)
    assert status == 503
    assert inside["checks"]["storage"].startswith("error: ") and \
        len(inside["checks"]["storage"]) > len("error: ")
    assert inside["checks"]["completions_worker"].startswith("stale")
    assert inside["detail"]["canary"]["completions"]["status"] == "stale"


@pytest.fixture()
def proxied(pg_database, redis_url, tmp_path, db):
    """The app as it runs behind nginx: one trusted proxy hop (TRUSTED_PROXY_HOPS=1)."""
    from web import create_app
    app = create_app(dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                          NEUROHUB_DATA_DIR=str(tmp_path / "data"), TRUSTED_PROXY_HOPS=1))
    app.testing = True
    return app.test_client()


def test_a_spoofed_forwarded_for_does_not_make_a_client_internal(proxied, client):
    # nginx on this host forwards a client of this host: the detail.
    assert "detail" in _ready(proxied, LOOPBACK, {"X-Forwarded-For": "127.0.0.1"})[1]
    # An outside client that wrote "127.0.0.1" itself: a proxy that appends puts the real
    # address last, and only that one hop is trusted.
    spoofed = {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"}
    assert _ready(proxied, LOOPBACK, spoofed) == (200, {"status": "ready", "checks": ALL_OK})
    # With no proxy trusted (TRUSTED_PROXY_HOPS=0) the header is not read at all.
    assert "detail" not in _ready(client, OUTSIDE, {"X-Forwarded-For": "127.0.0.1"})[1]


def test_the_openapi_document_says_who_gets_the_detail(client, auth):
    op = client.get("/api/v1/openapi.json").get_json()["paths"]["/readyz"]["get"]
    assert "security" not in op  # anyone may ask
    for needle in ("admin", "READYZ_DETAIL_NETWORKS", "TRUSTED_PROXY_HOPS", "`ok` or `error`"):
        assert needle in op["description"], needle
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert "detail access" in schema["properties"]["detail"]["description"]
    # Both answers are the documented one (schemathesis asks from loopback: the detailed one).
    for environ, headers in ((OUTSIDE, {}), (OUTSIDE, auth("admin"))):
        jsonschema.validate(_ready(client, environ, headers)[1], schema)


def test_readyz_detail_networks_must_be_networks():
    with pytest.raises(ConfigError, match="READYZ_DETAIL_NETWORKS"):
        load_config(environ={"READYZ_DETAIL_NETWORKS": "10.0.0.0/33"})
    cfg = load_config(environ={"READYZ_DETAIL_NETWORKS": "10.0.0.0/8, fd00::/8"})
    assert cfg["READYZ_DETAIL_NETWORKS"] == "10.0.0.0/8, fd00::/8"
