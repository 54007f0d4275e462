"""The database state the web's /metrics reads at scrape time (web/metrics/state.py), on the
session's PostgreSQL; that its queries use indexes is tests/web/api/test_read_plans.py's check."""
from __future__ import annotations

import time
from datetime import timedelta

import redis

from web.models import Backup, LabelJob, OutboxMessage, utcnow

from .helpers import samples, scrape, series, value

URL = "/api/v1/stations"


def _outbox(db, task: str, key: str, queue: str, due_seconds_ago: float) -> None:
    at = utcnow() - timedelta(seconds=due_seconds_ago)
    db.session.add(OutboxMessage(task=task, args=[1], queue=queue, dedup_key=key,
                                 created_at=at, available_at=at))


def test_outbox_pending_by_task_and_the_age_of_the_oldest_due_message(client, db):
    found = scrape(client)
    # An empty outbox: every outbox task at 0 (a dashboard shows 0, not "no data")
    empty = series(found, "neurohub_outbox_pending")
    assert {dict(labels)["task"] for labels in empty} >= {
        "completions.process", "labels.print", "firmware.distribute", "backups.snapshot"}
    assert set(empty.values()) == {0}
    assert value(found, "neurohub_outbox_oldest_age_seconds") == 0
    _outbox(db, "completions.process", "completion:1", "completions", 30)
    _outbox(db, "completions.process", "completion:2", "completions", 3)
    _outbox(db, "labels.print", "label:1", "printing", -60)  # postponed: not due, not late
    _outbox(db, "labels.print", "label:2", "printing", -600)
    db.session.commit()
    found = scrape(client)
    assert value(found, "neurohub_outbox_pending", task="completions.process") == 2
    assert value(found, "neurohub_outbox_pending", task="labels.print") == 2
    assert 29 < value(found, "neurohub_outbox_oldest_age_seconds") < 60


def test_label_jobs_not_yet_ended_by_state(client, db):
    for state in ("queued", "queued", "waiting_printer", "printed", "failed", "sent"):
        db.session.add(LabelJob(template_name="unit", template_version=1, data={}, zpl="^XA^XZ",
                                zpl_sha256="0" * 64, printer_uri="tcp://10.0.0.9:9100",
                                state=state))
    db.session.commit()
    found = scrape(client)
    assert series(found, "neurohub_label_jobs") == {
        (("state", "queued"),): 2, (("state", "waiting_printer"),): 1}
    assert set(series(found, "neurohub_firmware_assignments")) == {
        (("state", s),) for s in ("pending", "delivered", "verified", "failed")}


def test_stations_report_heartbeat_age_and_offline_queue(client, db, factory, auth):
    headers = auth("operator")
    new, old, silent = factory.station(), factory.station(), factory.station()
    assert client.post(f"{URL}/{new}/heartbeat", headers=headers,
                       json={"offline_queue": 4}).status_code == 200
    # An older station app sends the depth as `queued`.
    assert client.post(f"{URL}/{old}/heartbeat", headers=headers,
                       json={"queued": 2}).status_code == 200
    found = scrape(client)
    assert value(found, "neurohub_station_offline_queue_depth", station=new) == 4
    assert value(found, "neurohub_station_offline_queue_depth", station=old) == 2
    assert 0 <= value(found, "neurohub_station_heartbeat_age_seconds", station=new) < 30
    assert value(found, "neurohub_station_heartbeat_age_seconds", station=silent) is None
    refused = client.post(f"{URL}/{new}/heartbeat", headers=headers, json={"offline_queue": -1})
    assert refused.status_code == 422


def test_open_lots_by_step_and_status(client, db, factory):
    product = factory.product()  # SMT -> FCT -> PACK
    factory.lot(product)
    factory.lot(product)
    found = scrape(client)
    assert value(found, "neurohub_lots", step="SMT", status="created") == 2


def test_backup_and_restore_drill(client, db):
    found = scrape(client)
    assert value(found, "neurohub_backup_last_verified_timestamp_seconds") == 0
    assert value(found, "neurohub_restore_drill_last_success") is None  # never ran: no series
    verified = utcnow() - timedelta(hours=3)
    db.session.add(Backup(kind="manual", state="done", verified_at=verified,
                          drill_at=verified, drill_result="failed"))
    db.session.add(Backup(kind="manual", state="done", verified_at=verified - timedelta(days=1),
                          drill_at=verified - timedelta(days=7), drill_result="passed"))
    db.session.commit()
    found = scrape(client)
    assert abs(value(found, "neurohub_backup_last_verified_timestamp_seconds")
               - verified.timestamp()) < 1
    assert value(found, "neurohub_restore_drill_last_success") == 0  # the latest drill failed
    assert abs(value(found, "neurohub_restore_drill_last_timestamp_seconds")
               - verified.timestamp()) < 1


def test_broker_queue_lengths_and_local_storage(client, db, redis_url):
    broker = redis.Redis.from_url(redis_url)
    before = broker.llen("io")
    broker.lpush("io", b"{}", b"{}", b"{}")  # what a broker holds for a stopped I/O worker
    try:
        found = scrape(client)
    finally:
        broker.ltrim("io", 3, -1)  # LPUSH put ours at the head: drop them, keep the rest
    lengths = series(found, "neurohub_celery_queue_length")
    assert set(lengths) == {(("queue", q),) for q in ("completions", "printing", "io", "default")}
    assert lengths[(("queue", "io"),)] == before + 3
    for area in ("data", "firmware", "backups"):
        free = value(found, "neurohub_storage_free_bytes", area=area)
        size = value(found, "neurohub_storage_size_bytes", area=area)
        assert 0 < free <= size, area


def test_a_database_that_cannot_be_reached_leaves_the_rest_served(redis_url, tmp_path):
    from tests.conftest import TEST_CONFIG
    from web import create_app
    down = create_app(dict(TEST_CONFIG, REDIS_URL=redis_url, NEUROHUB_DATA_DIR=str(tmp_path),
                           DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere"))
    started = time.monotonic()
    resp = down.test_client().get("/metrics")
    assert resp.status_code == 200 and time.monotonic() - started < 10
    found = samples(resp.get_data(as_text=True))
    assert value(found, "neurohub_outbox_oldest_age_seconds") is None  # the database's: absent
    assert series(found, "neurohub_lots") == {}
    assert len(series(found, "neurohub_celery_queue_length")) == 4  # the broker's: still there
    assert value(found, "neurohub_storage_free_bytes", area="data") > 0
