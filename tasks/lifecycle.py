"""storage.apply_lifecycle: backup retention on S3 (lifecycle rules) and on local disk."""
from celery import shared_task

from web.services.backups import lifecycle


@shared_task(name="storage.apply_lifecycle", soft_time_limit=300, time_limit=360)
def apply_lifecycle(slot: str | None = None):
    """Versioning + lifecycle rules on S3, or retention on local disk (daily)."""
    return lifecycle.scheduled_lifecycle(slot)
