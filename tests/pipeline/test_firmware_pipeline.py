"""Firmware through the real pipeline: release -> outbox -> relay -> `io` queue -> worker
(firmware.distribute) -> assignments -> station ack -> FLASH completion judged by the worker."""
from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
import redis
from sqlalchemy import select

from tests.conftest import TEST_CONFIG
from tests.pipeline.conftest import wait_status
from tests.support.procs import celery_worker, relay, service_env, wait_until
from web.models import AuditEvent

ROUTING = [{"step": "FLASH", "name": "Flash", "requires_firmware": True},
           {"step": "FCT", "name": "Functional test"}]


class FirmwarePipeline:
    """A relay at once; the worker (completions, default and io queues) when asked."""

    def __init__(self, app, env, log_dir):
        self.app = app
        self.relay = relay(env, log_dir)
        self.worker = celery_worker(env, log_dir, name="fw-worker",
                                    queues="completions,default,io")
        self.worker_started = False

    def start_worker(self):
        if not self.worker_started:
            self.worker.start()
            self.worker_started = True
            wait_until(lambda: self.app.extensions["celery"].control.ping(timeout=0.5), 60,
                       message=f"the worker to answer\n{self.logs()}")

    def logs(self) -> str:
        out = f"--- relay ---\n{self.relay.output()}"
        if self.worker_started:
            out += f"\n--- worker ---\n{self.worker.output()}"
        return out


@pytest.fixture(scope="module")
def fw_pipeline(app, pg_database, redis_url, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("fw-pipeline-logs")
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url,
                      NEUROHUB_DATA_DIR=app.config["NEUROHUB_DATA_DIR"],
                      FIRMWARE_DIR=app.config["FIRMWARE_DIR"], **TEST_CONFIG)
    p = FirmwarePipeline(app, env, log_dir)
    p.relay.start()
    yield p
    p.relay.stop()
    p.worker.stop()


@pytest.fixture()
def line(factory):
    return {"product": factory.product(routing=ROUTING),
            "stations": [factory.station(steps=["FLASH"]), factory.station(steps=["FLASH"])],
            "other": factory.station(steps=["FCT"]),
            "admin": factory.headers("admin"), "op": factory.headers("operator")}


