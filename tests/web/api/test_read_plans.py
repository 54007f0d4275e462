"""No read endpoint is linear in the whole history: every SELECT it runs is planned with indexes.

The database gets a few thousand lots of history (written in bulk, server side, then
ANALYZE), every GET route of the OpenAPI document is called through the app, each SELECT it
sends is captured and planned again with EXPLAIN (FORMAT JSON), and no plan may read a
history table (completions, label jobs, audit events, lots, units) with a sequential scan.
A plan with a Seq Scan over one of them costs time proportional to the whole table, however
little the request returns (as ``GET /completions/{id}`` did, looking for its label jobs).
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

from .spec_walk import SPEC_URL

HISTORY = ("completions", "label_jobs", "audit_events", "lots", "lot_units")
# GET routes whose answer comes from somewhere else than these tables, or that are no reads.
NOT_PLANNED = {
    "/api/v1/files/{key}": "firmware bytes from storage",
    "/api/v1/firmware/{firmware_id}/download": "firmware bytes from storage",
    "/api/v1/stations/{code}/labels/next": "hands a job out (a write)",
}
LOTS, PER_LOT = 2000, 12  # 24,000 completions and audit rows, 8,000 label jobs


def _fill_history(db, product_id: int, revision_id: int, station_id: int, user_id: int):
    """Lots with units, completions, label jobs and audit rows, in bulk (server side)."""
    sql = [
        f"""INSERT INTO lots (lot_no, product_id, routing_revision_id, quantity, qty_good,
              step_passed, status, current_seq, current_step, created_by, created_at, updated_at)
            SELECT 'H-' || g, {product_id}, {revision_id}, 5, 5, 0,
              CASE WHEN g % 40 = 0 THEN 'in_process' ELSE 'completed' END,
              CASE WHEN g % 40 = 0 THEN 2 END, CASE WHEN g % 40 = 0 THEN 'FCT' END,
              'supervisor', now(), now()
            FROM generate_series(1, {LOTS}) g""",
        """INSERT INTO lot_units (lot_id, serial, status)
            SELECT l.id, l.lot_no || '-' || u, 'ok' FROM lots l, generate_series(1, 5) u
            WHERE l.lot_no LIKE 'H-%'""",
        f"""INSERT INTO completions (idempotency_key, request_hash, lot_id, step, station_id,
              operator_id, unit_serial, measurements, status, reasons, results, received_at,
              processed_at)
            SELECT l.lot_no || '/' || k, md5(l.lot_no || k), l.id,
              (ARRAY['SMT', 'FCT', 'PACK'])[k % 3 + 1], {station_id}, {user_id},
              l.lot_no || '-' || (k % 5 + 1), '{{"voltage": 3.3}}', 'accepted', '[]',
              '[{{"name": "voltage", "value": 3.3, "unit": "V", "min": 3.2, "max": 3.4,
                 "pass": true}}]', now(), now()
            FROM lots l, generate_series(1, {PER_LOT}) k WHERE l.lot_no LIKE 'H-%'""",
        f"""INSERT INTO label_jobs (template_name, template_version, data, zpl, zpl_sha256,
              printer_uri, station_id, lot_id, completion_id, unit_serial, copies, reason, state,
              attempts, created_by, created_at)
            SELECT 'unit', 1, '{{}}', '^XA^XZ', md5(c.id::text), 'tcp://printer-' || (c.id % 7),
              {station_id}, c.lot_id, c.id, c.unit_serial, 1, 'first_print',
              CASE WHEN c.id % 500 = 0 THEN 'queued' ELSE 'printed' END, 1, 'system:worker', now()
            FROM completions c WHERE c.step = 'PACK'""",
        """INSERT INTO audit_events (at, actor, action, entity_type, entity_id, lot_id, after)
            SELECT now(), 'system:worker', 'completion.' || a, 'completion', c.id::text,
              c.lot_id, '{"step": "FCT"}'
            FROM completions c, (VALUES ('accepted')) v(a)""",
        "ANALYZE lots, lot_units, completions, label_jobs, audit_events",
    ]
    for statement in sql:
        db.session.execute(text(statement))
    db.session.commit()


def _seq_scans(plan: dict) -> list[str]:
    """The history tables a plan reads with a sequential scan."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in HISTORY:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


