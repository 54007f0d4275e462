"""Prometheus metrics of every process: the names and labels of the ops contract (prefix
``neurohub_``), through ``prometheus_client``.

- ``core``: whether metrics are on (``METRICS_ENABLED``), this process's role, the multiprocess
  folder (``PROMETHEUS_MULTIPROC_DIR``: gunicorn's workers and a Celery pool's children write
  there, the one process serving the metrics reads all of it) and the exporter of workers,
  relay and beat.
- ``instruments``: the metric objects and the recorders the code calls (``completions_decided``,
  ``label_prints`` ...), each a no-op while metrics are off; the database pool gauge.
- ``http``: the web's request counter and latency histogram (before/after request hooks).
- ``state``: what the web's ``/metrics`` reads from the database and broker at scrape time.
- ``endpoint``: ``GET /metrics`` (internal: nginx refuses it from outside; no token).
- ``install``: ``init_app``, called by ``create_app``.

Nothing here imports Celery (the services count through ``instruments``); Celery's signals are
connected in ``workers.metrics``.
"""
from .core import enabled, role, start_process

__all__ = ["enabled", "role", "start_process"]
