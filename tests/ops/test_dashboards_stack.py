"""The dashboards' and the rules' PromQL against the running product: Prometheus 2.42 scrapes
gunicorn, both workers, the relay and beat (tests/support/metrics_stack.py) while completions
(accepted and rejected), labels and a heartbeat flow, with deploy/prometheus/rules.yml loaded.
Every expression parses and evaluates, every rule is healthy, each dashboard query returns
series (unless MAY_BE_EMPTY says why not) carrying its legend's labels, and every metric named is
one these processes export (tests/ops/test_dashboards.py: the same against the contract's
exposition, where every series has a value, and no alert may be pending)."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import requests

from tests.ops.promrun import RULES
from tests.ops.queries import all_named, check_queries, dashboard_targets, rules
from tests.support.metrics_stack import JOBS, MetricsStack
from tests.support.procs import wait_until
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.slow

ROUTING = [{"step": "FCT", "name": "Functional test", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]
# Dashboard queries that may return no series here (part of the query -> why): about things
# this run does not make happen. Every other query must return series.
MAY_BE_EMPTY = {'name=~"backups[.].*"': "no backup or drill task ran",
                'name=~"(firmware|storage)[.].*"': "no firmware or storage task ran",
                'state=~"failed|rejected"': "no task failed",
                "neurohub_outbox_pending": "the relay published every outbox row"}


@pytest.fixture(scope="module")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """The whole stack, each service serving its metrics."""
    with MetricsStack.running(pg_database, redis_url, tmp_path_factory.mktemp("dash-stack")) as s:
        yield s


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """Prometheus scraping every service each second, with the alert rules loaded."""
    work = tmp_path_factory.mktemp("dash-prometheus")
    p = Prometheus(stack.targets, work, work, rule_files=(RULES,)).start()
    p.wait_up(JOBS.values())
    yield p
    p.stop()


def _complete(stack, headers: dict, lot: str, station: str, serial: str, volts: float) -> None:
    r = requests.post(f"{stack.web.url}/api/v1/completions", timeout=10, headers={
        **headers, "Idempotency-Key": uuid.uuid4().hex}, json={
        "lot_no": lot, "step": "FCT", "station": station, "unit_serial": serial,
        "measurements": {"voltage": volts}})
    assert r.status_code == 202, r.text


def _flow(stack, factory, sim, db) -> None:
    """3 accepted completions (3 labels), 1 rejected (another lot: a rejection holds its lot),
    a station's heartbeat, a verified and drilled backup."""
    from web.models import Backup, utcnow
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FCT"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
    op = factory.headers("operator")
    good = factory.lot(product, quantity=3, serials=[f"SN-DASH-{i}" for i in range(3)])
    bad = factory.lot(product, quantity=1, serials=["SN-DASH-BAD"])
    for i in range(3):
        _complete(stack, op, good, station, f"SN-DASH-{i}", 3.3)
    _complete(stack, op, bad, station, "SN-DASH-BAD", 9.9)
    r = requests.post(f"{stack.web.url}/api/v1/stations/{station}/heartbeat", headers=op,
                      json={"offline_queue": 0}, timeout=10)
    assert r.status_code == 200, r.text
    now = utcnow()
    db.session.add(Backup(kind="manual", state="done", verified_at=now - timedelta(hours=1),
                          drill_at=now - timedelta(hours=1), drill_result="passed"))
    db.session.commit()


def test_dashboards_and_rules_against_the_running_product(prometheus, stack, factory, sim, db):
    _flow(stack, factory, sim, db)
    prometheus.wait_value('sum(neurohub_completions_decided_total{result="rejected"})',
                          lambda v: v == 1, 90, lambda: f"the rejection\n{stack.logs_text()}")
    prometheus.wait_value('sum(neurohub_label_prints_total{result="printed"})',
                          lambda v: v == 3, 60, lambda: f"3 labels\n{stack.logs_text()}")
    wait_until(lambda: prometheus.value("neurohub:shift_active") is not None, 20, 0.5,
               "the rules evaluated")
    time.sleep(3)  # three more scrapes: every series has the two samples rate() needs
    failures = check_queries(prometheus.url, [t for _, t in dashboard_targets()],
                             [r["expr"] for r in rules()], require_series=True)
    failures = [f for f in failures if f[-1] != "no series"
                or not any(part in f[0] for part in MAY_BE_EMPTY)]
    assert not failures, "\n".join(map(str, failures))
    exported = set(prometheus.api("label/__name__/values"))
    recorded = {r["record"] for r in rules() if "record" in r}
    assert all_named() - exported - recorded == set(), sorted(all_named() - exported - recorded)
    health = [(r["name"], r.get("lastError")) for g in prometheus.api("rules")["groups"]
              for r in g["rules"] if r["health"] != "ok"]
    assert not health, health
