"""POST /api/v1/auth/token and the bearer-token / role rules every endpoint follows."""
from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager

import jwt
import pytest
import time_machine

from tests.conftest import TEST_CONFIG

from .api_helpers import assert_problem

TOKEN_URL = "/api/v1/auth/token"
PASSWORD = "correct-horse-battery"
SECRET = TEST_CONFIG["SECRET_KEY"]

# Every token-protected endpoint (method, path); the paths need not exist: auth comes first.
PROTECTED = [
    ("GET", "/api/v1/products"), ("POST", "/api/v1/products"),
    ("GET", "/api/v1/products/P-1"), ("POST", "/api/v1/products/P-1/routing"),
    ("GET", "/api/v1/stations"), ("POST", "/api/v1/stations"),
    ("POST", "/api/v1/stations/ST-1/heartbeat"),
    ("GET", "/api/v1/lots"), ("POST", "/api/v1/lots"), ("GET", "/api/v1/lots/LOT-1"),
    ("POST", "/api/v1/lots/LOT-1/hold"), ("POST", "/api/v1/lots/LOT-1/release"),
    ("POST", "/api/v1/lots/LOT-1/scrap"), ("GET", "/api/v1/lots/LOT-1/dhr"),
    ("POST", "/api/v1/completions"), ("GET", "/api/v1/completions/1"),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(uid: int, name: str, role: str, **over) -> dict:
    now = int(time.time())
    return {"sub": str(uid), "name": name, "role": role, "iat": now, "exp": now + 600} | over


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _login(client, username, password):
    return client.post(TOKEN_URL, json={"username": username, "password": password})


# --- POST /api/v1/auth/token ------------------------------------------------------------------

def test_token_success_returns_a_working_bearer_token(client, factory, app):
    uid, name = factory.user("supervisor")
    resp = _login(client, name, PASSWORD)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == app.config["ACCESS_TOKEN_EXPIRE_MINUTES"] * 60
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(uid) and claims["role"] == "supervisor"
    assert 0 < claims["exp"] - time.time() <= body["expires_in"] + 5
    ok = client.get("/api/v1/lots", headers=_bearer(body["access_token"]))
    assert ok.status_code == 200


def test_wrong_password_and_unknown_user_are_the_same_401(client, factory):
    _, name = factory.user("operator")
    wrong = assert_problem(_login(client, name, "not-the-password"), 401)
    unknown = assert_problem(_login(client, "nobody-here", "whatever-password"), 401)
    assert "access_token" not in wrong and "access_token" not in unknown
    # No user enumeration: both failures read exactly the same.
    assert wrong["detail"] == unknown["detail"]


@pytest.mark.parametrize("body, missing", [
    ({"password": "x" * 10}, "username"),
    ({"username": "someone"}, "password"),
    ({"username": "", "password": "x" * 10}, "username"),
    ({"username": "someone", "password": 12345678}, "password"),
])
def test_token_invalid_body_is_422_naming_the_field(client, body, missing):
    assert_problem(client.post(TOKEN_URL, json=body), 422, missing)


def test_token_empty_object_names_both_fields(client):
    resp = client.post(TOKEN_URL, json={})
    assert_problem(resp, 422, "username")
    assert_problem(resp, 422, "password")


def test_token_not_json_is_415(client):
    resp = client.post(TOKEN_URL, data="username=a&password=b",
                       content_type="application/x-www-form-urlencoded")
    assert_problem(resp, 415)


@contextmanager
def _limited(app, pg_database, redis_url, **config):
    """A second app with its own login limits in a fresh in-memory limiter store."""
    from web import create_app
    from web.extensions import db
    limited = create_app(dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                              RATELIMIT_STORAGE_URI="memory://", **config))
    limited.testing = True
    try:
        yield limited.test_client()
    finally:
        with limited.app_context():
            db.engine.dispose()
        # create_app made the new app's Celery the default (and bound the worker signals to
        # it); give both back to the session app.
        from workers import signals
        app.extensions["celery"].set_default()
        signals.bind(app)


