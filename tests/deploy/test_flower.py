"""Flower for real behind deploy/nginx/neurohub.conf (Debian's nginx): the systemd unit's command
line on the test Redis broker, a gunicorn answering nginx's auth_request. Without credentials
401; a supervisor reads pages and the GET API but gets 403 on every control route; an admin
revokes (audited); /flower/metrics and /flower/healthcheck only on Flower's internal address."""
from __future__ import annotations

import re
import shlex
import sys
import uuid

import pytest
import requests
import yaml
from flower.urls import handlers as flower_routes
from sqlalchemy import select

from tests.conftest import TEST_CONFIG
from tests.deploy.nginxrun import Nginx
from tests.support.live import LiveServer
from tests.support.procs import ROOT, Proc, free_port, service_env, stop_all, wait_until
from web.api.flower_auth import is_read
from web.models import AuditEvent

UNIT = ROOT / "deploy" / "systemd" / "neurohub-flower.service"
SERVICE = ("flower", "flower-service-secret-0123")  # FLOWER_BASIC_AUTH: nginx -> Flower only
PASSWORD = "correct-horse-battery"  # the factory's users'
TABLE = "/flower/tasks/datatable"  # the one POST that reads: the tasks page fetches its rows


def flower_posts() -> list[str]:
    """Every path of Flower 2.2's own route table whose handler takes a POST (ids as "x")."""
    paths = []
    for route in flower_routes:
        pattern, handler = (route.regex.pattern, route.target) if hasattr(route, "regex") \
            else route[:2]
        if "post" in vars(handler) and pattern != ".*":  # .*: its not-found page
            paths.append("/flower" + pattern.rstrip("$").replace("(.+)", "x")
                         .replace("(.*)", "x"))
    return paths


def flower_argv(port: int) -> list[str]:
    """The systemd unit's ExecStart, with this venv's celery and a free port."""
    line = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0] == "/opt/neurohub/bin/celery"
    return [sys.executable, "-m", "celery", *(f"--port={port}" if a.startswith("--port=") else a
                                              for a in argv[1:])]


def test_every_flower_route_that_takes_a_post_is_control_but_the_task_table():
    """Flower's route table: each POST handler needs admin, except the tasks table's read."""
    posts = flower_posts()
    assert len(posts) == 15 and TABLE in posts, posts  # 14 control + the table
    for path in posts:
        assert is_read("POST", path) == (path == TABLE), path
        assert is_read("GET", path)  # a GET of a control route is Flower's 405, harmless
    for method in ("PUT", "DELETE", "PATCH", "", "PROPFIND"):
        assert not is_read(method, "/flower/api/workers")
    assert is_read("GET", "/flower/api/workers?refresh=1")
    assert not is_read("POST", "/flower/tasks/datatable/../../api/task/revoke/x")
    assert not is_read("POST", "/flower/tasks/datatabl%65")
    assert not is_read("GET", "/elsewhere")


def test_the_deployments_start_flower_on_the_internal_network_under_flower():
    unit = UNIT.read_text()
    assert "--address=127.0.0.1" in unit and "--url_prefix=flower" in unit
    entry = (ROOT / "deploy/container/entrypoint.sh").read_text()
    start = entry[entry.index("  flower)"):entry.index(";;", entry.index("  flower)"))]
    assert "--url_prefix=flower" in start and "--port=5555" in start
    for name in ("docker-compose.onprem.yml", "docker-compose.aws.yml"):
        services = yaml.safe_load((ROOT / "deploy" / name).read_text())["services"]
        assert services["flower"]["command"] == ["flower"]
        assert "ports" not in services["flower"], f"{name}: Flower published past nginx"
        assert "/flower/healthcheck" in services["flower"]["healthcheck"]["test"]


def _start(tmp_path, pg_database, redis_url):
    env = service_env(**dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                             NEUROHUB_DATA_DIR=str(tmp_path / "data"), TRUSTED_PROXY_HOPS=1,
                             FLOWER_BASIC_AUTH=":".join(SERVICE)))
    web = LiveServer(env, tmp_path, workers=1, threads=4).start()
    port = free_port()
    flower = Proc("flower", flower_argv(port), env, tmp_path)
    flower.start()
    inside = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(inside + "/flower/healthcheck", timeout=1).text == "OK"
        except requests.RequestException:
            return False
    addr = f"127.0.0.1:{web.port}"
    try:
        wait_until(healthy, 60, 0.2, lambda: f"Flower to answer\n{flower.output()}")
        nginx = Nginx(tmp_path / "nginx", [addr, addr], flower=f"127.0.0.1:{port}").start()
    except BaseException:
        stop_all(flower, web.proc)
        raise
    return web, flower, nginx, inside


