"""The outbox's boundary: task policies registered by their domain, retries, the relay runner."""
import pathlib
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from web.models import OutboxMessage, utcnow
from web.services import outbox
from web.services.labels import reschedule
from web.services.outbox.relay import Relay, relay_batch

from .test_relay import Recorder

ROOT = pathlib.Path(__file__).resolve().parents[4]


@pytest.fixture()
def policies(monkeypatch):
    """Register test policies for this test only."""
    registry = dict(outbox._POLICIES)
    monkeypatch.setattr(outbox, "_POLICIES", registry)
    return registry


def _row(db, key):
    return db.session.execute(select(OutboxMessage).where(OutboxMessage.dedup_key == key)).scalar_one()


def test_a_message_retried_by_its_task_is_redispatched_after_the_base_delay(app, db):
    """A printer-busy retry of a message published four times before: if that publish is lost
    (a broker restart), it goes out again after 30 s, not after 30 * 2**4."""
    with app.app_context():
        outbox.enqueue("labels.print", [4242], "printing", "label:4242")
        db.session.commit()
        db.session.execute(update(OutboxMessage).where(OutboxMessage.dedup_key == "label:4242")
                           .values(attempts=4, dispatched_at=utcnow()))
        db.session.commit()
        reschedule(4242, 0.0)  # the worker ran it: printer busy, try again now
        db.session.commit()
        assert _row(db, "label:4242").attempts == 0
        rec = Recorder()
        before = utcnow()
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 1
        db.session.expire_all()
        row = _row(db, "label:4242")
        assert row.attempts == 1
        assert timedelta(seconds=29) < row.available_at - before < timedelta(seconds=31)


def test_a_registered_group_coalesces_and_waits_while_one_is_in_flight(app, db, policies):
    outbox.register("test.serial", outbox.Policy(group_arg=0))
    rec = Recorder()
    with app.app_context():
        for i, group in enumerate([7, 7, 8]):
            outbox.enqueue("test.serial", [group, i], "default", f"serial:{i}")
        outbox.enqueue("test.plain", [7, 9], "default", "plain:9")  # no policy: on its own
        db.session.commit()
        stats = relay_batch(rec, lambda q: 0, redispatch_after=30)
        assert stats.published == 4
        assert sorted(s[3] for s in rec.sent) == ["plain-9", "serial-1", "serial-2"]
        outbox.enqueue("test.serial", [7, 3], "default", "serial:3")
        outbox.enqueue("test.serial", [9, 4], "default", "serial:4")
        db.session.commit()
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 1  # 7 waits
        assert rec.sent[-1][3] == "serial-4"
        outbox.done(["serial:0", "serial:1"])  # the worker committed group 7's message
        db.session.commit()
        assert relay_batch(rec, lambda q: 0, redispatch_after=30).published == 1
        assert rec.sent[-1][3] == "serial-3"


def test_a_dead_letter_runs_the_tasks_policy_in_the_relays_transaction(app, db, policies):
    seen = []
    outbox.register("test.dies", outbox.Policy(on_dead=lambda args, why: seen.append((args, why))))
    with app.app_context():
        outbox.enqueue("test.dies", [5, "x"], "default", "dies:5")
        outbox.enqueue("test.plain", [6], "default", "plain:6")
        db.session.commit()
        past = utcnow() - timedelta(seconds=5)
        db.session.execute(update(OutboxMessage).values(attempts=3, dispatched_at=past,
                                                        available_at=past))
        db.session.commit()
        assert relay_batch(Recorder(), lambda q: 0, max_attempts=3).dead == 2
        assert seen == [([5, "x"], "not processed after 3 dispatches")]
        assert outbox.pending_keys(["dies:5", "plain:6"]) == set()


def test_the_relay_runner_drains_then_stops_and_runs_until_told(app, db):
    with app.app_context():
        for i in range(5):
            outbox.enqueue("labels.print", [i], "printing", f"runner:{i}")
        db.session.commit()
        rec = Recorder()
        relay = Relay(rec, lambda q: 0, app.config, batch=2)
        assert relay.drain(10) == {"published": 5, "republished": 0, "deferred": 0, "dead": 0}
        assert len(rec.sent) == 5
        outbox.enqueue("labels.print", [9], "printing", "runner:9")
        db.session.commit()
        passes = []
        relay.run(lambda: len(passes.append(1) or passes) > 3)  # three passes, then stop
        assert len(passes) == 4 and rec.sent[-1][3] == "runner-9"


def test_create_app_registers_the_completion_policy():
    """The relay process has only the app: creating it must register the domains' policies."""
    code = ("from web import create_app; create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://'});"
            "from web.services.outbox import policy_for;"
            "p = policy_for('completions.process'); print(p.group_arg, p.on_dead is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["1", "True"], out.stderr[-2000:]


def test_only_the_outbox_package_touches_its_table():
    offenders = []
    for path in ROOT.joinpath("web").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("web/services/outbox/", "web/models/", "web/migrations/")):
            continue
        text = path.read_text()
        if "OutboxMessage" in text or "outbox_messages" in text:
            offenders.append(rel)
    for pkg in ("tasks", "workers", "beat"):
        offenders += [p.relative_to(ROOT).as_posix() for p in ROOT.joinpath(pkg).rglob("*.py")
                      if "OutboxMessage" in p.read_text() or "outbox_messages" in p.read_text()]
    assert offenders == []
