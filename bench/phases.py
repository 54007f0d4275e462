"""The measured phases (ingest, pipeline, latency), their helpers and the --profile py-spy step."""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from harness import (BENCH, GOOD, REDIS_HOST, REDIS_PORT, TARGETS, Bench, BenchError,  # noqa: E402
                     Proc, log, wait_celery, wait_http)
from measure import backend_cpu, cpu_seconds, redis_cpu, rss_of, run_wrk  # noqa: E402


# --------------------------------------------------------------------------- phases

def phase_ingest(b: Bench, ys: Path) -> dict:
    a = b.args
    log("ingest: setting up our app and naive_app.py on fresh databases")
    app_redis, naive_redis = b.claim_redis(2)
    ours = b.product_instance("ingest", app_redis)
    lot = b.create_lot(ours, 1_000_000)
    naive_db = b.create_db("naive")
    naive_env = dict(os.environ, DATABASE_URL=b.db_url(naive_db),
                     BROKER=f"redis://{REDIS_HOST}:{REDIS_PORT}/{naive_redis}")
    naive, naive_base = b.gunicorn("web-naive", "naive_app:app", naive_env, ys)
    wait_http(naive_base, "/", naive)

    ours_url, naive_url = ours["base"] + "/api/v1/completions", naive_base + "/completions"
    lua = ys / "post_completion.lua"
    ours_env = {"TOKEN": ours["op"], "LOT": lot, "STEP": "FCT", "STATION": "ST-05"}
    naive_env_wrk = {"LOT": lot, "STEP": "FCT", "STATION": "ST-05"}  # as its docstring runs it

    def count(which: str) -> int:
        if which == "ours":
            return b.sql(ours["db"], "SELECT count(*) FROM completions")[0][0]
        return b.sql(naive_db, "SELECT count(*) FROM naive_completion")[0][0]

    # Status-mix probe (also the warm-up): the yardstick script plus a response() counter.
    probe = {}
    for which, url, env in (("ours", ours_url, ours_env), ("naive", naive_url, naive_env_wrk)):
        probe[which] = run_wrk(url, BENCH / "status_mix.lua", a.probe_seconds,
                               dict(env, YARDSTICK_LUA=str(lua)))
        log(f"ingest: status-mix probe {which}: {probe[which]['status_mix']} "
            f"({probe[which]['rps']:.0f} req/s, not counted)")

    rounds = {"ours": [], "naive": []}
    for i in range(a.rounds):
        for which, url, env in (("ours", ours_url, ours_env), ("naive", naive_url, naive_env_wrk)):
            time.sleep(a.pause)
            before = count(which)
            load1 = os.getloadavg()[0]
            r = run_wrk(url, lua, a.duration, env)
            r["loadavg_before"] = round(load1, 2)
            time.sleep(0.5)
            r["rows_inserted"] = count(which) - before
            if r["requests"] is not None and r["rows_inserted"] < r["requests"]:
                r["valid"] = False
                r["problems"].append(f"only {r['rows_inserted']} rows for {r['requests']} "
                                     "answered requests")
            rounds[which].append(r)
            log(f"ingest: round {i + 1} {which:5s} {r['rps']:8.1f} req/s "
                f"({r['requests']} requests, {r['rows_inserted']} rows"
                f"{'' if r['valid'] else ', INVALID: ' + '; '.join(r['problems'])})")

    ours_status = dict(b.sql(ours["db"], "SELECT status, count(*) FROM completions GROUP BY 1"))
    rss = {"web_workers": rss_of(ours["web"].children()),
           "naive_workers": rss_of(naive.children())}
    b.stop(ours["web"], naive)

    med = {w: statistics.median([r["rps"] or 0 for r in rounds[w]]) for w in rounds}
    valid = (all(r["valid"] for w in rounds for r in rounds[w])
             and all(p["valid"] for p in probe.values()))
    ratio = med["ours"] / med["naive"] if med["naive"] else None
    return {"rounds": rounds, "probe": probe, "median_rps": med, "ratio": ratio,
            "pair_ratios": [o["rps"] / n["rps"] if n["rps"] else None
                            for o, n in zip(rounds["ours"], rounds["naive"])],
            "valid": valid, "ours_completion_status": ours_status, "rss": rss,
            "pass": bool(valid and ratio and ratio >= TARGETS["ingest_ratio_min"])}


