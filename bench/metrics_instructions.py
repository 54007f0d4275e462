#!/usr/bin/env python3
"""The overhead of metrics and JSON logs on the hot path, in CPU instructions (callgrind):
deterministic where bench/metrics_overhead.py's throughput, on a shared machine, is not.

    .venv/bin/python bench/metrics_instructions.py [--n 200]

One process (the web app and a worker's task code, in-process) does the hot path: a completion
POSTed (validation, insert, outbox row, request metrics, the access line) and decided by the
``completions.process`` task as a worker runs it (``apply()``: the same task code and Celery
signals - received is the one signal it skips - counted per task, one task per completion: the
worst case, the relay groups a lot's completions into one task). Each configuration runs under
``valgrind --tool=callgrind`` twice, with W warm-up completions and with W + N, so start-up
and first-use costs cancel: the difference / N is instructions per completion.

Each run has a database of its own (migrated, empty), so none reads rows another wrote.
Configurations: metrics off and text logs (the baseline), metrics on (PROMETHEUS_MULTIPROC_DIR
files, as deployed), metrics on with JSON logs (the production default). Target (issue #16):
< 5 % over the baseline. Not in the figure: PostgreSQL's own CPU (the same in every
configuration, so the real overhead is lower than the ratio here) and the relay's publish (two
header stamps and a counter per message). Results: a table and
bench/results/metrics-instructions-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
WARMUP = 20
CONFIGS = {  # name -> environment
    "baseline: metrics off, text logs": {"METRICS_ENABLED": "false", "LOG_FORMAT": "text"},
    "metrics on, text logs": {"METRICS_ENABLED": "true", "LOG_FORMAT": "text"},
    "metrics on, JSON logs": {"METRICS_ENABLED": "true", "LOG_FORMAT": "json"},
}
TARGET_PCT = 5.0


def child(url: str, n: int) -> None:
    """The measured process: WARMUP + n completions POSTed and decided."""
    from tests.support.factories import Factory, post_completion
    from web import create_app
    from web.auth import issue_token
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-" + "x" * 40,
                      "METRICS_PORT": 0, "LOG_LEVEL": "INFO"})
    factory = Factory(app)
    tag = uuid.uuid4().hex[:6]
    station = factory.station(f"ST-{tag}", steps=["SMT"])
    lot = factory.lot(factory.product(f"P-{tag}"), quantity=WARMUP + n + 10)
    uid, name = factory.user("operator", f"op-{tag}")  # each run its own, on one database
    with app.app_context():
        headers = {"Authorization": f"Bearer {issue_token(uid, name, 'operator')[0]}"}
    client = app.test_client()
    from tasks.completions import process
    for _ in range(WARMUP + n):
        cid = post_completion(client, headers, lot, "SMT", station, qty_good=1)
        with app.app_context():
            assert process.apply(args=[cid]).get() == "accepted"


def instructions(config: dict, url: str, n: int, out_dir: Path) -> int:
    """Instructions (callgrind's total) of one child run."""
    out = out_dir / f"cg-{uuid.uuid4().hex[:8]}.out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0", **config)  # same dicts
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory(prefix="nhbench-cg-") as folder:
        if config["METRICS_ENABLED"] == "true":
            env["PROMETHEUS_MULTIPROC_DIR"] = folder
        run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              sys.executable, __file__, "--child", url, str(n)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:
        raise SystemExit(f"the run failed ({config}, n={n}):\n{run.stderr[-3000:]}")
    total = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.M)
    return int(total.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="completions measured per run")
    ap.add_argument("--child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], int(a.child[1]))
    import harness
    from flask_migrate import upgrade

    from web import create_app
    bench = harness.Bench(argparse.Namespace(keep_tmp=False))
    try:
        runs = [(name, n) for name in CONFIGS for n in (0, a.n)]
        urls = {}
        for i, r in enumerate(runs):  # a database each: no run reads rows another one wrote
            urls[r] = bench.db_url(bench.create_db(f"cg{i}"))
            with create_app({"DATABASE_URL": urls[r]}).app_context():
                upgrade()
        with tempfile.TemporaryDirectory(prefix="nhbench-cgout-") as out_dir, \
                ThreadPoolExecutor(2) as pool:
            t = time.monotonic()
            totals = dict(zip(runs, pool.map(
                lambda r: instructions(CONFIGS[r[0]], urls[r], r[1], Path(out_dir)), runs)))
        per = {name: (totals[(name, a.n)] - totals[(name, 0)]) / a.n for name in CONFIGS}
        base = per[next(iter(CONFIGS))]
        rows = {name: {"instructions_per_completion": round(v),
                       "overhead_pct": round(100 * (v / base - 1), 2)} for name, v in per.items()}
        print(f"\n{'configuration':34} {'instr/completion':>17} {'overhead':>9}")
        for name, r in rows.items():
            print(f"{name:34} {r['instructions_per_completion']:>17,} "
                  f"{r['overhead_pct']:>8.2f}%")
        print(f"target: < {TARGET_PCT:.0f} % ({a.n} completions a run after {WARMUP} warm-up; "
              f"{time.monotonic() - t:.0f} s)")
        out = BENCH / "results" / f"metrics-instructions-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"n": a.n, "warmup": WARMUP, "configs": rows,
                                   "totals": {f"{k[0]} n={k[1]}": v for k, v in totals.items()}},
                                  indent=2) + "\n")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
