"""Console sessions: login and logout, idle timeout, CSRF, cookie flags, and the API untouched."""
from __future__ import annotations

import time_machine

from .conftest import csrf_token, log_in


def test_login_then_logout(client, factory):
    _uid, name = factory.user("operator")
    assert client.get("/console/").headers["Location"].startswith("/console/login")
    resp = log_in(client, name)
    assert resp.status_code == 302 and resp.headers["Location"] == "/console/"
    page = client.get("/console/").get_data(as_text=True)
    assert name in page
    token = csrf_token(client, "/console/")
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/console/").status_code == 302


def test_wrong_password_and_disabled_account_are_refused(client, factory, app):
    from web.services import users
    from web.services.audit import Actor
    uid, name = factory.user("operator")
    assert log_in(client, name, "wrong-password-123").status_code == 401
    assert log_in(client, "nobody-here").status_code == 401
    with app.app_context():
        users.set_active(uid, False, Actor(None, "system:test"))
    assert log_in(client, name).status_code == 401  # the right password, a disabled account


def test_session_cookie_flags_and_path(client, factory):
    _uid, name = factory.user("operator")
    cookie = log_in(client, name).headers["Set-Cookie"]
    assert "nh_console=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # development default; production turns it on


def test_secure_cookie_is_on_in_production_unless_configured(app):
    from web.config import load_config
    assert load_config({"NEUROHUB_ENV": "development"})["CONSOLE_SECURE_COOKIE"] is None
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_idle_timeout_logs_out(client, factory, app):
    _uid, name = factory.user("operator")
    minutes = app.config["CONSOLE_IDLE_MINUTES"]
    with time_machine.travel(0, tick=True) as traveller:
        traveller.move_to("2026-03-01T09:00:00+00:00")
        log_in(client, name)
        assert client.get("/console/").status_code == 200
        traveller.shift((minutes - 1) * 60)  # activity within the window keeps it alive
        assert client.get("/console/").status_code == 200
        traveller.shift((minutes + 1) * 60)
        resp = client.get("/console/")
        assert resp.status_code == 302
        page = client.get(resp.headers["Location"]).get_data(as_text=True)
        assert "log in again" in page or "다시 로그인" in page
        assert client.get("/console/").status_code == 302  # the session is gone for good


def test_post_without_csrf_token_is_403(console, line):
    client = console("supervisor")
    resp = client.post(f"/console/lots/{line['lot']}/hold", data={"reason": "forged"})
    assert resp.status_code == 403
    assert client.post(f"/console/lots/{line['lot']}/hold", data={
        "reason": "forged", "csrf_token": "not-the-token"}).status_code == 403
    assert client.post("/console/logout").status_code == 403
    lot = client.get(f"/console/lots/{line['lot']}").get_data(as_text=True)
    assert "forged" not in lot


def test_login_form_needs_its_token_too(client, factory):
    _uid, name = factory.user("operator")
    resp = client.post("/console/login", data={"username": name,
                                               "password": "correct-horse-battery"})
    assert resp.status_code == 403


def test_console_cookie_does_not_authenticate_the_api(console, app):
    client = console("admin")
    assert client.get("/console/users").status_code == 200
    cookie = client.get_cookie("nh_console", path="/console")
    assert cookie is not None
    # Even sent explicitly to the API (the browser would not: Path=/console), it is ignored.
    resp = client.get("/api/v1/lots", headers={"Cookie": f"nh_console={cookie.value}"})
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert "Set-Cookie" not in resp.headers


def test_api_posts_need_no_csrf_token(client, auth, factory):
    product = factory.product()
    resp = client.post("/api/v1/lots", headers=auth("supervisor"),
                       json={"product": product, "quantity": 2})
    assert resp.status_code == 201
    assert "Set-Cookie" not in resp.headers


def test_login_is_rate_limited_per_account_like_the_api(app, client, factory, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "2 per minute")
    _uid, name = factory.user("operator")
    assert [log_in(client, name, "wrong-password-123").status_code for _ in range(2)] == [401] * 2
    resp = log_in(client, name)  # the right password, but the account's bucket is empty
    assert resp.status_code == 429 and "<html" in resp.get_data(as_text=True)
