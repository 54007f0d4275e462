"""outbox.sweep against the real broker: every sweep gives its producer back to the pool."""
import time

import redis

from web.services import outbox

# labels.print's route: where its messages land whatever queue the outbox row names (Celery's
# router decides); the test empties it itself.
QUEUE = "printing"


def test_hundreds_of_publishing_sweeps_in_a_row_leak_no_broker_connection(app, db, redis_url):
    from tasks.outbox import sweep
    celery_app = app.extensions["celery"]
    celery_app.set_default()  # the task resolves the Celery app of this Flask app
    r = redis.Redis.from_url(redis_url)
    limit = celery_app.conf.broker_pool_limit
    sweeps = 30 * limit
    t0 = time.monotonic()
    try:
        with app.app_context():
            for i in range(sweeps):
                outbox.enqueue("labels.print", [i], QUEUE, f"sweep-leak:{i}")
                db.session.commit()
                assert sweep() == {"published": 1, "republished": 0, "deferred": 0,
                                   "dead": 0}, f"sweep {i}"
                outbox.done([f"sweep-leak:{i}"])  # as the worker would, once it ran
                db.session.commit()
                r.delete(QUEUE)
    finally:
        r.delete(QUEUE)
    assert time.monotonic() - t0 < 120  # no sweep waited for a connection
    assert len(celery_app.producer_pool._dirty) == 0  # every producer is back in the pool


def test_a_sweep_skips_while_another_holds_its_lock_and_publishes_nothing(app, db, redis_url):
    from tasks.outbox import sweep
    from tests.support.broker import private_queue
    from web.services.periodic import single_run
    with private_queue(app, redis_url, "tasks-outbox-test") as (_, published):
        outbox.enqueue("labels.print", [1], "tasks-outbox-test", "sweep-locked:1")
        db.session.commit()
        with single_run("outbox.sweep") as got:  # another beat's sweep, on its own connection
            assert got
            assert sweep() == "skipped: locked"
        assert published() == []
        assert sweep()["published"] == 1
        assert [h["id"] for h in published()] == ["sweep-locked-1"]
