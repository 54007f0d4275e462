"""Celery settings: data, in one place (DESIGN section 7); queues and routes are ``queues``'."""
from __future__ import annotations

from typing import Any, Mapping

from beat.schedule import build_schedule
from queues import DEFAULT_QUEUE, ROUTES

def task_modules() -> tuple[str, ...]:
    """Every module of the ``tasks`` package: adding a task module needs no registration."""
    import pkgutil

    import tasks
    return tuple(f"tasks.{m.name}" for m in pkgutil.iter_modules(tasks.__path__))

# Longest task hard limit is well under this, so a healthy task is never redelivered mid-run.
VISIBILITY_TIMEOUT = 3600


def celery_settings(cfg: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """All Celery settings for this deployment (broker from config, the rest fixed)."""
    broker = cfg["CELERY_BROKER_URL"]
    tz = cfg.get("PLANT_TIMEZONE") or "UTC"
    transport: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}
    if broker.startswith(("redis://", "rediss://")):
        transport.update(socket_timeout=5, socket_connect_timeout=5, retry_on_timeout=True,
                         health_check_interval=25, unacked_restore_interval=5,
                         unacked_restore_throttle=1)
    elif broker.startswith(("sqla+", "nhsqla+")):
        transport.update(polling_interval=0.1)
    return {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 10,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A child killed mid-task is retried a bounded number of times, then the task fails
        # (and the outbox's dead-letter bound records it) instead of looping forever.
        "task_retry_on_worker_lost": True,
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": ROUTES,
        "task_soft_time_limit": 60,
        # Annotations override the decorators' limits: the completion run's is configurable.
        "task_annotations": {"completions.process": {
            "soft_time_limit": float(cfg.get("COMPLETIONS_SOFT_TIME_LIMIT", 20.0)),
            "time_limit": float(cfg.get("COMPLETIONS_SOFT_TIME_LIMIT", 20.0)) + 10}},
        "task_time_limit": 90,
        "task_default_delivery_mode": "persistent",
        "worker_prefetch_multiplier": 4,
        "worker_hijack_root_logger": False,
        # Events cost the worker CPU per task; Flower turns them on while it runs.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "imports": task_modules(),
        # Crontabs fire on the plant's clock (02:00 in Seoul, not 02:00 UTC = 11:00 mid-shift);
        # messages still carry UTC times (enable_utc, Celery's default).
        "beat_schedule": build_schedule(cfg if environ is None else environ, tz),
        "timezone": tz,
    }
