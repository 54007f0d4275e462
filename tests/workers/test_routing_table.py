"""queues is the one routing table: Celery's router, beat's canaries and every outbox enqueue
read their queues from it, and no other module defines a queue name, a route or STATION_PULL."""
from __future__ import annotations

import ast
import importlib
import re

from queues import DEFAULT_QUEUE, QUEUES, ROUTES, queue_for
from tests.support.procs import ROOT

PRODUCT = ("web", "workers", "tasks", "beat", "storage", "printers", "stations")


def _sources():
    for package in PRODUCT:
        yield from (p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def test_every_route_names_a_queue_of_the_table():
    assert DEFAULT_QUEUE in QUEUES
    assert {r["queue"] for r in ROUTES.values()} <= set(QUEUES)


def test_queue_for_is_where_celerys_router_sends_each_task(app):
    celery_app = app.extensions["celery"]
    celery_app.loader.import_default_modules()
    router = celery_app.amqp.router
    names = [n for n in celery_app.tasks if not n.startswith("celery.")]
    assert names
    assert {n: router.route({}, n)["queue"].name for n in names} == {n: queue_for(n)
                                                                    for n in names}
    assert celery_app.conf.task_routes is ROUTES


def test_beat_sends_only_to_queues_of_the_table():
    from beat.schedule import build_schedule
    for name, entry in build_schedule({}).items():
        queue = entry["options"].get("queue") or queue_for(entry["task"])
        assert queue in QUEUES, name


def _enqueues(path):
    """(task expression, queue expression) of every enqueue(task, args, queue, key) call."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "enqueue"
                and len(node.args) >= 3):
            yield node.args[0], node.args[2]


def test_every_outbox_enqueue_names_its_tasks_queue_from_the_table():
    seen = 0
    for path in sorted((ROOT / "web" / "services").rglob("*.py")):
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for task, queue in _enqueues(path):
            assert isinstance(task, ast.Name) and isinstance(queue, ast.Name), path
            assert getattr(module, queue.id) == queue_for(getattr(module, task.id)), path
            seen += 1
    assert seen >= 5  # completions (twice), labels (twice), firmware, backups


DEFINES = re.compile(r"^\s*(?:\w+,\s*)?(\w*QUEUES?|ROUTES|STATION_PULL)\s*=\s*(.+)$", re.M)


def test_no_other_module_defines_a_queue_name_a_route_or_station_pull():
    found = {}
    for path in _sources():
        for name, value in DEFINES.findall(path.read_text(encoding="utf-8")):
            if "queue_for(" not in value:
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert found == {"STATION_PULL": ["printers/backends.py"]}, found
