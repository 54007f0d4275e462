"""Backups over HTTP: admin only, 202 + outbox, listing, verify, and the /readyz detail."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from storage import LocalStorage
from tests.web.api.api_helpers import assert_problem
from web.models import Backup, OutboxMessage, PeriodicRun, utcnow
from web.services.backups import verify as backup_verify, restore
from web.services import backups


@pytest.fixture()
def store(app, db, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(tmp_path / "backups"))
    return LocalStorage(tmp_path / "backups")


def test_post_requires_admin(client, auth):
    assert_problem(client.post("/api/v1/backups"), 401)
    assert_problem(client.post("/api/v1/backups", headers=auth("supervisor")), 403)
    assert_problem(client.get("/api/v1/backups", headers=auth("operator")), 403)


def test_post_queues_a_backup_through_the_outbox(client, auth, db, store):
    r = client.post("/api/v1/backups", headers=auth("admin"))
    assert r.status_code == 202, r.json
    body = r.json
    assert body["state"] == "queued" and body["kind"] == "manual" and body["requested_by"]
    msg = db.session.scalar(select(OutboxMessage))
    assert (msg.task, msg.queue, msg.args) == ("backups.snapshot", "io", [body["id"]])
    # the io worker's side, then the API shows the result
    assert backups.run_requested(body["id"]) == "done"
    got = client.get(f"/api/v1/backups/{body['id']}", headers=auth("admin")).json
    assert got["state"] == "done" and got["sha256"] and got["row_counts"]["users"] >= 1
    assert got["verified_at"] and got["storage_key"].startswith("db/")


def test_list_is_paged_newest_first_and_filtered(client, auth, db, store):
    ids = [client.post("/api/v1/backups", headers=auth("admin")).json["id"] for _ in range(3)]
    backups.run_requested(ids[0])
    page = client.get("/api/v1/backups?limit=2", headers=auth("admin")).json
    assert [b["id"] for b in page["items"]] == ids[::-1][:2] and page["next_cursor"]
    rest = client.get(f"/api/v1/backups?limit=2&cursor={page['next_cursor']}",
                      headers=auth("admin")).json
    assert [b["id"] for b in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    done = client.get("/api/v1/backups?state=done", headers=auth("admin")).json
    assert [b["id"] for b in done["items"]] == [ids[0]]
    assert_problem(client.get("/api/v1/backups?state=lost", headers=auth("admin")), 400,
                   "query.state")


def test_verify_is_queued_and_its_result_shows(client, auth, db, store):
    bid = client.post("/api/v1/backups", headers=auth("admin")).json["id"]
    assert_problem(client.post(f"/api/v1/backups/{bid}/verify", headers=auth("admin")), 409)
    backups.run_requested(bid)
    r = client.post(f"/api/v1/backups/{bid}/verify", headers=auth("admin"))
    assert r.status_code == 202
    client.post(f"/api/v1/backups/{bid}/verify", headers=auth("admin"))  # idempotent while queued
    msgs = db.session.scalars(select(OutboxMessage)).all()
    assert [(m.task, m.args) for m in msgs] == [("backups.verify", [bid])]
    key = db.session.get(Backup, bid).storage_key
    with open(f"{store.base_dir}/{key}", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    backup_verify.verify(bid)
    got = client.get(f"/api/v1/backups/{bid}", headers=auth("admin")).json
    assert "sha256 mismatch" in got["verify_error"] and got["verified_at"] is None
    assert_problem(client.post("/api/v1/backups/999999/verify", headers=auth("admin")), 404)
    assert_problem(client.get("/api/v1/backups/999999", headers=auth("admin")), 404)


def test_readyz_shows_the_drill_result_canary_and_backup_age(client, auth, db, store):
    # An admin looking from outside: the token, not the address, opens the detail.
    admin = {"headers": auth("admin"), "environ_base": {"REMOTE_ADDR": "203.0.113.7"}}
    body = client.get("/readyz", **admin).json
    assert body["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    assert body["detail"]["restore_drill"]["result"] == "never"
    assert body["detail"]["backup"]["status"] == "none"
    bid = client.post("/api/v1/backups", headers=auth("admin")).json["id"]
    backups.run_requested(bid)
    restore.drill(bid)
    db.session.add(PeriodicRun(name="workers.canary:default", state="done", runs=1, skipped=0,
                               last_success_at=utcnow()))
    db.session.commit()
    r = client.get("/readyz", **admin)
    assert r.status_code == 200
    detail = r.json["detail"]
    assert detail["restore_drill"]["result"] == "passed" and detail["restore_drill"][
        "backup_id"] == bid
    assert detail["backup"]["status"] == "ok" and detail["backup"]["id"] == bid
    assert detail["canary"]["default"]["status"] == "ok"
    assert detail["canary"]["io"]["status"] == "never" and detail["workers"] == "stale"
    listed = client.get("/api/v1/backups", headers=auth("admin")).json["items"][0]
    assert listed["drill_result"] == "passed" and listed["drill_detail"]["mismatches"] == {}


def test_backup_endpoints_are_documented(client):
    doc = client.get("/api/v1/openapi.json").json
    assert {"get", "post"} <= set(doc["paths"]["/api/v1/backups"])
    assert "202" in doc["paths"]["/api/v1/backups"]["post"]["responses"]
    assert "post" in doc["paths"]["/api/v1/backups/{backup_id}/verify"]
    assert "admin" in doc["paths"]["/api/v1/backups"]["get"]["description"]