def run_noop(b: Bench, ys: Path, redis_db: int, n: int, label: str) -> dict:
    b.reset_redis(redis_db)
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
    env = dict(os.environ, BROKER=broker, PYTHONUNBUFFERED="1")
    node = f"noop-{b.tag}-{label}@%h"
    worker = b.start(f"noop-worker-{label}", [sys.executable, "-m", "celery", "-A", "celery_noop",
                                              "worker", "-c", "2", "-l", "warning", "-n", node],
                     env, ys)
    try:
        wait_celery(broker, worker, f"noop-{b.tag}-{label}@")
        produce = [sys.executable, "celery_noop.py", "produce"]
        subprocess.run(produce + ["200"], env=env, cwd=ys, capture_output=True, timeout=120,
                       check=True)  # warm-up: connections, pool children, first tasks
        r = subprocess.run(produce + [str(n)], env=env, cwd=ys, capture_output=True, text=True,
                           timeout=b.args.pipeline_timeout)
        if r.returncode != 0:
            raise BenchError(f"celery_noop produce failed:\n{r.stdout}\n{r.stderr}")
        m = re.search(r"enqueue (\d+)/s\s+end-to-end (\d+)/s\s+\((\d+) tasks, ([\d.]+)s\)", r.stdout)
        if not m:
            raise BenchError(f"unexpected celery_noop output: {r.stdout!r}")
        out = {"enqueue_per_s": int(m.group(1)), "tasks_per_s": int(m.group(2)),
               "tasks": int(m.group(3)), "seconds": float(m.group(4)), "output": r.stdout.strip()}
        log(f"pipeline: celery_noop ({label}) {out['output']}")
        return out
    finally:
        b.stop(worker)
        b.reset_redis(redis_db)


def wait_decided(b: Bench, dbname: str, ids_from: int, timeout: float,
                 progress: bool = False) -> dict:
    """After the POSTs are done: poll until no completion with id > ids_from is `received`.

    Polls the (status, id) index only, every 0.2 s, so the polling itself costs little; the
    timing comes from processed_at in the rows, not from when the poll noticed.
    """
    deadline = time.monotonic() + timeout
    last_log = time.monotonic()
    timed_out = False
    while True:
        left = b.sql(dbname, "SELECT count(*) FROM completions WHERE status = 'received' "
                             "AND id > %s", (ids_from,))[0][0]
        if left == 0:
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        if progress and time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            log(f"pipeline: {left} completions still received")
        time.sleep(0.2)
    counts = dict(b.sql(dbname, "SELECT status, count(*) FROM completions WHERE id > %s "
                                "GROUP BY status", (ids_from,)))
    if timed_out:
        counts["timed_out"] = True
    return counts


def pipeline_procs(b: Bench, inst: dict) -> tuple[Proc, Proc]:
    env = inst["env"]
    node = f"bench-{b.tag}@%h"
    worker = b.start("worker", [sys.executable, "-m", "celery", "-A", "workers.main", "worker",
                                "-Q", "completions,default", "-c", "2", "-l", "WARNING",
                                "-n", node], env)
    relay = b.start("relay", [sys.executable, "-m", "web.cli", "relay"], env)
    wait_celery(env["REDIS_URL"], worker, f"bench-{b.tag}@")
    return worker, relay


def completion_body(lot: str) -> dict:
    return {"lot_no": lot, "step": "FCT", "station": "ST-05", "measurements": GOOD, "qty_good": 1}


