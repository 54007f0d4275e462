"""GET /metrics and the web's request metrics (web/metrics/http.py, endpoint.py), through the
app; METRICS_ENABLED=false turns them off."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import TEST_CONFIG
from web.metrics import core

from .helpers import samples, scrape, value

RULE = "/api/v1/completions/<int:completion_id>"


def test_metrics_answers_the_text_exposition_without_a_token(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    found = samples(resp.get_data(as_text=True))
    assert value(found, "neurohub_outbox_oldest_age_seconds") is not None


def test_metrics_is_documented_as_public_text(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/metrics"]["get"]
    assert "security" not in op and "text/plain" in op["responses"]["200"]["content"]


def test_requests_count_by_method_rule_and_status_with_their_latency(client, auth):
    headers = auth("operator")
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/completions/999999999", headers=headers).status_code == 404
    assert client.get("/no/such/path/42").status_code == 404
    after = scrape(client)

    def grew(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("neurohub_http_requests_total", method="GET", route=RULE, status="404") == 3
    assert grew("neurohub_http_request_duration_seconds_count", method="GET", route=RULE) == 3
    assert grew("neurohub_http_request_duration_seconds_sum", method="GET", route=RULE) > 0
    # The path never becomes a label: what no rule matched counts under one fixed route.
    assert grew("neurohub_http_requests_total", method="GET", route="<unmatched>",
                status="404") == 1
    assert not [k for k in after if "/no/such/path" in str(k) or "999999999" in str(k)]


def _post(client, headers, lot, station, key):
    return client.post("/api/v1/completions", headers={**headers, "Idempotency-Key": key},
                       json={"lot_no": lot, "step": "SMT", "station": station})


def test_completions_received_count_202s_not_replays(client, factory, auth):
    headers = auth("operator")
    lot, station = factory.lot(), factory.station(steps=["SMT"])
    before = value(scrape(client), "neurohub_completions_received_total", step="SMT") or 0
    key = uuid.uuid4().hex
    assert _post(client, headers, lot, station, key).status_code == 202
    replay = _post(client, headers, lot, station, key)
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert _post(client, headers, "NO-SUCH-LOT", station, uuid.uuid4().hex).status_code == 422
    after = value(scrape(client), "neurohub_completions_received_total", step="SMT")
    assert after - before == 1


@pytest.fixture()
def disabled_app(app, pg_database, redis_url, tmp_path):
    """An app with METRICS_ENABLED=false (metrics are process-wide: switched back on after)."""
    from web import create_app
    off = create_app(dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                          NEUROHUB_DATA_DIR=str(tmp_path), METRICS_ENABLED=False))
    off.testing = True
    try:
        yield off
    finally:
        from workers import metrics as worker_metrics
        worker_metrics.connect(app)  # Celery's handlers connected again, METRICS_ENABLED back on


def test_metrics_enabled_false_turns_it_all_off(disabled_app, client, db):
    assert not core.enabled()
    off = disabled_app.test_client()
    assert off.get("/metrics").status_code == 404
    before = value(scrape(client), "neurohub_http_requests_total", method="GET",
                   route="/healthz", status="200") or 0
    assert off.get("/healthz").status_code == 200
    after = value(scrape(client), "neurohub_http_requests_total", method="GET",
                  route="/healthz", status="200") or 0
    assert after == before  # the scrapes went through the enabled app: /metrics, not /healthz
