"""completions.process: validate one completion and move its lot."""
import logging
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from web.extensions import db
from web.services import outbox
from web.services.completions import processing

log = logging.getLogger(__name__)


def _discard_transaction() -> None:
    """Roll back; a connection the time limit interrupted mid-query cannot roll back (its query
    is still running), so it is closed and dropped from the pool instead."""
    try:
        db.session.rollback()
    except Exception:
        log.warning("rollback after an interrupted query failed; dropping its connection")
        db.session().invalidate()  # the scoped proxy does not forward invalidate()


@shared_task(name="completions.process", bind=True, soft_time_limit=20, time_limit=30,
             max_retries=5)
def process(self, completion_id: int, lot_id: int | None = None):
    """Decide a received completion; redeliveries and duplicates are no-ops."""
    try:
        with outbox.claiming() as claimed:  # its label jobs' print messages: published by us
            status = processing.process_completion(completion_id, lot_id)
        self.publish_claimed(claimed)
        return status
    except (OperationalError, SoftTimeLimitExceeded) as exc:
        # Database unreachable, busy (a lock waited on past the time limit), deadlock or
        # serialisation failure: transient, not the completion's fault. Retry with jitter; the
        # completion stays received (the outbox's dead-letter bound is the last resort).
        _discard_transaction()
        countdown = min(2 ** self.request.retries, 30) + random.uniform(0, 1)
        raise self.retry(exc=exc, countdown=countdown)
    except Exception:
        # Something in the batch cannot be decided: find it by deciding the lot's pending
        # completions one at a time, so only the poison one is marked failed.
        log.exception("a batch of completion %s's lot failed; deciding one by one", completion_id)
        return processing.decide_singly(completion_id, lot_id,
                                        reraise=(OperationalError, SoftTimeLimitExceeded))
