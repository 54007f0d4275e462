"""The series the product exports, per scrape job, as the issue #16 contract names them (metric
names, labels, types, which process serves them), rendered as Prometheus text exposition.

tests/ops/test_dashboards.py serves it to a real Prometheus until it scrapes the real processes:
every PromQL expression of the dashboards and the rules must then parse, evaluate and name only
these metrics. Counters and histograms grow with every scrape, so rates and quantiles have values.
Values describe a healthy plant: no alert may even be pending against them.
"""
from __future__ import annotations

import itertools
import time

WEB_ROUTES = [{"method": "POST", "route": "/api/v1/completions"},
              {"method": "GET", "route": "/api/v1/lots"}]
QUEUES = ("completions", "default", "printing", "io")
TASKS = [("completions.process", "completions"), ("labels.print", "printing"),
         ("backups.snapshot", "io"), ("firmware.distribute", "io"),
         ("storage.apply_lifecycle", "io"),
         ("workers.canary", "default")]
STATES = ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
BUCKETS = ("0.05", "0.5", "5", "60", "+Inf")


def _tasks(names, states) -> list[dict]:
    return [{"name": n, "queue": q, "state": s} for (n, q) in names for s in states]


def _every_process(role: str) -> list[tuple]:
    return [("neurohub_db_pool_connections", "gauge",
             [({"role": role, "state": s}, v) for s, v in (("checked_out", 1), ("idle", 4),
                                                            ("overflow", 0))]),
            ("neurohub_build_info", "gauge", [({"role": role, "version": "1.16.0"}, 1)])]


def web(now: float) -> list[tuple]:
    """The web's /metrics: requests, completions received, and the database's state."""
    return [
        ("neurohub_http_requests_total", "counter",
         [(dict(r, status=s), rate) for r in WEB_ROUTES for s, rate in (("202", 50), ("200", 20),
                                                                         ("500", 0.01))]),
        ("neurohub_http_request_duration_seconds", "histogram", [(r, 40) for r in WEB_ROUTES]),
        ("neurohub_completions_received_total", "counter",
         [({"step": s}, 30) for s in ("assembly", "test")]),
        ("neurohub_celery_tasks_total", "counter", [(t, 30) for t in _tasks(TASKS[:1], ("sent",))]),
        ("neurohub_outbox_pending", "gauge", [({"task": t}, 1) for t, _ in TASKS[:2]]),
        ("neurohub_outbox_oldest_age_seconds", "gauge", [({}, 0.4)]),
        ("neurohub_celery_queue_length", "gauge", [({"queue": q}, 2) for q in QUEUES]),
        ("neurohub_label_jobs", "gauge",
         [({"state": s}, 1) for s in ("queued", "waiting_printer", "sent")]),
        ("neurohub_firmware_assignments", "gauge",
         [({"state": s}, 3) for s in ("pending", "delivered", "verified", "failed")]),
        ("neurohub_backup_last_verified_timestamp_seconds", "gauge", [({}, now - 3600)]),
        ("neurohub_restore_drill_last_success", "gauge", [({}, 1)]),
        ("neurohub_restore_drill_last_timestamp_seconds", "gauge", [({}, now - 86400)]),
        ("neurohub_station_heartbeat_age_seconds", "gauge",
         [({"station": s}, 12) for s in ("ST-01", "ST-02")]),
        ("neurohub_station_offline_queue_depth", "gauge",
         [({"station": s}, 0) for s in ("ST-01", "ST-02")]),
        ("neurohub_lots", "gauge", [({"step": s, "status": st}, 4) for s in ("assembly", "test")
                                    for st in ("created", "in_process", "on_hold")]),
        ("neurohub_storage_free_bytes", "gauge",
         [({"area": a}, 60e9) for a in ("firmware", "backups")]),
        ("neurohub_storage_size_bytes", "gauge",
         [({"area": a}, 100e9) for a in ("firmware", "backups")]),
        *_every_process("web"),
    ]