@pytest.mark.slow
def test_flower_behind_nginx(db, factory, pg_database, redis_url, tmp_path):
    """One stack: who gets what through nginx, and what only the internal address answers."""
    users = {role: factory.user(role)[1] for role in ("operator", "supervisor", "admin")}
    web, flower, nginx, inside = _start(tmp_path, pg_database, redis_url)
    try:
        def call(method, path, who=None, **kw):
            auth = (users[who], PASSWORD) if who in users else who
            return requests.request(method, nginx.url + path, auth=auth, timeout=15,
                                    verify=nginx.cert, allow_redirects=False, **kw)
        _check_logins(call, users["admin"])
        _check_supervisor_reads_only(call)
        _check_admin_controls(call, db, users["admin"])
        _check_inside_only(call, inside)
    finally:
        stop_all(nginx.proc, flower, web.proc)


def _check_logins(call, admin):
    r = call("GET", "/flower/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert call("GET", "/flower/", ("nobody", PASSWORD)).status_code == 401
    assert call("GET", "/flower/", (admin, "wrong-password")).status_code == 401
    # Flower's own credential is no login: only nginx sends it, after a person's check.
    assert call("GET", "/flower/api/workers", SERVICE).status_code == 401
    assert call("GET", "/flower/", "operator").status_code == 403
    assert call("GET", "/internal/flower-auth", "admin").status_code == 404


def _check_supervisor_reads_only(call):
    page = call("GET", "/flower/", "supervisor")
    assert page.status_code == 200 and "/flower/static/" in page.text
    asset = re.search(r'/flower/static/[^"?]+\.js', page.text).group(0)
    assert call("GET", asset, "supervisor").status_code == 200
    for path in ("/flower/tasks", "/flower/broker", "/flower/api/workers", "/flower/api/tasks",
                 "/flower/api/task/types"):
        r = call("GET", path, "supervisor")
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    table = call("POST", TABLE, "supervisor", data={
        "draw": 1, "start": 0, "length": 10, "order[0][column]": 0, "order[0][dir]": "desc"})
    assert table.status_code == 200 and table.json()["draw"] == 1
    control = [path for path in flower_posts() if path != TABLE]
    for path in control + ["/flower/api/task/revoke/x?terminate=true"]:
        r = call("POST", path, "supervisor")
        assert r.status_code == 403, (path, r.status_code)
    for method in ("PUT", "DELETE"):
        assert call(method, "/flower/api/workers", "supervisor").status_code == 403


def _check_admin_controls(call, db, admin):
    task = str(uuid.uuid4())
    r = call("POST", f"/flower/api/task/revoke/{task}?terminate=true", "admin")
    assert r.status_code == 200 and r.json() == {"message": f"Revoked '{task}'"}
    # Past nginx to Flower itself, which knows no such worker (403 would be nginx refusing).
    assert call("POST", "/flower/api/worker/pool/grow/nobody@nowhere", "admin").status_code == 404
    # A script's way in: a bearer token from the API's login.
    token = call("POST", "/api/v1/auth/token", json={"username": admin, "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    other = str(uuid.uuid4())
    r = call("POST", f"/flower/api/task/revoke/{other}", headers=bearer)
    assert r.status_code == 200, r.text
    db.session.rollback()
    rows = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "flower.control").order_by(AuditEvent.id)).all()
    assert [(e.actor, e.entity_id, e.after["method"]) for e in rows] == [
        (admin, f"api/task/revoke/{task}", "POST"),
        (admin, "api/worker/pool/grow/nobody@nowhere", "POST"),
        (admin, f"api/task/revoke/{other}", "POST")]


def _check_inside_only(call, inside):
    for path in ("/flower/metrics", "/flower/healthcheck", "//flower/metrics",
                 "/flower//healthcheck", "/flower/metrics?x=1"):
        for who in (None, "admin"):
            assert call("GET", path, who).status_code == 404, (path, who)
    metrics = requests.get(inside + "/flower/metrics", timeout=5)
    assert metrics.status_code == 200 and "flower_events_total" in metrics.text
    assert requests.get(inside + "/flower/healthcheck", timeout=5).text == "OK"
    # Everything else on the internal address still wants Flower's own credential.
    assert requests.get(inside + "/flower/api/workers", timeout=5).status_code == 401
    assert requests.get(inside + "/flower/api/workers", auth=SERVICE, timeout=5).status_code == 200
