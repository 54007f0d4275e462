"""A real Prometheus (Debian's 2.42, on a free port) scrapes the running stack (gunicorn with two
workers, both Celery workers, the relay and beat) while completions and labels flow; everything
is checked through Prometheus' HTTP API:

- accepted completions equal what was posted (counted across gunicorn's and the pool's processes);
- a printer's status flips to paper_out when the simulator runs out of paper, and back to ok;
- the oldest outbox row's age rises past a threshold while the relay is stopped, and falls to 0
  once it runs again (the series the outbox-age alert of deploy/prometheus uses).

Beat's outbox sweep, the relay's backstop, is off in this stack: with it on, an outbox without
its relay still drains every 5 s, and the age never passes that.
"""
from __future__ import annotations

import uuid

import pytest
import requests

from tests.support.metrics_stack import JOBS, MetricsStack
from tests.support.procs import wait_until
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.slow

ROUTING = [{"step": "FCT", "name": "Functional test", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]
POSTED = 12
AGE_THRESHOLD = 5.0  # seconds: the alert's is 60 s, which a test need not wait for


@pytest.fixture(scope="module")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """The whole stack, each service serving its metrics."""
    with MetricsStack.running(pg_database, redis_url, tmp_path_factory.mktemp("ops-stack"),
                              OUTBOX_SWEEP_CRON="off") as s:
        yield s


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """Prometheus scraping every service of the stack each second."""
    work = tmp_path_factory.mktemp("prometheus")
    p = Prometheus(stack.targets, work, work).start()
    yield p
    p.stop()


class Line:
    """A product with a labelled FCT step, a station printing to the simulator, an operator."""

    def __init__(self, factory, stack, sim):
        self.factory, self.base, self.sim = factory, stack.web.url, sim
        self.product = factory.product(routing=ROUTING)
        self.station = factory.station(steps=["FCT"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
        self.op = factory.headers("operator")

    def complete(self, lot: str, serial: str) -> int:
        """POST a good FCT completion of one unit to the live web; its id."""
        r = requests.post(f"{self.base}/api/v1/completions", timeout=10, headers={
            **self.op, "Idempotency-Key": uuid.uuid4().hex}, json={
            "lot_no": lot, "step": "FCT", "station": self.station, "unit_serial": serial,
            "measurements": {"voltage": 3.3}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def lot(self, n: int, tag: str) -> tuple[str, list[str]]:
        """A lot of ``n`` units; (lot number, serials)."""
        serials = [f"SN-{tag}-{i}" for i in range(n)]
        return self.factory.lot(self.product, quantity=n, serials=serials), serials


def _accepted_equal_posted(prom: Prometheus, stack: MetricsStack, line: Line) -> None:
    lot, serials = line.lot(POSTED, "PROM")
    for serial in serials:
        line.complete(lot, serial)
    received = prom.wait_value("sum(neurohub_completions_received_total)", lambda v: v >= POSTED,
                               60, "the web's received counter")
    accepted = prom.wait_value('sum(neurohub_completions_decided_total{result="accepted"})',
                               lambda v: v >= POSTED, 90,
                               lambda: f"the accepted counter\n{stack.logs_text()}")
    assert received == accepted == POSTED
    assert prom.value('sum(neurohub_completions_decided_total{result!="accepted"})') is None
    assert prom.value('sum(neurohub_completion_decision_seconds_count{step="FCT"})') == POSTED
    prom.wait_value('sum(neurohub_label_prints_total{result="printed"})', lambda v: v == POSTED,
                    60, "every label printed")
    assert line.sim.label_count == POSTED


def _celery_baseline(prom: Prometheus) -> None:
    """What celery-exporter offers, from our own processes."""
    task = 'name="completions.process",queue="completions"'
    for state in ("sent", "received", "started", "succeeded"):
        assert prom.value(f'sum(neurohub_celery_tasks_total{{{task},state="{state}"}})') >= 1, state
    assert prom.value(f"sum(neurohub_celery_task_queue_wait_seconds_count{{{task}}})") >= 1
    assert prom.value(f"sum(neurohub_celery_task_runtime_seconds_count{{{task}}})") >= 1
    up = {r["metric"]["queue"]: float(r["value"][1])
          for r in prom.query("max by (queue) (neurohub_celery_worker_up)")}
    assert up == {"completions": 1, "default": 1, "printing": 1, "io": 1}
    queues = {r["metric"]["queue"] for r in prom.query("neurohub_celery_queue_length")}
    assert queues == {"completions", "printing", "io", "default"}
    roles = {r["metric"]["role"] for r in prom.query("neurohub_build_info")}
    assert roles == {"web", "worker", "worker-io", "relay", "beat"}
    pools = {r["metric"]["role"] for r in prom.query("neurohub_db_pool_connections")}
    assert pools == {"web", "worker", "worker-io", "relay", "beat"}, pools


def _paper_out_flips_the_printer(prom: Prometheus, stack: MetricsStack, line: Line) -> None:
    printer = f'printer="127.0.0.1:{line.sim.port}"'
    assert prom.value(f'neurohub_printer_status{{{printer},status="ok"}}') == 1
    line.sim.set_fault("paper_out")
    lot, serials = line.lot(1, "PAPER")
    line.complete(lot, serials[0])
    prom.wait_value(f'neurohub_printer_status{{{printer},status="paper_out"}}', lambda v: v == 1,
                    60, lambda: f"the printer's paper_out status\n{stack.logs_text()}")
    assert prom.value(f'neurohub_printer_status{{{printer},status="ok"}}') == 0
    assert prom.value('sum(neurohub_label_prints_total{result="paper_out"})') >= 1
    prom.wait_value('max(neurohub_label_jobs{state="waiting_printer"})', lambda v: v == 1, 30,
                    "the web's count of jobs waiting for the printer")
    line.sim.clear_faults()  # paper loaded: the waiting job prints at its next try (5 s)
    prom.wait_value(f'neurohub_printer_status{{{printer},status="ok"}}', lambda v: v == 1, 60,
                    "the printer back to ok")
    assert prom.value(f'neurohub_printer_status{{{printer},status="paper_out"}}') == 0


def _outbox_age_rises_without_the_relay(prom: Prometheus, stack: MetricsStack,
                                        line: Line) -> None:
    age = "max(neurohub_outbox_oldest_age_seconds)"
    prom.wait_value(age, lambda v: v == 0, 30, "nothing due in the outbox yet")
    stack.relay.stop()
    prom.wait_value(f'up{{job="{JOBS["relay"]}"}}', lambda v: v == 0, 30, "the relay down")
    lot, serials = line.lot(2, "NORELAY")
    for serial in serials:
        line.complete(lot, serial)
    prom.wait_value(age, lambda v: v > AGE_THRESHOLD, 60, "the outbox age past the threshold")
    assert prom.value('sum(neurohub_outbox_pending{task="completions.process"})') == 2
    stack.relay.start()
    prom.wait_value(age, lambda v: v == 0, 60, lambda: f"the outbox age back to 0\n"
                                                       f"{stack.logs_text()}")
    prom.wait_value('sum(neurohub_completions_decided_total{result="accepted"})',
                    lambda v: v == POSTED + 3, 60, "the held completions decided")


def test_prometheus_sees_completions_printer_status_and_outbox_age(prometheus, stack, factory,
                                                                   sim):
    prometheus.wait_up(JOBS.values())
    line = Line(factory, stack, sim)
    _accepted_equal_posted(prometheus, stack, line)
    _celery_baseline(prometheus)
    _paper_out_flips_the_printer(prometheus, stack, line)
    _outbox_age_rises_without_the_relay(prometheus, stack, line)
    wait_until(lambda: prometheus.value(f'up{{job="{JOBS["relay"]}"}}') == 1, 30, 0.5,
               "the relay scraped again")
