"""nginx's auth_request check for Flower (/internal/flower-auth), through the Flask client: roles,
deny by default, Flower's credential handed back, and the login limits applied to basic auth.
tests/deploy/test_flower.py runs the same through a real nginx in front of a real Flower."""
from __future__ import annotations

import base64

PASSWORD = "correct-horse-battery"  # the factory's users'


def basic(name: str, password: str) -> dict:
    """An Authorization header for HTTP basic."""
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def ask(client, auth: dict, method: str | None = "GET", uri: str = "/flower/"):
    """What nginx sends: the original method and URI (None: a caller that names none)."""
    headers = dict(auth, **({"X-Original-Method": method} if method is not None else {}),
                   **{"X-Original-URI": uri})
    return client.get("/internal/flower-auth", headers=headers)


def test_roles_decide_reads_and_control(client, factory):
    names = {role: factory.user(role)[1] for role in ("operator", "supervisor", "admin")}
    revoke = ("POST", "/flower/api/task/revoke/abc?terminate=true")
    assert ask(client, basic(names["operator"], PASSWORD)).status_code == 403
    assert ask(client, basic(names["supervisor"], PASSWORD)).status_code == 204
    assert ask(client, basic(names["supervisor"], PASSWORD), "POST",
               "/flower/tasks/datatable").status_code == 204
    assert ask(client, basic(names["supervisor"], PASSWORD), *revoke).status_code == 403
    # No method named: treated as control (deny by default).
    assert ask(client, basic(names["supervisor"], PASSWORD), None).status_code == 403
    assert ask(client, basic(names["admin"], PASSWORD), *revoke).status_code == 204
    assert ask(client, basic(names["admin"], PASSWORD), None).status_code == 204


def test_without_a_login_the_browser_is_asked_for_one(client, factory):
    r = ask(client, {})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    _, name = factory.user("admin")
    assert ask(client, basic(name, "not-the-password")).status_code == 401
    assert ask(client, {"Authorization": "Basic !!!"}).status_code == 401
    assert ask(client, {"Authorization": "Bearer forged"}).status_code == 401
    assert ask(client, factory.headers("supervisor")).status_code == 204


def test_flower_gets_its_own_credential_never_the_persons(app, client, factory, monkeypatch):
    monkeypatch.setitem(app.config, "FLOWER_BASIC_AUTH", "flower:s3cret-one,spare:s3cret-two")
    _, name = factory.user("supervisor")
    r = ask(client, basic(name, PASSWORD))
    assert r.status_code == 204
    assert r.headers["X-Flower-Authorization"] == \
        "Basic " + base64.b64encode(b"flower:s3cret-one").decode()
    monkeypatch.setitem(app.config, "FLOWER_BASIC_AUTH", None)  # Flower without auth (dev)
    assert ask(client, basic(name, PASSWORD)).headers["X-Flower-Authorization"] == ""


def test_wrong_passwords_are_limited_like_the_login(app, client, factory, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "3 per minute")
    _, name = factory.user("admin")
    for _ in range(3):
        assert ask(client, basic(name, "guess")).status_code == 401
    # Locked for the window, even with the right password; 403, as nginx passes only 401/403.
    r = ask(client, basic(name, PASSWORD))
    assert r.status_code == 403 and "too many" in r.get_json()["detail"]

