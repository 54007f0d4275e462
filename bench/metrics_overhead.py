#!/usr/bin/env python3
"""The overhead of metrics on the hot path: bench/run.py's ingest and pipeline phases with
METRICS_ENABLED=true and =false, interleaved (on, off, off, on, ...) in one session, then the
figures side by side.

    .venv/bin/python bench/metrics_overhead.py --pairs 2 -- --rounds 3 --pipeline-n 5000

Arguments after ``--`` go to every bench/run.py run. With metrics on, every process writes
through one PROMETHEUS_MULTIPROC_DIR (files, as deployed: the costlier mode) and no exporter
listens (METRICS_PORT=0: a scrape every 15 s costs nothing measurable; the counting is what is
measured). Each run's JSON is kept in bench/results/metrics-<on|off>-<n>-<run>.json.
Compared: ingest req/s and its ratio to naive_app.py (the same-run yardstick), pipeline
completions/s, its ratio to celery_noop.py, and CPU ms per completion of web, pool and relay.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FIGURES = {  # name -> (path in the results JSON, higher is better)
    "ingest req/s (median)": (("ingest", "median_rps", "ours"), True),
    "ingest ratio to naive": (("ingest", "ratio"), True),
    "pipeline completions/s": (("pipeline", "completions_per_s"), True),
    "pipeline ratio to no-op": (("pipeline", "ratio"), True),
    "web CPU ms/completion": (("pipeline", "cpu_ms_per_completion", "web"), False),
    "pool CPU ms/completion": (("pipeline", "cpu_ms_per_completion", "worker_pool"), False),
    "relay CPU ms/completion": (("pipeline", "cpu_ms_per_completion", "relay"), False),
}


def _get(res: dict, path: tuple):
    for key in path:
        res = res.get(key) if isinstance(res, dict) else None
    return res


def run(on: bool, n: int, stamp: str, extra: list[str]) -> Path:
    """One bench/run.py run with metrics on or off; its results JSON."""
    out = BENCH / "results" / f"metrics-{'on' if on else 'off'}-{n}-{stamp}.json"
    env = dict(os.environ, METRICS_ENABLED="true" if on else "false", METRICS_PORT="0")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory(prefix="nhbench-metrics-") as folder:
        if on:
            env["PROMETHEUS_MULTIPROC_DIR"] = folder
        print(f"[{time.strftime('%H:%M:%S')}] run {n}: metrics {'on' if on else 'off'}",
              flush=True)
        subprocess.run([sys.executable, str(BENCH / "run.py"), "--phases", "ingest,pipeline",
                        "--output", str(out), *extra], env=env, check=False)
    return out


def summary(results: dict[bool, list[dict]]) -> str:
    """The figures per run and their medians, on vs off."""
    lines = [f"{'figure':28s} {'on (runs)':>26s} {'off (runs)':>26s} {'on/off':>7s} overhead"]
    for name, (path, higher) in FIGURES.items():
        vals = {on: [v for r in results[on] if (v := _get(r, path)) is not None]
                for on in (True, False)}
        if not vals[True] or not vals[False]:
            continue
        med = {on: statistics.median(v) for on, v in vals.items()}
        ratio = med[True] / med[False] if med[False] else None
        overhead = None if ratio is None else (1 - ratio if higher else ratio - 1) * 100
        runs = {on: ",".join(f"{v:.1f}" for v in vals[on]) for on in vals}
        lines.append(f"{name:28s} {med[True]:8.2f} ({runs[True]:>15s}) "
                     f"{med[False]:8.2f} ({runs[False]:>15s}) "
                     f"{'-' if ratio is None else f'{ratio:7.3f}'} "
                     f"{'-' if overhead is None else f'{overhead:+.1f} %'}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2, help="on/off pairs (>= 2)")
    ap.add_argument("rest", nargs="*", help="after --: arguments for bench/run.py")
    a = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[bool, list[dict]] = {True: [], False: []}
    for n in range(1, a.pairs + 1):
        for on in ((True, False) if n % 2 else (False, True)):  # on, off, off, on ...
            path = run(on, n, stamp, a.rest)
            if path.exists():
                res = json.loads(path.read_text())
                if "error" in res:
                    print(f"run {n} ({'on' if on else 'off'}) failed: {res['error']}")
                results[on].append(res)
    print()
    print(f"metrics on vs off, {a.pairs} pairs (positive overhead: metrics cost that much)")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
