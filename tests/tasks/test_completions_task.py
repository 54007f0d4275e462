"""The completions.process task body, called in-process: how it routes a failing batch.

The pipeline through a real worker is covered in tests/pipeline; here the task function is
called directly so that one completion's decision can be made to raise.
"""
import uuid

from tests.support.poison import poison
from web.services import completions
from web.services.audit import Actor


def test_the_task_isolates_a_poison_completion_and_fails_only_it(app, db, factory, monkeypatch):
    from tasks.completions import process
    uid, name = factory.user("operator")
    station = factory.station(steps=["SMT"])
    lot = factory.lot(quantity=3)
    with app.app_context():
        ids = [completions.submit({"lot_no": lot, "step": "SMT", "station": station,
                                   "qty_good": 1}, uuid.uuid4().hex, Actor(uid, name)).id
               for _ in range(3)]
    poison(monkeypatch, ids[0], ValueError("bad record"))
    with app.app_context():
        # The message names the last one; the first is the poison.
        assert process(ids[-1], None) == "accepted"
        got = [(c.status, c.error) for c in map(completions.get_completion, ids)]
    assert got == [("failed", "ValueError: bad record"), ("accepted", None), ("accepted", None)]
