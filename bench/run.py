#!/usr/bin/env python3
"""NeuroHub MES benchmarks, measured side by side with the shared yardsticks in the same run.

    bench/run_all.sh --source HEAD   # full suite (8-12 minutes on 2 cores)
    bench/run_all.sh --quick         # smoke run of the harness (short, NOT for results)
    python bench/run.py --help

Phases (see bench/README.md for what each measures and the targets):
  ingest    our POST /api/v1/completions vs naive_app.py, wrk rounds alternating
  pipeline  20,000 completions HTTP -> accepted vs celery_noop.py (before and after ours)
  latency   paced 100 req/s: POST round trip and received->accepted from the database
  (RSS of the web and Celery pool processes is taken at the end of the phases that run them)

Everything started here is stopped in a ``finally`` (process groups, SIGTERM then SIGKILL);
the databases it creates (nhbench_<run>_*) are dropped and the Redis databases it claimed are
flushed. Only 127.0.0.1 is ever targeted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from harness import BENCH, ROOT, TARGETS, YARDSTICKS, Bench, log  # noqa: E402
from measure import rss_of  # noqa: E402
from phases import (completion_body, phase_ingest, phase_latency, phase_pipeline,  # noqa: E402
                    pipeline_procs, profile, wait_decided)
from report import details, table  # noqa: E402


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--phases", default="ingest,pipeline,latency",
                    help="comma list of ingest, pipeline, latency (default: all)")
    ap.add_argument("--rounds", type=int, default=5, help="wrk rounds per app (>= 2)")
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk round")
    ap.add_argument("--probe-seconds", type=float, default=3, help="status-mix probe per app")
    ap.add_argument("--pause", type=float, default=2, help="idle seconds before each round")
    ap.add_argument("--pipeline-n", type=int, default=20000)
    ap.add_argument("--lots", type=int, default=20)
    ap.add_argument("--conns", type=int, default=16, help="pipeline POST connections")
    ap.add_argument("--pipeline-timeout", type=float, default=600)
    ap.add_argument("--no-noop-after", dest="noop_after", action="store_false",
                    help="run celery_noop only before ours (default: before and after)")
    ap.add_argument("--latency-rate", type=float, default=100)
    ap.add_argument("--latency-seconds", type=float, default=20)
    ap.add_argument("--latency-conns", type=int, default=8)
    ap.add_argument("--profile", action="store_true",
                    help="afterwards, py-spy a web worker, a pool child and the relay")
    ap.add_argument("--quick", action="store_true",
                    help="harness smoke test: 2 short rounds, 2,000 completions, 5 s latency")
    ap.add_argument("--max-minutes", type=float, default=40, help="hard limit for the whole run")
    ap.add_argument("--source", default="worktree",
                    help="product code to measure: 'worktree' (default: /work/main as it is) or a "
                         "git revision, e.g. HEAD, exported with `git archive` to the temp dir")
    ap.add_argument("--keep-tmp", action="store_true", help="keep logs and yardstick copies")
    ap.add_argument("--output", help="results JSON path (default bench/results/<timestamp>.json)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.probe_seconds, a.pause = 2, 3, 1, 0.5
        a.pipeline_n, a.lots, a.latency_seconds = 2000, 4, 5
    if a.rounds < 2:
        ap.error("--rounds must be at least 2")
    phases = {p.strip() for p in a.phases.split(",") if p.strip()}
    if phases - {"ingest", "pipeline", "latency"}:
        ap.error(f"unknown phases {phases - {'ingest', 'pipeline', 'latency'}}")
    if not shutil.which("wrk") and "ingest" in phases:
        ap.error("wrk is not installed")

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def _alarm(_signum, _frame):
        raise TimeoutError(f"the run exceeded --max-minutes={a.max_minutes:g}")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(a.max_minutes * 60))

    b = Bench(a)
    res = b.results
    res.update(machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_start": os.getloadavg()},
               git=_git_rev(), quick=a.quick)
    try:
        ys = b.copy_yardsticks()
        b.prepare_source()
        log(f"run {b.run_id}: product from {b.src} ({a.source}), yardsticks from {YARDSTICKS}, "
            f"temp {b.tmp}")
        if "ingest" in phases:
            res["ingest"] = phase_ingest(b, ys)
        if phases & {"pipeline", "latency"}:
            app_redis, noop_redis = b.claim_redis(2)
            log("pipeline: setting up a fresh database, web, worker and relay")
            inst = b.product_instance("pipe", app_redis)
            worker, relay = pipeline_procs(b, inst)
            if "pipeline" in phases:
                res["pipeline"] = phase_pipeline(b, ys, inst, noop_redis, worker, relay)
            if "latency" in phases:
                if "pipeline" not in phases:  # warm the pipeline up once
                    # With as many connections as the measured phase: every web thread then has
                    # its database connection (and prepared statement), as after the pipeline
                    # phase; a cold one costs a new PostgreSQL backend inside a measured request.
                    warm_lot = b.create_lot(inst, 1000)
                    loadgen.post_many(inst["base"] + "/api/v1/completions", inst["op"],
                                      [completion_body(warm_lot)] * 200,
                                      [f"warm-{b.tag}-{i}" for i in range(200)],
                                      conns=a.latency_conns)
                    wait_decided(b, inst["db"], 0, 60)
                res["latency"] = phase_latency(b, inst)
            web_rss = rss_of(inst["web"].children())
            pool_rss = rss_of(worker.children())
            res["rss"] = {"web_workers": web_rss, "pool_children": pool_rss,
                          "relay": rss_of([psutil.Process(relay.pid)]),
                          "worker_main": rss_of([psutil.Process(worker.pid)])}
            if a.profile:
                res["profile"] = profile(b, inst, worker, relay)
            b.stop(relay, worker, inst["web"])
        else:
            res["rss"] = {"web_workers": [], "pool_children": []}
        if "ingest" in res:
            res["rss"]["web_workers_ingest"] = res["ingest"]["rss"]["web_workers"]
            res["rss"]["naive_max_mb"] = max((x["rss_mb"] for x in
                                              res["ingest"]["rss"]["naive_workers"]), default=None)
        r = res["rss"]
        web_all = r["web_workers"] + r.get("web_workers_ingest", [])
        r["web_max_mb"] = max((x["rss_mb"] for x in web_all), default=None)
        r["worker_max_mb"] = max((x["rss_mb"] for x in r["pool_children"]), default=None)
        r["web_pass"] = None if r["web_max_mb"] is None else r["web_max_mb"] < TARGETS["web_rss_mb_max"]
        r["worker_pass"] = (None if r["worker_max_mb"] is None
                            else r["worker_max_mb"] < TARGETS["worker_rss_mb_max"])
    except BaseException as exc:
        b.abort(res, exc, only=("worker", "relay", "web"))
    finally:
        signal.alarm(0)
        b.cleanup()
    res["machine"]["loadavg_end"] = os.getloadavg()
    out = Path(a.output) if a.output else BENCH / "results" / f"{b.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(f"NeuroHub MES benchmarks, run {b.run_id}{' (QUICK: not for results)' if a.quick else ''}"
          f" on {os.cpu_count()} CPUs, load avg {res['machine']['loadavg_start'][0]:.2f} -> "
          f"{res['machine']['loadavg_end'][0]:.2f}")
    print(table(res))
    notes = details(res)
    if notes:
        print(notes)
    print(f"\nresults: {out}")
    if "error" in res:
        print(f"ERROR: {res['error']}")
        return 2
    return 0


def _git_rev() -> dict | None:
    """HEAD and the files that differ from it: the working tree is what gets measured."""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=normal"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
        return {"head": rev or None, "dirty": [d for d in dirty if not d[3:].startswith("bench/")]}
    except (OSError, subprocess.TimeoutExpired):
        return None


if __name__ == "__main__":
    sys.exit(main())