def test_login_rate_limit_answers_429(pg_database, redis_url, app, factory):
    _, name = factory.user("operator")
    with _limited(app, pg_database, redis_url, LOGIN_RATE_LIMIT="3 per minute") as c:
        statuses = [_login(c, name, "wrong-password-!").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        # The fourth attempt is refused even with the right password.
        body = assert_problem(_login(c, name, PASSWORD), 429)
        assert "access_token" not in body


def test_padded_usernames_count_against_the_same_account(pg_database, redis_url, app, factory):
    _, name = factory.user("admin")
    with _limited(app, pg_database, redis_url, LOGIN_RATE_LIMIT="3 per minute",
                  LOGIN_IP_RATE_LIMIT="100 per minute") as c:
        def guess(username, password, n):  # each guess from another address
            return c.post(TOKEN_URL, json={"username": username, "password": password},
                          environ_base={"REMOTE_ADDR": f"10.0.0.{n}"})
        for n, padded in enumerate((f" {name}", f"{name}\t", f"\u00a0{name}\n")):
            assert_problem(guess(padded, "wrong-password-!", n), 401)
        # Login strips the padding, so the limit does too: a fresh spelling is no fresh bucket.
        assert_problem(guess(f"  {name}  ", PASSWORD, 10), 429)
        assert_problem(guess(name, PASSWORD, 11), 429)


def test_one_accounts_failures_do_not_lock_out_its_address(pg_database, redis_url, app,
                                                           factory):
    _, victim = factory.user("operator")
    _, colleague = factory.user("operator")
    with _limited(app, pg_database, redis_url, LOGIN_RATE_LIMIT="3 per minute",
                  LOGIN_IP_RATE_LIMIT="6 per minute") as c:
        for _ in range(3):
            assert_problem(_login(c, victim, "wrong-password-!"), 401)
        assert_problem(_login(c, victim, PASSWORD), 429)
        # Same PC, another operator: the account limit is not the address's.
        assert _login(c, colleague, PASSWORD).status_code == 200
        # The address has its own, higher limit: guessing across accounts stops there too.
        statuses = [_login(c, f"nobody-{i}", "wrong-password-!").status_code for i in range(4)]
        assert 429 in statuses and statuses[0] == 401
        assert_problem(_login(c, colleague, PASSWORD), 429)


def test_forwarded_for_is_trusted_only_from_configured_proxy_hops(pg_database, redis_url, app,
                                                                  factory):
    _, name = factory.user("operator")
    behind_nginx = {"LOGIN_RATE_LIMIT": "100 per minute", "LOGIN_IP_RATE_LIMIT": "2 per minute"}
    with _limited(app, pg_database, redis_url, TRUSTED_PROXY_HOPS=1, **behind_nginx) as c:
        def login_from(address):
            return c.post(TOKEN_URL, json={"username": name, "password": "wrong-password-!"},
                          headers={"X-Forwarded-For": address})
        assert [login_from("10.0.0.7").status_code for _ in range(3)] == [401, 401, 429]
        # Every client reaches the web from nginx's 127.0.0.1: each still has its own bucket.
        assert login_from("10.0.0.8").status_code == 401
        # Only the hop nginx appended is believed, not what the client wrote before it.
        assert login_from("10.0.0.99, 10.0.0.7").status_code == 429
    with _limited(app, pg_database, redis_url, **behind_nginx) as c:
        # Default: no proxy trusted, so a forged header buys no fresh bucket.
        statuses = [c.post(TOKEN_URL, json={"username": name, "password": "wrong-password-!"},
                           headers={"X-Forwarded-For": f"10.0.1.{i}"}).status_code
                    for i in range(3)]
        assert statuses == [401, 401, 429]


def test_a_user_created_with_padding_logs_in_by_the_name_login_reads(client, app, db):
    from web.services.audit import CLI
    from web.services.users import create_user
    with app.app_context():
        user = create_user("  padded-user\t", PASSWORD, "operator", CLI)
        assert user.username == "padded-user"
    assert _login(client, "padded-user", PASSWORD).status_code == 200


# --- bearer token checks ----------------------------------------------------------------------

@pytest.mark.parametrize("method, path", PROTECTED)
def test_every_endpoint_needs_a_token(client, method, path):
    resp = client.open(path, method=method, json={})
    assert_problem(resp, 401)
    assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token abc"])
def test_malformed_authorization_header_is_401(client, header):
    resp = client.get("/api/v1/lots", headers={"Authorization": header})
    assert_problem(resp, 401)
    assert "WWW-Authenticate" in resp.headers


def test_expired_token_is_401(client, factory):
    uid, name = factory.user("admin")
    past = int(time.time()) - 3600
    token = jwt.encode(_claims(uid, name, "admin", iat=past - 60, exp=past), SECRET,
                       algorithm="HS256")
    resp = client.get("/api/v1/products", headers=_bearer(token))
    assert_problem(resp, 401)
    assert "invalid_token" in resp.headers.get("WWW-Authenticate", "")


def test_a_token_accepted_before_is_refused_once_it_expires(client, factory):
    """Verified tokens are remembered per process, but never past their expiry."""
    uid, name = factory.user("admin")
    now = int(time.time())
    token = jwt.encode(_claims(uid, name, "admin", iat=now, exp=now + 60), SECRET,
                       algorithm="HS256")
    assert client.get("/api/v1/products", headers=_bearer(token)).status_code == 200
    assert client.get("/api/v1/products", headers=_bearer(token)).status_code == 200
    with time_machine.travel(now + 60.1, tick=False):  # the clock passes exp: no waiting for it
        resp = client.get("/api/v1/products", headers=_bearer(token))
    assert_problem(resp, 401)
    assert "expired" in resp.get_json()["detail"]


def test_api_responses_set_no_cookies(client, factory):
    resp = client.post(TOKEN_URL, json={"username": factory.user("operator")[1],
                                        "password": PASSWORD})
    assert resp.status_code == 200 and "Set-Cookie" not in resp.headers


def test_tampered_signature_is_401(client, factory):
    uid, name = factory.user("admin")
    token = jwt.encode(_claims(uid, name, "admin"), SECRET, algorithm="HS256")
    head, payload, sig = token.split(".")
    i = len(sig) // 2  # a middle character: every one of its bits is significant
    flipped = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
    assert client.get("/api/v1/products", headers=_bearer(token)).status_code == 200
    assert_problem(client.get("/api/v1/products", headers=_bearer(f"{head}.{payload}.{flipped}")),
                   401)


def test_tampered_payload_is_401(client, factory):
    uid, name = factory.user("operator")
    token = jwt.encode(_claims(uid, name, "operator"), SECRET, algorithm="HS256")
    head, _, sig = token.split(".")
    forged = _b64(json.dumps(_claims(uid, name, "admin")).encode())
    resp = client.post("/api/v1/products", headers=_bearer(f"{head}.{forged}.{sig}"),
                       json={"code": "X", "name": "x", "routing": [{"step": "S", "name": "s"}]})
    assert_problem(resp, 401)


def test_token_signed_with_another_key_is_401(client, factory):
    uid, name = factory.user("admin")
    token = jwt.encode(_claims(uid, name, "admin"), "another-secret-key-0123456789abcdef-xyz",
                       algorithm="HS256")
    assert_problem(client.get("/api/v1/products", headers=_bearer(token)), 401)


def test_alg_none_token_is_401(client, factory):
    uid, name = factory.user("admin")
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(uid, name, "admin")).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert_problem(client.get("/api/v1/products", headers=_bearer(token)), 401)


