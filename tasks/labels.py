"""labels.print and labels.retry: deliver label jobs to printers on the printing queue."""
import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from web.extensions import db
from web.services import labels
from web.services.labels import delivery as printing
from web.services.periodic import single_run

log = logging.getLogger(__name__)


@shared_task(name="labels.print", bind=True, soft_time_limit=60, time_limit=75, max_retries=3)
def print_label(self, job_id: int):
    """Deliver a label job (and earlier ones of its printer); never sends a job twice."""
    try:
        return printing.print_job(job_id)
    except OperationalError as exc:  # database trouble: the outbox republishes it later anyway
        db.session.rollback()
        raise self.retry(exc=exc, countdown=2 ** self.request.retries)


@shared_task(name="labels.retry", soft_time_limit=30, time_limit=45)
def retry_pending():
    """Make sure every pending printer job has a print message (beat, every minute)."""
    with single_run("labels.retry") as got:  # a second beat's run must not race this one
        return labels.ensure_print_messages() if got else "skipped: locked"
