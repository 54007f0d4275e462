"""The console in Chromium on the real pipeline: a lot's path and a reprint.

One stack for the module, as deployed: a Celery worker on the completions and default queues, a
worker-io on the printing and io queues, and the outbox relay, all real processes on the
session's PostgreSQL and Redis. The pages only see what the workers did, so nothing here calls
the worker's service functions.
"""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from tests.conftest import TEST_CONFIG
from tests.support.procs import celery_worker, relay, service_env, stop_all, wait_until
from web.models import LabelJob

from .conftest import log_in_browser, post_completion

pytestmark = pytest.mark.slow
LABELLED = [{"step": "PACK", "name": "Packing", "label_template": "unit"}]


class Stack:
    """The worker, the worker-io and the relay, with their logs for assertion messages."""

    def __init__(self, env, log_dir):
        # One child each: two cores are shared with the rest of the suite.
        self.procs = (celery_worker(env, log_dir, "worker", "completions,default", concurrency=1),
                      celery_worker(env, log_dir, "worker-io", "printing,io", concurrency=1),
                      relay(env, log_dir))

    def logs(self) -> str:
        """Recent output of the three processes."""
        return "\n".join(f"--- {p.name} ---\n{p.output()}" for p in self.procs)


@pytest.fixture(scope="module")
def stack(app, pg_database, redis_url, tmp_path_factory):
    """Start the worker, the worker-io and the relay once for the module; stop them after."""
    env = service_env(DATABASE_URL=pg_database, REDIS_URL=redis_url, **TEST_CONFIG)
    s = Stack(env, tmp_path_factory.mktemp("console-stack-logs"))
    for p in s.procs:
        p.start()  # all at once: their imports overlap instead of adding up
    celery_app = app.extensions["celery"]
    wait_until(lambda: len(celery_app.control.ping(timeout=0.5)) >= 2, 60,
               message=lambda: f"both workers to answer\n{s.logs()}")
    yield s
    stop_all(*s.procs)


def test_a_lots_path_moves_on_the_overview_and_its_page(stack, page, live_url, client, factory,
                                                        auth, monkeypatch):
    from web.console.views import overview
    monkeypatch.setattr(overview, "REFRESH_SECONDS", 1)
    product = factory.product()
    smt, fct = factory.station(steps=["SMT"]), factory.station(steps=["FCT"])
    lot = client.post("/api/v1/lots", headers=auth("supervisor"),
                      json={"product": product, "quantity": 4}).get_json()["lot_no"]
    _uid, name = factory.user("operator")
    log_in_browser(page, live_url, name)
    assert product in page.locator("#wip").inner_text()
    op = auth("operator")
    post_completion(client, op, lot, "SMT", smt)
    # The worker accepts it; the overview's poll shows the lot waiting at FCT, without a reload.
    page.wait_for_function("document.querySelector('#wip').innerText.includes('FCT')",
                           timeout=30_000)
    post_completion(client, op, lot, "FCT", fct, measurements={"voltage": 3.3, "current_ma": 40})
    page.wait_for_function("document.querySelector('#wip').innerText.includes('PACK')",
                           timeout=30_000)
    page.goto(f"{live_url}/console/lots/{lot}")
    assert page.locator(".route li.done").count() == 2
    assert page.locator(".route li.current").inner_text().startswith("PACK")
    assert smt in page.content() and fct in page.content()


def test_a_reprint_clicked_on_the_lot_page_arrives_at_the_printer(stack, page, live_url, client,
                                                                   factory, auth, sim):
    serial = f"SN-{uuid.uuid4().hex[:8].upper()}"
    product = factory.product(routing=LABELLED)
    station = factory.station(steps=["PACK"], printer_uri=f"tcp://127.0.0.1:{sim.port}")
    lot = factory.lot(product, 1, serials=[serial])
    post_completion(client, auth("operator"), lot, "PACK", station, unit_serial=serial)
    wait_until(lambda: sim.label_count == 1, 30, 0.1,
               lambda: f"the first label at the printer\n{stack.logs()}")
    _uid, name = factory.user("supervisor")
    log_in_browser(page, live_url, name)
    page.goto(f"{live_url}/console/lots/{lot}")
    row = page.locator("#labels tbody tr").first
    assert "printed" in row.inner_text()
    # The reprint column still fits a laptop's screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    row.locator("input[name=reason]").fill("라벨 훼손")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    assert page.locator(".flash.ok").count() == 1
    wait_until(lambda: sim.label_count == 2, 30, 0.1,
               lambda: f"the reprint at the printer\n{stack.logs()}")
    assert serial.encode() in sim.labels()[-1].zpl
    reprinted = page.locator("#labels tbody tr", has_text="라벨 훼손")

    def shown_printed() -> bool:
        page.reload()  # the worker-io records the print just after the printer has it
        return "printed" in reprinted.inner_text()
    wait_until(shown_printed, 10, 0.2, "the reprint shown as printed on the lot page")


def test_a_test_print_clicked_on_the_printers_page_arrives_at_the_printer(stack, page, live_url,
                                                                           db, factory, sim):
    uri = f"tcp://127.0.0.1:{sim.port}"
    factory.station(steps=["PACK"], printer_uri=uri)
    _uid, name = factory.user("supervisor")
    log_in_browser(page, live_url, name)
    page.goto(f"{live_url}/console/printers")
    with page.expect_navigation():
        page.locator("#printer-list tr", has_text=uri).locator("form.test-print button").click()
    wait_until(lambda: sim.label_count == 1, 30, 0.1,
               lambda: f"the test label at the printer\n{stack.logs()}")
    job = db.session.scalar(select(LabelJob).where(LabelJob.reason == "test"))
    assert job.created_by == name and sim.labels()[0].zpl == job.zpl.encode().strip()
