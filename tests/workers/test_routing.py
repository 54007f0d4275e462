"""The routing table: every task has an area.verb name and a queue a worker consumes, every
route names a known queue and a task, and every way of running the workers consumes them all."""
from __future__ import annotations

import fnmatch
import re

import pytest

from tests.support.procs import ROOT
from queues import QUEUES, ROUTES
from workers.config import task_modules

NAME = re.compile(r"^[a-z]+\.[a-z]+(?:_[a-z]+)*$")  # area.verb: labels.print, backups.restore_drill


@pytest.fixture(scope="module")
def ours(app) -> dict:
    """Every task of the product (the worker imports the tasks modules; the web does not)."""
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    return {name: t for name, t in celery_app.tasks.items() if not name.startswith("celery.")}


def test_the_worker_imports_every_tasks_module_and_each_defines_a_task(app, ours):
    modules = task_modules()
    assert set(app.extensions["celery"].conf.imports) == set(modules)
    assert {t.__module__ for t in ours.values()} == set(modules)
    assert len(ours) >= 12


def test_every_task_is_named_area_verb(ours):
    assert [n for n in ours if not NAME.match(n)] == []


def test_every_route_names_a_queue_and_routes_some_task(ours):
    for pattern, route in ROUTES.items():
        assert route["queue"] in QUEUES, pattern
        assert fnmatch.filter(ours, pattern), f"route {pattern} matches no task"


def test_every_task_lands_on_a_queue_of_the_table(app, ours):
    router = app.extensions["celery"].amqp.router
    landed = {name: router.route({}, name)["queue"].name for name in ours}
    assert set(landed.values()) <= set(QUEUES), landed
    assert landed["completions.process"] == "completions"  # never behind printing or I/O
    assert landed["labels.print"] == "printing" and landed["backups.snapshot"] == "io"
    assert set(landed.values()) == set(QUEUES)  # no queue waits for tasks that never come


def _consumed(argv: list[str]) -> set[str]:
    return set(argv[argv.index("-Q") + 1].split(",")) if "-Q" in argv else set()


def test_neurohub_up_consumes_every_queue_once(tmp_path):
    from web.cli.supervisor import plan
    from web.config import load_config
    cfg = load_config(overrides={"NEUROHUB_DATA_DIR": str(tmp_path)})
    workers = [_consumed(c.argv) for c in plan(cfg, "127.0.0.1", 8000, False, False)]
    workers = [q for q in workers if q]
    assert sorted(q for qs in workers for q in qs) == sorted(QUEUES)


DEPLOYED = {"systemd": ["deploy/systemd/neurohub-worker.service",
                        "deploy/systemd/neurohub-worker-io.service"],
            "container": ["deploy/container/entrypoint.sh"]}  # compose, Railway, ECS use it


@pytest.mark.parametrize("kind", DEPLOYED)
def test_each_deployment_consumes_every_queue_once(kind):
    consumed = [q for path in DEPLOYED[kind]
                for arg in re.findall(r"worker -Q (\S+)", (ROOT / path).read_text())
                for q in arg.split(",")]
    assert sorted(consumed) == sorted(QUEUES), (kind, consumed)