def phase_pipeline(b: Bench, ys: Path, inst: dict, noop_redis: int, worker: Proc,
                   relay: Proc) -> dict:
    a = b.args
    n, n_lots = a.pipeline_n, a.lots
    per_lot = -(-n // n_lots)
    lots = [b.create_lot(inst, per_lot) for _ in range(n_lots)]
    url = inst["base"] + "/api/v1/completions"

    noop = [run_noop(b, ys, noop_redis, n, "before")]

    # Warm-up through the whole pipeline (web, relay, worker), not counted.
    warm_lot = b.create_lot(inst, 1000)
    warm = loadgen.post_many(url, inst["op"], [completion_body(warm_lot)] * 40,
                             [f"warm-{b.tag}-{i}" for i in range(40)], conns=4)
    counts = wait_decided(b, inst["db"], 0, 60)
    if counts.get("accepted", 0) < len(warm.ids()) or counts.get("timed_out"):
        raise BenchError(f"warm-up completions not accepted: {counts}\n{worker.tail()}\n{relay.tail()}")
    start_id = b.sql(inst["db"], "SELECT coalesce(max(id), 0) FROM completions")[0][0]

    log(f"pipeline: posting {n} completions over {n_lots} lots x {per_lot} units "
        f"({a.conns} connections)")
    groups = {"web": inst["web"].tree(), "worker_main": [psutil.Process(worker.pid)],
              "worker_pool": worker.children(), "relay": relay.tree()}
    cpu0 = {k: cpu_seconds(v) for k, v in groups.items()}
    pg0 = backend_cpu(b, inst["db"])
    cpu0.update(postgres=0.0, redis=redis_cpu(), client=cpu_seconds([psutil.Process()]))
    bodies = [completion_body(lots[i % n_lots]) for i in range(n)]
    keys = [f"pipe-{b.tag}-{i}" for i in range(n)]
    run = loadgen.post_many(url, inst["op"], bodies, keys, conns=a.conns)
    post_s = run.finished_pc - run.started_pc
    log(f"pipeline: posted in {post_s:.1f}s ({n / post_s:.0f} req/s), statuses "
        f"{run.status_mix()}; waiting for the worker")
    counts = wait_decided(b, inst["db"], start_id, a.pipeline_timeout, progress=True)
    cpu1 = {k: cpu_seconds(v) for k, v in groups.items()}
    pg1 = backend_cpu(b, inst["db"])
    cpu1.update(postgres=sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items()),
                redis=redis_cpu(), client=cpu_seconds([psutil.Process()]))
    last, first_recv = b.sql(inst["db"], "SELECT extract(epoch FROM max(processed_at)), "
                                         "extract(epoch FROM min(received_at)) FROM completions "
                                         "WHERE id > %s", (start_id,))[0]
    e2e = float(last) - run.started if last is not None else None
    rate = n / e2e if e2e else None
    lot_states = dict(b.sql(inst["db"], "SELECT status, count(*) FROM lots WHERE lot_no = ANY(%s) "
                                        "GROUP BY status", (lots,)))
    outbox_left = b.sql(inst["db"], "SELECT count(*) FROM outbox_messages")[0][0]
    if a.noop_after:
        noop.append(run_noop(b, ys, noop_redis, n, "after"))
    noop_rate = statistics.median([x["tasks_per_s"] for x in noop])
    ratio = rate / noop_rate if rate and noop_rate else None
    all_accepted = (counts.get("accepted") == n and not counts.get("timed_out")
                    and run.status_mix() == {"202": n})
    log(f"pipeline: {counts} in {e2e:.1f}s -> {rate:.0f}/s vs no-op {noop_rate}/s"
        if rate else f"pipeline: {counts}")
    cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
    return {"n": n, "lots": n_lots, "per_lot": per_lot, "conns": a.conns,
            "post_seconds": round(post_s, 2), "post_rps": round(n / post_s, 1),
            "post_status_mix": run.status_mix(), "post_retries": sum(o.attempts - 1 for o in
                                                                     run.outcomes),
            "client_errors": run.errors[:5],
            "end_to_end_seconds": round(e2e, 2) if e2e else None,
            "first_received_lag_ms": round((float(first_recv) - run.started) * 1000, 1)
            if first_recv is not None else None,
            "completions_per_s": round(rate, 1) if rate else None, "status_counts": counts,
            "lot_states": lot_states, "outbox_left": outbox_left,
            "cpu_seconds": cpu, "cpu_ms_per_completion": {k: round(v * 1000 / n, 3)
                                                          for k, v in cpu.items()},
            "noop": noop, "noop_tasks_per_s": noop_rate, "ratio": ratio,
            "all_accepted": all_accepted,
            "pass": bool(all_accepted and ratio and ratio >= TARGETS["pipeline_ratio_min"])}