def upload(client, line, version, data):
    resp = client.post("/api/v1/firmware", headers=line["admin"], content_type=
                       "multipart/form-data", data={"product": line["product"],
                                                     "version": version,
                                                     "file": (io.BytesIO(data), "fw.bin")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def station_items(client, line, code):
    return client.get(f"/api/v1/stations/{code}/firmware", headers=line["op"]).get_json()["items"]


def queued_task_ids(redis_url: str, queue: str) -> list[str]:
    """Task ids of the messages waiting in a Redis queue (kombu keeps a queue as a list)."""
    r = redis.Redis.from_url(redis_url)
    return [json.loads(m)["headers"]["id"] for m in r.lrange(queue, 0, -1)]


def test_release_is_distributed_by_a_worker_on_the_io_queue(fw_pipeline, app, client, line,
                                                            redis_url, db):
    data = b"\x7fFW" + hashlib.sha256(b"pipeline").digest() * 4000
    sha = hashlib.sha256(data).hexdigest()
    fw = upload(client, line, "1.0.0", data)
    assert client.post(f"/api/v1/firmware/{fw['id']}/release",
                       headers=line["admin"]).status_code == 202
    task_id = f"firmware-release-{fw['id']}"
    # This test runs first in the module: no worker consumes io yet, so the relay's message
    # must be waiting in the io queue (not in default), and nothing is distributed.
    assert not fw_pipeline.worker_started
    wait_until(lambda: task_id in queued_task_ids(redis_url, "io"), 20, 0.1,
               f"the distribute message in the io queue\n{fw_pipeline.logs()}")
    assert task_id not in queued_task_ids(redis_url, "default")
    assert station_items(client, line, line["stations"][0]) == []
    fw_pipeline.start_worker()
    for code in line["stations"]:
        items = wait_until(lambda: station_items(client, line, code), 60, 0.2,
                           f"an assignment for {code}\n{fw_pipeline.logs()}")
        assert [(i["firmware_id"], i["sha256"], i["state"]) for i in items] == [
            (fw["id"], sha, "pending")]
    assert station_items(client, line, line["other"]) == []
    shown = client.get(f"/api/v1/firmware/{fw['id']}", headers=line["op"]).get_json()
    assert shown["state"] == "released" and shown["distributed_at"] is not None
    assert task_id not in queued_task_ids(redis_url, "io")


def test_flash_completion_through_the_worker_records_the_servers_sha256(
        fw_pipeline, app, client, line, factory, db):
    fw_pipeline.start_worker()
    data = b"\x7fFW2" + hashlib.sha256(b"flash").digest() * 3000
    sha = hashlib.sha256(data).hexdigest()
    fw = upload(client, line, "2.1.0", data)
    client.post(f"/api/v1/firmware/{fw['id']}/release", headers=line["admin"])
    station = line["stations"][0]
    (item,) = wait_until(lambda: station_items(client, line, station), 60, 0.2,
                         f"the assignment\n{fw_pipeline.logs()}")
    lot = factory.lot(line["product"], quantity=2)

    def complete(**extra):
        r = client.post("/api/v1/completions", headers={**line["op"], "Idempotency-Key":
                                                        uuid.uuid4().hex},
                        json={"lot_no": lot, "step": "FLASH", "station": station,
                              "firmware_version": "2.1.0", "qty_good": 1, **extra})
        assert r.status_code == 202, r.get_json()
        return wait_status(client, line["op"], r.get_json()["id"], timeout=60)

    before_ack = complete()
    assert (before_ack["status"], [r["code"] for r in before_ack["reasons"]]) == (
        "rejected", ["firmware_not_verified"])
    # the station downloads, hashes what it got and acknowledges it
    got = client.get(item["download_url"], headers=line["op"])
    ack = client.post(f"/api/v1/stations/{station}/firmware/{item['id']}/ack",
                      headers=line["op"], json={"sha256": hashlib.sha256(got.data).hexdigest()})
    assert ack.get_json()["state"] == "verified"
    accepted = complete()
    assert accepted["status"] == "accepted", accepted
    assert accepted["firmware_sha256"] == sha
    mismatch = complete(firmware_sha256="0" * 64)
    assert [r["code"] for r in mismatch["reasons"]] == ["firmware_mismatch"]
    dhr = client.get(f"/api/v1/lots/{lot}/dhr", headers=line["op"]).get_json()
    rows = dhr["steps"][0]["completions"]
    flashed = [r for r in rows if r["status"] == "accepted"]
    assert [(r["firmware"]["id"], r["firmware"]["sha256"]) for r in flashed] == [(fw["id"], sha)]


def test_a_corrupted_object_fails_the_release_visibly(fw_pipeline, app, client, line, db):
    fw_pipeline.start_worker()
    fw = upload(client, line, "3.0.0", b"good bytes" * 5000)
    path = f"{app.config['FIRMWARE_DIR']}/{fw['storage_key']}"
    with open(path, "r+b") as fh:  # bit rot after the upload
        fh.seek(1234)
        fh.write(b"\x00")
    client.post(f"/api/v1/firmware/{fw['id']}/release", headers=line["admin"])

    def failed():
        body = client.get(f"/api/v1/firmware/{fw['id']}", headers=line["op"]).get_json()
        return body if body["release_error"] else None
    body = wait_until(failed, 60, 0.2, f"the release to fail\n{fw_pipeline.logs()}")
    assert body["state"] == "draft" and "hashes to" in body["release_error"]
    assert body["assignments"] == []
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "firmware.release_failed",
            AuditEvent.entity_id == str(fw["id"])))
        assert event is not None and event.actor == "system:worker"
        db.session.rollback()
