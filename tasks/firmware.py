"""firmware.distribute: re-check a released image and assign it to the flashing stations (io)."""
import logging
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from storage import StorageError
from web.extensions import db
from web.services import firmware

log = logging.getLogger(__name__)


@shared_task(name="firmware.distribute", bind=True, soft_time_limit=600, time_limit=660,
             max_retries=6)
def distribute(self, firmware_id: int):
    """Distribute a release; redeliveries, duplicates and stale releases change nothing."""
    try:
        return firmware.distribute(firmware_id)
    except (OperationalError, StorageError) as exc:
        # Database or storage unreachable: transient. Retry with backoff and jitter; when the
        # retries are spent, the release fails visibly instead of waiting forever.
        db.session.rollback()
        if self.request.retries >= self.max_retries:
            log.error("firmware %s: distribution gave up: %s", firmware_id, exc)
            firmware.fail_release(firmware_id, f"distribution failed: {exc}")
            return "failed"
        countdown = min(2 ** self.request.retries, 60) + random.uniform(0, 1)
        raise self.retry(exc=exc, countdown=countdown)
    except SoftTimeLimitExceeded:
        db.session.rollback()
        firmware.fail_release(firmware_id, "distribution exceeded its time limit")
        raise