def phase_latency(b: Bench, inst: dict) -> dict:
    a = b.args
    n = int(a.latency_rate * a.latency_seconds)
    lots = [b.create_lot(inst, n) for _ in range(4)]
    start_id = b.sql(inst["db"], "SELECT coalesce(max(id), 0) FROM completions")[0][0]
    url = inst["base"] + "/api/v1/completions"
    log(f"latency: {a.latency_rate:g} req/s for {a.latency_seconds:g}s (paced, "
        f"{a.latency_conns} connections)")
    run = loadgen.paced(url, inst["op"], lambda i: completion_body(lots[i % 4]),
                        lambda i: f"lat-{b.tag}-{lots[0]}-{i}", a.latency_rate, a.latency_seconds,
                        conns=a.latency_conns)
    ok = [o for o in run.outcomes if o.status == 202]
    rtt = [(o.done - o.sent) * 1000 for o in ok]
    sched = [(o.done - o.due) * 1000 for o in ok]
    late = [(o.sent - o.due) * 1000 for o in run.outcomes]
    span = max(o.sent for o in run.outcomes) - run.started_pc
    counts = wait_decided(b, inst["db"], start_id, 60)
    ids = run.ids()
    rows = b.sql(inst["db"], "SELECT status, extract(epoch FROM processed_at - received_at) * 1000 "
                             "FROM completions WHERE id = ANY(%s)", (ids,))
    acc = [float(ms) for st, ms in rows if st == "accepted" and ms is not None]
    # received->accepted p50 per second of the run: flat = a fixed delay, rising = the worker
    # does not keep up with the offered rate (a queue builds)
    per_s = b.sql(inst["db"], "SELECT floor(extract(epoch FROM received_at - min(received_at) "
                              "OVER ()))::int AS s, extract(epoch FROM processed_at - received_at) "
                              "* 1000 FROM completions WHERE id = ANY(%s)", (ids,))
    buckets: dict[int, list[float]] = {}
    for sec, ms in per_s:
        if ms is not None:
            buckets.setdefault(int(sec), []).append(float(ms))
    p = loadgen.percentile
    res = {
        "rate": a.latency_rate, "seconds": a.latency_seconds, "requests": n,
        "achieved_rate": round(n / span, 1) if span else None,
        "status_mix": run.status_mix(), "client_errors": run.errors[:5],
        "post_ms": {"p50": p(rtt, 50), "p90": p(rtt, 90), "p99": p(rtt, 99), "max": p(rtt, 100)},
        "post_from_schedule_ms": {"p50": p(sched, 50), "p99": p(sched, 99), "max": p(sched, 100)},
        "client_send_late_ms_p99": p(late, 99),
        "received_to_accepted_ms": {"p50": p(acc, 50), "p90": p(acc, 90), "p99": p(acc, 99),
                                    "max": p(acc, 100)},
        "decided": counts,
        "received_to_accepted_p50_by_second": [round(loadgen.percentile(buckets[k], 50), 1)
                                               for k in sorted(buckets)],
    }
    for k in ("post_ms", "post_from_schedule_ms", "received_to_accepted_ms"):
        res[k] = {q: round(v, 2) if v is not None else None for q, v in res[k].items()}
    valid = run.status_mix() == {"202": n} and counts.get("accepted") == n
    res["valid"] = valid
    res["pass_post"] = bool(valid and res["post_ms"]["p99"] is not None
                            and res["post_ms"]["p99"] < TARGETS["post_p99_ms_max"])
    res["pass_accept"] = bool(valid and res["received_to_accepted_ms"]["p99"] is not None
                              and res["received_to_accepted_ms"]["p99"]
                              < TARGETS["accept_p99_ms_max"])
    log(f"latency: POST p50/p99 {res['post_ms']['p50']}/{res['post_ms']['p99']} ms, "
        f"received->accepted p50/p99 {res['received_to_accepted_ms']['p50']}/"
        f"{res['received_to_accepted_ms']['p99']} ms, {run.status_mix()}")
    return res