@pytest.mark.parametrize("drop_or_change", [
    {"exp": None}, {"sub": None}, {"role": None}, {"role": "superuser"}, {"sub": "not-a-number"},
])
def test_token_with_missing_or_bad_claims_is_401(client, factory, drop_or_change):
    uid, name = factory.user("admin")
    claims = _claims(uid, name, "admin")
    for k, v in drop_or_change.items():
        if v is None:
            claims.pop(k)
        else:
            claims[k] = v
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert_problem(client.get("/api/v1/products", headers=_bearer(token)), 401)


# --- roles ------------------------------------------------------------------------------------

def test_operator_cannot_create_a_product(client, auth):
    resp = client.post("/api/v1/products", headers=auth("operator"),
                       json={"code": "P-OP", "name": "x", "routing": [{"step": "S", "name": "s"}]})
    assert_problem(resp, 403)
    assert client.get("/api/v1/products/P-OP", headers=auth("admin")).status_code == 404


def test_supervisor_cannot_create_a_product(client, auth):
    resp = client.post("/api/v1/products", headers=auth("supervisor"),
                       json={"code": "P-SV", "name": "x", "routing": [{"step": "S", "name": "s"}]})
    assert_problem(resp, 403)


def test_operator_cannot_create_a_lot(client, auth, factory):
    product = factory.product()
    resp = client.post("/api/v1/lots", headers=auth("operator"),
                       json={"product": product, "quantity": 1})
    assert_problem(resp, 403)
    assert client.get("/api/v1/lots", headers=auth("operator")).get_json()["items"] == []


def test_operator_cannot_hold_a_lot(client, auth, factory):
    lot = factory.lot()
    assert_problem(client.post(f"/api/v1/lots/{lot}/hold", headers=auth("operator"),
                               json={"reason": "x"}), 403)


def test_supervisor_cannot_create_a_station(client, auth):
    resp = client.post("/api/v1/stations", headers=auth("supervisor"),
                       json={"code": "ST-SV", "name": "x", "steps": ["SMT"]})
    assert_problem(resp, 403)
    listed = client.get("/api/v1/stations", headers=auth("supervisor")).get_json()["items"]
    assert listed == []


def test_higher_roles_include_lower_ones(client, auth, factory):
    product = factory.product()
    resp = client.post("/api/v1/lots", headers=auth("admin"), json={"product": product,
                                                                    "quantity": 1})
    assert resp.status_code == 201
    assert client.get("/api/v1/lots", headers=auth("admin")).status_code == 200