def worker(role: str, tasks: list, queues: tuple) -> list[tuple]:
    """A Celery worker's exporter: its tasks, its queues, and what its tasks count."""
    out = [
        ("neurohub_celery_tasks_total", "counter",
         [(t, 0.01 if t["state"] in ("failed", "retried", "rejected", "revoked") else 10)
          for t in _tasks(tasks, STATES[1:])]),
        ("neurohub_celery_task_runtime_seconds", "histogram",
         [({"name": n, "queue": q}, 10) for n, q in tasks]),
        ("neurohub_celery_task_queue_wait_seconds", "histogram",
         [({"name": n, "queue": q}, 10) for n, q in tasks]),
        ("neurohub_celery_worker_up", "gauge", [({"queue": q}, 1) for q in queues]),
        *_every_process(role),
    ]
    if role == "worker":
        steps = ("assembly", "test")
        out += [("neurohub_completions_decided_total", "counter",
                 [({"step": s, "result": "accepted", "reason": ""}, 28) for s in steps]
                 + [({"step": s, "result": "rejected", "reason": r}, 1) for s in steps
                    for r in ("out_of_spec", "firmware_mismatch")]),
                ("neurohub_completion_decision_seconds", "histogram",
                 [({"step": s}, 30) for s in ("assembly", "test")])]
    else:
        out += [("neurohub_label_prints_total", "counter",
                 [({"result": r}, 5 if r == "printed" else 0.01) for r in
                  ("printed", "busy", "paper_out", "head_open", "offline", "error")]),
                ("neurohub_printer_status", "gauge",
                 [({"printer": p, "status": s}, int(s == "ok")) for p in ("ST-01", "ST-02")
                  for s in ("ok", "paper_out", "head_open", "offline")])]
    return out


def publisher(role: str) -> list[tuple]:
    """The relay's and beat's exporters: the tasks they send."""
    return [("neurohub_celery_tasks_total", "counter", [(t, 30) for t in _tasks(TASKS, ("sent",))]),
            *_every_process(role)]


def families(job: str, now: float) -> list[tuple]:
    """The metric families the scrape job ``job`` serves."""
    return {"neurohub-web": lambda: web(now),
            "neurohub-worker": lambda: worker("worker", [TASKS[0], TASKS[5]], QUEUES[:2]),
            "neurohub-worker-io": lambda: worker("worker-io", TASKS[1:5], QUEUES[2:]),
            "neurohub-relay": lambda: publisher("relay"),
            "neurohub-beat": lambda: publisher("beat")}[job]()


def names() -> set[str]:
    """Every metric name of the contract, as Prometheus stores it (histograms' three series)."""
    out = set()
    for job in JOBS:
        for name, kind, _ in families(job, 0):
            parts = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            out |= {name + s for s in parts}
    return out


JOBS = ("neurohub-web", "neurohub-worker", "neurohub-worker-io", "neurohub-relay", "neurohub-beat")


def _labels(labels: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def render(job: str, scrape: int, now: float | None = None) -> str:
    """The exposition of ``job`` at its ``scrape``-th scrape (counters = per-scrape rate x n)."""
    lines = []
    for name, kind, series in families(job, time.time() if now is None else now):
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in series:
            if kind == "counter":
                lines.append(f"{name}{_labels(labels)} {value * scrape}")
            elif kind == "gauge":
                lines.append(f"{name}{_labels(labels)} {value}")
            else:  # histogram: observations spread over the buckets (p95 ~ 4.5 s, no alert)
                n = value * scrape
                for le, share in zip(BUCKETS, itertools.accumulate((0.5, 0.3, 0.17, 0.02, 0.01))):
                    lines.append(f"{name}_bucket{_labels(dict(labels, le=le))} {n * share}")
                lines.append(f"{name}_sum{_labels(labels)} {n * 2.5}")
                lines.append(f"{name}_count{_labels(labels)} {n}")
    return "\n".join(lines) + "\n"