@pytest.fixture()
def history(app, db, factory, auth):
    product = factory.product()
    station = factory.station(steps=["SMT", "FCT", "PACK"])
    headers = auth("admin")
    ids = db.session.execute(text(
        "SELECT p.id, r.id, s.id, u.id FROM products p JOIN routing_revisions r "
        "ON r.product_id = p.id, stations s, users u WHERE p.code = :p AND s.code = :s "
        "AND u.role = 'admin'"), {"p": product, "s": station}).first()
    _fill_history(db, *ids)
    fw = db.session.execute(text(
        "INSERT INTO firmware (product_id, version, storage_key, filename, sha256, size, state, "
        "created_at) VALUES (:p, '1.0', 'k', 'f.bin', :sha, 1, 'released', now()) RETURNING id"),
        {"p": ids[0], "sha": "a" * 64}).scalar_one()
    db.session.commit()
    yield {"product": product, "station": station, "headers": headers, "firmware": fw}
    # Much faster than the next test's DELETEs of every row.
    db.session.execute(text("TRUNCATE " + ", ".join(HISTORY + ("firmware",)) + " CASCADE"))
    db.session.commit()


def _requests(h: dict, job_id: int, completion_id: int) -> dict[str, list[str]]:
    """Concrete requests per GET path of the spec: every filter of the list endpoints."""
    lots, jobs = "/api/v1/lots", "/api/v1/labels/jobs"
    deep = "aWQ6MjAwMA"  # the API's cursor for "below id 2000"
    return {
        lots: [lots, f"{lots}?cursor={deep}", f"{lots}?status=completed&cursor={deep}",
               f"{lots}?status=on_hold", f"{lots}?product={h['product']}&cursor={deep}",
               f"{lots}?product={h['product']}&status=in_process", f"{lots}?step=FCT"],
        lots + "/{lot_no}": [f"{lots}/H-1000"],
        lots + "/{lot_no}/dhr": [f"{lots}/H-1000/dhr", f"{lots}/H-1000/dhr?format=csv"],
        "/api/v1/completions/{completion_id}": [f"/api/v1/completions/{completion_id}"],
        jobs: [jobs, f"{jobs}?cursor={deep}", f"{jobs}?state=queued", f"{jobs}?state=failed",
               f"{jobs}?printer=tcp%3A%2F%2Fprinter-3&cursor={deep}",
               f"{jobs}?printer=tcp%3A%2F%2Fnowhere", f"{jobs}?lot_no=H-1000"],
        jobs + "/{job_id}": [f"{jobs}/{job_id}"],
        jobs + "/{job_id}/preview.png": [f"{jobs}/{job_id}/preview.png"],
        "/api/v1/labels/templates": ["/api/v1/labels/templates"],
        "/api/v1/labels/font": ["/api/v1/labels/font"],
        "/api/v1/firmware": ["/api/v1/firmware"],
        "/api/v1/firmware/{firmware_id}": [f"/api/v1/firmware/{h['firmware']}"],
        "/api/v1/stations/{code}/firmware": [f"/api/v1/stations/{h['station']}/firmware"],
        "/api/v1/stations": ["/api/v1/stations"],
        "/api/v1/products": ["/api/v1/products"],
        "/api/v1/products/{code}": [f"/api/v1/products/{h['product']}"],
        "/api/v1/backups": ["/api/v1/backups"],
        "/api/v1/backups/{backup_id}": ["/api/v1/backups/1"],
        "/healthz": ["/healthz"],
        "/readyz": ["/readyz"],
        "/metrics": ["/metrics"],  # the state it reads at every scrape (web/metrics/state.py)
    }


def test_no_read_scans_a_history_table(app, client, db, history):
    job_id, completion_id = db.session.execute(text(
        "SELECT id, completion_id FROM label_jobs ORDER BY id LIMIT 1 OFFSET 1000")).first()
    db.session.rollback()
    requests = _requests(history, job_id, completion_id)
    spec = client.get(SPEC_URL).get_json()
    gets = {p for p, ops in spec["paths"].items() if "get" in ops}
    assert gets - set(NOT_PLANNED) == set(requests), "a GET route without a plan check"

    seen: list[tuple[str, object, str]] = []
    current = {"url": None}

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters, current["url"]))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        for urls in requests.values():
            for url in urls:
                current["url"] = url
                resp = client.get(url, headers=history["headers"])
                assert resp.status_code in (200, 404), (url, resp.status_code)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(seen) > 40
    bad = []
    with engine.connect() as conn:
        cur = conn.connection.driver_connection.cursor()
        for statement, parameters, url in seen:
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters or None)
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            scans = _seq_scans(plan[0]["Plan"])
            if scans:
                bad.append(f"{url}: Seq Scan on {', '.join(scans)}:\n  "
                           f"{' '.join(statement.split())}")
    assert not bad, "\n".join(bad)
