"""completions.process: validate one completion and move its lot."""
import logging
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from web.extensions import db
from web.services import outbox, processing
from workers.broker import publish_claimed

log = logging.getLogger(__name__)


@shared_task(name="completions.process", bind=True, soft_time_limit=20, time_limit=30,
             max_retries=5)
def process(self, completion_id: int, lot_id: int | None = None):
    """Decide a received completion; redeliveries and duplicates are no-ops."""
    try:
        with outbox.claiming() as claimed:  # its label jobs' print messages: published by us
            status = processing.process_completion(completion_id, lot_id)
        publish_claimed(self.app, claimed)
        return status
    except OperationalError as exc:
        # Database unreachable, deadlock or serialisation failure: transient, retry with jitter.
        db.session.rollback()
        countdown = min(2 ** self.request.retries, 30) + random.uniform(0, 1)
        raise self.retry(exc=exc, countdown=countdown)
    except SoftTimeLimitExceeded:
        processing.mark_failed(completion_id, "processing exceeded its time limit")
        raise
    except Exception:
        # Something in the batch cannot be decided: find it by deciding the lot's pending
        # completions one at a time, so only the poison one is marked failed.
        log.exception("a batch of completion %s's lot failed; deciding one by one", completion_id)
        return processing.decide_singly(completion_id, lot_id,
                                        reraise=(OperationalError, SoftTimeLimitExceeded))
