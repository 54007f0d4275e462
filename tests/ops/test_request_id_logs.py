"""One grep follows a completion from its POST to its printed label, through every process.

The real pipeline: gunicorn as `neurohub up` runs it, the outbox relay, the fast worker and the
I/O worker (each with its prefork children) on the session's PostgreSQL and Redis, and the Zebra
simulator on a TCP port; all of them log JSON into files, as under systemd.
"""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until, web_server

ROUTING = [{"step": "FCT", "name": "Functional test", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]


@pytest.fixture(scope="module")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """web, relay, worker and worker-io logging JSON at INFO into one folder; stopped after."""
    log_dir = tmp_path_factory.mktemp("request-id-logs")
    # A long redispatch delay: a slow first decision is not published twice (one relay line).
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, LOG_LEVEL="INFO",
                      LOG_FORMAT="json", **{**TEST_CONFIG, "OUTBOX_REDISPATCH_SECONDS": 30})
    web, url = web_server(env, log_dir)
    procs = [web, relay(env, log_dir),
             celery_worker(env, log_dir, queues="completions,default", loglevel="INFO"),
             celery_worker(env, log_dir, name="worker-io", queues="printing,io", concurrency=1,
                           loglevel="INFO")]
    for p in procs:
        p.start()
    celery_app = app.extensions["celery"]
    try:
        wait_until(lambda: len(celery_app.control.ping(timeout=0.5)) >= 2, 60, 0.2,
                   "both workers to answer")
        wait_until(lambda: _up(url), 60, 0.2, lambda: "gunicorn to answer\n" + web.output())
    except AssertionError:
        stop_all(*procs)
        raise
    yield url, log_dir
    stop_all(*procs)


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def grep(log_dir, needle: str) -> list[tuple[str, dict]]:
    """Every line of every process's log that contains ``needle``: (file, parsed JSON); a
    line that is not JSON fails."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        for line in text[:text.rfind("\n") + 1].splitlines():  # not a line being written now
            if needle in line:
                found.append((path.name, json.loads(line)))  # every such line is JSON
    return found


@pytest.mark.slow
def test_one_grep_follows_a_completion_from_the_post_to_the_printed_label(stack, factory, sim):
    url, log_dir = stack
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FCT"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
    lot = factory.lot(product, quantity=1, serials=["SN-TRACE-1"])
    rid = f"st-trace.{uuid.uuid4().hex[:12]}"
    r = requests.post(url + "/api/v1/completions", timeout=10, json={
        "lot_no": lot, "step": "FCT", "station": station, "unit_serial": "SN-TRACE-1",
        "measurements": {"voltage": 3.3}}, headers={
        **factory.headers("operator"), "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": rid})
    assert r.status_code == 202 and r.headers["X-Request-ID"] == rid, r.text
    cid = r.json()["id"]
    wait_until(lambda: sim.label_count == 1, 60, 0.1,
               lambda: f"the label to print\n{_all(log_dir)}")

    def printed_line():
        return [x for _, x in grep(log_dir, rid) if x["message"].startswith("label job ")]
    wait_until(printed_line, 10, 0.1, lambda: f"the printer's log line\n{_all(log_dir)}")

    # Every line every process wrote is one JSON object (no banner, no raw warning).
    assert grep(log_dir, "")
    lines = grep(log_dir, rid)
    assert all(x["request_id"] == rid or rid in x.get("covers", []) for _, x in lines)
    assert all({"time", "level", "logger", "role", "message"} <= set(x) for _, x in lines)
    web = _one(lines, "web", lambda x: x["logger"] == "gunicorn.access"
               and "POST /api/v1/completions" in x["message"] and " 202 " in x["message"])
    published = _one(lines, "relay", lambda x: x["message"].startswith(
        f"published completions.process [{cid}, "))
    decided = _one(lines, "worker", lambda x: x["message"] == f"completion {cid} decided: accepted")
    printed = _one(lines, "worker-io", lambda x: x["message"].startswith("label job ")
                   and x["message"].endswith(f"printed on tcp://127.0.0.1:{sim.port}"))
    chain = [web, published, decided, printed]
    assert [x["time"] for x in chain] == sorted(x["time"] for x in chain), chain
    # In that order in the merged stream too, as `sort` by time shows an operator.
    merged = sorted((x for _, x in lines), key=lambda x: x["time"])
    assert [merged.index(x) for x in chain] == sorted(merged.index(x) for x in chain)


def _one(lines, role: str, match) -> dict:
    """The one line of ``role`` that ``match``es."""
    hits = [x for _, x in lines if x["role"] == role and match(x)]
    assert len(hits) == 1, (role, [x for _, x in lines])
    return hits[0]


def _all(log_dir) -> str:
    return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(log_dir.glob("*.log")))