def profile(b: Bench, inst: dict, worker: Proc, relay: Proc) -> dict:
    """Optional, after the measured phases: py-spy on one pool child and the relay while a
    backlog of accepted completions drains, then (worker and relay stopped) on one web worker
    under the ingest wrk load. Raw stacks and a summary go to bench/results/<run>-profile/."""
    spy = shutil.which("py-spy")
    if not spy:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    out_dir = BENCH / "results" / f"{b.run_id}-profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {"dir": str(out_dir)}

    def record(pid: int, name: str, seconds: int) -> subprocess.Popen:
        return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "250",
                                 "--nonblocking", "-f", "raw", "-o", str(out_dir / f"{name}.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    log("profile: py-spy on a pool child and the relay during a 5,000-completion backlog")
    lots = [b.create_lot(inst, 2000) for _ in range(4)]
    start_id = b.sql(inst["db"], "SELECT coalesce(max(id), 0) FROM completions")[0][0]
    recs = [record(worker.children()[0].pid, "worker", 20), record(relay.pid, "relay", 20)]
    loadgen.post_many(inst["base"] + "/api/v1/completions", inst["op"],
                      [completion_body(lots[i % 4]) for i in range(5000)],
                      [f"prof-{b.tag}-{i}" for i in range(5000)], conns=b.args.conns)
    wait_decided(b, inst["db"], start_id, 120)
    for r in recs:
        r.wait(60)
    b.stop(relay, worker)
    log("profile: py-spy on a web worker under wrk -t2 -c32 -d10s")
    lot = b.create_lot(inst, 1_000_000)
    rec = record(inst["web"].children()[0].pid, "web", 12)
    time.sleep(1)
    run_wrk(inst["base"] + "/api/v1/completions", b.tmp / "yardsticks" / "post_completion.lua",
            10, {"TOKEN": inst["op"], "LOT": lot, "STEP": "FCT", "STATION": "ST-05"})
    rec.wait(60)
    for name in ("web", "worker", "relay"):
        res[name] = top_frames(out_dir / f"{name}.txt")
    (out_dir / "summary.txt").write_text("\n\n".join(
        f"== {name} (inclusive share of samples, idle included)\n" + "\n".join(res[name])
        for name in ("web", "worker", "relay")) + "\n")
    return res


def top_frames(path: Path, n: int = 25) -> list[str]:
    """The heaviest frames of our own code (and the libraries they call) in a py-spy raw file."""
    if not path.exists():
        return []
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            c = int(count)
        except ValueError:
            continue
        total += c
        for f in set(stack.split(";")):
            incl[f] = incl.get(f, 0) + c
    keep = [(c, f) for f, c in incl.items()
            if any(s in f for s in ("web/", "workers/", "tasks/", "sqlalchemy/orm", "psycopg/",
                                    "kombu/", "celery/app", "jwt/", "pydantic/", "flask_limiter"))]
    return [f"{100 * c / total:5.1f}% {f}" for c, f in sorted(keep, reverse=True)[:n]]
