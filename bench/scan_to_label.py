#!/usr/bin/env python3
"""Scan-to-label latency: POST /api/v1/completions -> label's last byte at a Zebra simulator."""
# python bench/scan_to_label.py [--rate 100] [--seconds 20]; bench/run.py conventions. Missing or
# duplicate labels or non-202 answers make the run INVALID.
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from printers import PrinterSimulator  # noqa: E402
from harness import (BENCH, Bench, BenchError, expect, http_json, log, wait_celery,  # noqa: E402
                     wait_http)
from measure import backend_cpu, cpu_seconds  # noqa: E402
from phases import run_noop  # noqa: E402

TARGETS = {"send_to_label_p99_ms_max": 300.0, "preview_p99_ms_max": 30.0}
ADMIN_PW = "bench-admin-pw-0123456789"
ROUTING = [{"step": "FCT", "name": "FCT", "label_template": "unit",
            "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]
SERIAL_RE = re.compile(rb"\^FD\(21\)([A-Za-z0-9.-]+)\(10\)")  # the unit template's Data Matrix


def pct(values: list[float]) -> dict:
    """p50/p90/p99/max (nearest rank) in ms, rounded."""
    return {k: (round(loadgen.percentile(values, q), 1) if values else None)
            for k, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}


def completion(lot: str, serial: str) -> dict:
    """One in-spec unit completion at FCT on ST-B."""
    return {"lot_no": lot, "step": "FCT", "station": "ST-B", "unit_serial": serial,
            "measurements": {"voltage": 3.3}}


def setup(b: Bench, a, sim: PrinterSimulator) -> dict:
    """Database, admin, web server, product, station, lots; returns what the run needs."""
    env = b.product_env(dbname := b.create_db("s2l"), b.claim_redis(1)[0])
    b.cli(env, "db", "upgrade")
    b.cli(env, "create-user", "admin", "--role", "admin", "--password", ADMIN_PW)
    web, base = b.gunicorn("web", "web:create_app()", env)
    wait_http(base, "/healthz", web)
    tok = expect(*http_json(base, "POST", "/api/v1/auth/token", body={
        "username": "admin", "password": ADMIN_PW}), 200, "login")["access_token"]
    expect(*http_json(base, "GET", "/api/v1/labels/templates", tok), 200, "templates")  # built-ins
    expect(*http_json(base, "POST", "/api/v1/products", tok,
                      {"code": "S2L", "name": "scan to label", "routing": ROUTING}), 201, "product")
    expect(*http_json(base, "POST", "/api/v1/stations", tok,
                      {"code": "ST-B", "name": "bench", "steps": ["FCT"],
                       "printer_uri": f"tcp://127.0.0.1:{sim.port}"}), 201, "station")

    def lot(serials: list[str]) -> str:
        return expect(*http_json(base, "POST", "/api/v1/lots", tok,
                                 {"product": "S2L", "quantity": len(serials), "serials": serials}),
                      201, "lot")["lot_no"]
    lots = [(lot(s), s) for s in ([f"L{li}-{k:04d}" for k in range(a.per_lot)]
                                  for li in range(a.lots))]
    warm = lot([f"W-{k:04d}" for k in range(a.warmup)])
    return dict(db=dbname, env=env, web=web, base=base, tok=tok, lots=lots, warm=warm)


def start_pipeline(b: Bench, a, env: dict) -> dict:
    """The two workers of `neurohub up` and the relay, answering pings."""
    celery = [sys.executable, "-m", "celery", "-A", "workers.main", "worker", "-l", "WARNING"]
    fast = b.start("worker-fast", celery + ["-Q", "completions,default", "-c", str(a.concurrency),
                                            "-n", f"fast-{b.tag}@%h"], env)
    io = b.start("worker-io", celery + ["-Q", "printing,io", "-c", "1", "--prefetch-multiplier",
                                        "1", "-n", f"io-{b.tag}@%h"], env)
    relay = b.start("relay", [sys.executable, "-m", "web.cli", "relay"], env)
    wait_celery(env["REDIS_URL"], fast, f"fast-{b.tag}@")
    wait_celery(env["REDIS_URL"], io, f"io-{b.tag}@")
    return {"worker_fast": fast, "worker_io": io, "relay": relay}


def wait_labels(sim: PrinterSimulator, count: int, timeout: float) -> float:
    """Poll until the simulator holds ``count`` labels; returns the seconds waited."""
    t0 = time.monotonic()
    while sim.label_count < count and time.monotonic() - t0 < timeout:
        time.sleep(0.2)
    return round(time.monotonic() - t0, 1)


def previews(base: str, tok: str, lot: str, n: int) -> dict:
    """n sequential POST /api/v1/labels/preview, send -> last byte, after one warm-up."""
    host, port, _ = loadgen._check_local(base)
    body = json.dumps({"template": "unit", "data": {
        "product_code": "S2L", "product_name": "scan to label", "lot_no": lot,
        "date": time.strftime("%Y-%m-%d"), "serial": "L0-0000"}}).encode()
    hdr = {"Content-Type": "application/json", "Authorization": f"Bearer {tok}"}
    times, bad = [], {}
    for i in range(n + 1):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/labels/preview", body=body, headers=hdr)
        resp = conn.getresponse()
        png, dt = resp.read(), (time.perf_counter() - t0) * 1000
        conn.close()
        if resp.status != 200 or not png.startswith(b"\x89PNG"):
            bad[str(resp.status)] = bad.get(str(resp.status), 0) + 1
        elif i:
            times.append(dt)
    return dict(pct(times), n=len(times), errors=bad, bytes=len(png))


def measure(b: Bench, a, sim: PrinterSimulator, s: dict, procs: dict) -> dict:
    """Warm-up, the paced run, label matching, stage split, CPU, previews."""
    url = s["base"] + "/api/v1/completions"
    warm = loadgen.post_many(url, s["tok"], [completion(s["warm"], f"W-{k:04d}")
                                             for k in range(a.warmup)],
                             [f"warm-{b.tag}-{k}" for k in range(a.warmup)], conns=4)
    wait_labels(sim, a.warmup, 60)
    if sim.label_count != a.warmup or warm.status_mix() != {"202": a.warmup}:
        raise BenchError(f"warm-up: {warm.status_mix()}, {sim.label_count} labels; "
                         f"{procs['worker_io'].tail(1500)}")
    time.sleep(1)
    n = int(a.rate * a.seconds)
    order = [(s["lots"][i % a.lots][0], s["lots"][i % a.lots][1][i // a.lots]) for i in range(n)]
    sent: dict[str, float] = {}

    def body_for(i: int) -> dict:
        sent[order[i][1]] = time.time()  # called right before the request is sent
        return completion(*order[i])

    groups = {"web": procs["web"].tree(), "worker_fast": procs["worker_fast"].tree(),
              "worker_io": procs["worker_io"].tree(), "relay": procs["relay"].tree(),
              "bench(client+sim)": [psutil.Process()]}
    cpu0, pg0 = {k: cpu_seconds(v) for k, v in groups.items()}, backend_cpu(b, s["db"])
    log(f"load: {a.rate:g}/s for {a.seconds:g}s ({n} unit completions, {a.conns} connections)")
    run = loadgen.paced(url, s["tok"], body_for, lambda i: f"s2l-{b.tag}-{i}", a.rate,
                        a.seconds, conns=a.conns)
    log(f"load done: {run.status_mix()}; waiting up to {a.straggler_timeout:g}s for labels")
    waited = wait_labels(sim, a.warmup + n, a.straggler_timeout)
    time.sleep(2)  # late duplicates would show up here
    cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in groups.items()}
    cpu["postgres"] = sum(v - pg0.get(pid, 0.0) for pid, v in backend_cpu(b, s["db"]).items())

    arrived: dict[str, list[float]] = {}
    unknown, snapshot = 0, sim.labels()
    for lab in snapshot:
        m = SERIAL_RE.search(lab.zpl)
        ser = m.group(1).decode() if m else None
        if ser in sent:
            arrived.setdefault(ser, []).append(lab.received_at)
        elif not (ser or "").startswith("W-"):
            unknown += 1
    ok = {order[i][1] for i, o in enumerate(run.outcomes) if o.status == 202}
    first = {k: min(v) for k, v in arrived.items()}  # a duplicate's first copy
    missing, dups = sorted(ok - set(first)), sorted(k for k, v in arrived.items() if len(v) > 1)
    lat, by_sec, t0 = [], {}, min(sent.values())
    for k in ok & set(first):
        lat.append((first[k] - sent[k]) * 1000)
        by_sec.setdefault(int(sent[k] - t0), []).append(lat[-1])

    rows = b.sql(s["db"], "SELECT c.unit_serial, extract(epoch FROM c.received_at), "
                          "extract(epoch FROM c.processed_at), extract(epoch FROM j.printed_at), "
                          "extract(epoch FROM j.sent_at) FROM completions c JOIN label_jobs j "
                          "ON j.completion_id = c.id WHERE c.unit_serial = ANY(%s)", (list(sent),))
    stages: dict[str, list[float]] = {k: [] for k in ("send->received", "received->processed",
                                                      "processed->job sent", "job sent->label")}
    printed = []  # the post-send ~HS and "printed" commit: serial per printer, bounds labels/s
    for ser, rec, proc, jprinted, jsent in rows:
        if None in (rec, proc, jsent) or ser not in first:
            continue
        if jprinted is not None:
            printed.append((float(jprinted) - float(jsent)) * 1000)
        t = [sent[ser], float(rec), float(proc), float(jsent), first[ser]]
        for name, a0, a1 in zip(stages, t, t[1:]):
            stages[name].append((a1 - a0) * 1000)
    comp = dict(b.sql(s["db"], "SELECT status, count(*) FROM completions WHERE unit_serial = "
                               "ANY(%s) GROUP BY 1", (list(sent),)))
    jobs = dict(b.sql(s["db"], "SELECT state, count(*) FROM label_jobs GROUP BY 1"))
    # Rows written by one transaction share its xmin: how many worker transactions decided the
    # completions, and how many send batches printed the labels (fewer = more coalescing).
    (batches,) = b.sql(s["db"], "SELECT count(DISTINCT c.xmin::text), count(DISTINCT j.xmin::text)"
                                " FROM completions c JOIN label_jobs j ON j.completion_id = c.id"
                                " WHERE c.unit_serial = ANY(%s)", (list(sent),))
    api_jobs = {}
    for st in ("queued", "waiting_printer", "sent", "failed"):  # the API's view of leftovers
        code, pg = http_json(s["base"], "GET", f"/api/v1/labels/jobs?state={st}&limit=200",
                             s["tok"])
        api_jobs[st] = len(pg["items"]) if code == 200 and pg else f"HTTP {code}"
    prev = previews(s["base"], s["tok"], s["lots"][0][0], a.previews)

    arr = sorted(first.values())
    rtt = [(o.done - o.sent) * 1000 for o in run.outcomes if o.status == 202]
    span = max(o.sent for o in run.outcomes) - run.started_pc
    valid = (run.status_mix() == {"202": n} and not missing and not dups and not unknown
             and len(arrived) == n)
    return {
        "rate": a.rate, "seconds": a.seconds, "requests": n,
        "achieved_rate": round(n / span, 1) if span else None, "status_mix": run.status_mix(),
        "client_errors": run.errors[:5], "post_ms": pct(rtt),
        "post_from_schedule_ms": pct([(o.done - o.due) * 1000 for o in run.outcomes]),
        "send_to_label_ms": pct(lat),
        "send_to_label_p50_by_second": [round(loadgen.percentile(by_sec[k], 50), 1)
                                        for k in sorted(by_sec)],
        "stages_ms": {k: pct(v) for k, v in stages.items()}, "job_sent_to_printed_ms": pct(printed),
        "printer_labels_per_s": round((len(arr) - 1) / (arr[-1] - arr[0]), 1)
        if len(arr) > 1 and arr[-1] > arr[0] else None,
        "labels": {"completions_202": len(ok), "labels_matched": len(arrived),
                   "sim_labels": len(snapshot) - a.warmup, "missing": len(missing),
                   "missing_first": missing[:10], "duplicates": len(dups),
                   "duplicates_first": dups[:10], "unknown": unknown,
                   "straggler_wait_s": waited, "discarded": sim.state.discarded_count},
        "completion_status": comp, "label_job_states_db": jobs,
        "decide_transactions": batches[0], "print_batches": batches[1], "label_jobs_api": api_jobs,
        "cpu_ms_per_completion": {k: round(v * 1000 / n, 2) for k, v in cpu.items()},
        "preview_ms": prev, "valid": valid,
        "pass_label": bool(valid and lat and pct(lat)["p99"] < TARGETS["send_to_label_p99_ms_max"]),
        "pass_preview": bool(prev["n"] == a.previews and not prev["errors"]
                             and prev["p99"] < TARGETS["preview_p99_ms_max"]),
    }


def table(r: dict) -> str:
    """The small result table plus a few lines under it."""
    def pq(d):
        return f"{d['p50']} / {d['p99']}"
    lab, verdict = r["labels"], (lambda ok: "PASS" if ok else "FAIL")
    inv = "" if r["valid"] else "INVALID"
    rows = [("metric", "p50 / p99 (ms) or value", "target", "result"),
            (f"send -> label last byte @{r['rate']:g}/s", pq(r["send_to_label_ms"]) +
             f" (max {r['send_to_label_ms']['max']})",
             f"p99 < {TARGETS['send_to_label_p99_ms_max']:g}", inv or verdict(r["pass_label"])),
            ("labels matched / completions 202", f"{lab['labels_matched']} / "
             f"{lab['completions_202']} (missing {lab['missing']}, dup {lab['duplicates']}, "
             f"unknown {lab['unknown']})", "equal", "OK" if r["valid"] else "INVALID"),
            ("POST round trip", pq(r["post_ms"]), "", ""),
            ("  from scheduled send", pq(r["post_from_schedule_ms"]),
             f"{r['achieved_rate']}/s achieved", ""),
            ("completions by status", json.dumps(r["completion_status"]), "", ""),
            ("label jobs by state (DB)", json.dumps(r["label_job_states_db"]), "", ""),
            ("  API ?state= (first page)", json.dumps(r["label_jobs_api"]), "", ""),
            ("decide transactions / print batches", f"{r['decide_transactions']} / "
             f"{r['print_batches']}", "", "")]
    rows += [(f"  stage {k}", pq(v), "", "") for k, v in r["stages_ms"].items()]
    rows += [("  job sent->printed (DB)", pq(r["job_sent_to_printed_ms"]),
              f"{r['printer_labels_per_s']} labels/s", "")]
    pv = r["preview_ms"]
    rows.append((f"preview POST x{pv['n']}", pq(pv), f"p99 < {TARGETS['preview_p99_ms_max']:g}",
                 verdict(r["pass_preview"])))
    w = [max(len(x[i]) for x in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip() for x in rows]
    out.insert(1, "  ".join("-" * x for x in w))
    out.append("send->label p50 by second (ms): " + " ".join(
        f"{v:.0f}" for v in r["send_to_label_p50_by_second"]))
    if r.get("yardstick_noop_tasks_per_s"):
        out.append("yardstick celery_noop, same run (before, after): " + ", ".join(
            f"{v} tasks/s" for v in r["yardstick_noop_tasks_per_s"]) +
            " (its README: 630-810 on a 2-core machine)")
    out.append("CPU ms per completion: " + ", ".join(
        f"{k} {v}" for k, v in r["cpu_ms_per_completion"].items()))
    return "\n".join(out)


def main() -> int:
    """Parse arguments, run once, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--conns", type=int, default=8, help="paced client: max requests in flight")
    ap.add_argument("--lots", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=2,
                    help="completion worker processes (neurohub up: WORKER_CONCURRENCY)")
    ap.add_argument("--per-lot", type=int, default=600, help="unit serials per lot")
    ap.add_argument("--warmup", type=int, default=20, help="completions through the pipeline first")
    ap.add_argument("--straggler-timeout", type=float, default=60)
    ap.add_argument("--previews", type=int, default=50)
    ap.add_argument("--source", default="worktree", help="worktree or a git revision (as run.py)")
    ap.add_argument("--max-minutes", type=float, default=10, help="hard limit for the whole run")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--noop-tasks", type=int, default=5000,
                    help="celery_noop yardstick tasks, run before and after ours (0: skip)")
    ap.add_argument("--pipeline-timeout", type=float, default=300, help="celery_noop time limit")
    a = ap.parse_args()
    if a.rate * a.seconds > a.lots * a.per_lot:
        ap.error("rate x seconds exceeds lots x per-lot serials")

    def _stop(signum, _frame):
        raise (TimeoutError if signum == signal.SIGALRM else KeyboardInterrupt)(f"signal {signum}")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.alarm(int(a.max_minutes * 60))
    b = Bench(a)
    res = b.results
    res.update(targets=TARGETS, loadavg_start=os.getloadavg())
    sim = PrinterSimulator(port=0, render=False, keep=int(a.rate * a.seconds) + a.warmup + 1000)
    try:
        sim.start()
        b.prepare_source()
        log(f"run {b.run_id}: simulator on 127.0.0.1:{sim.port}, product from {b.src}")
        # The host's speed moves from run to run: the same-run no-op Celery yardstick says how
        # fast this machine was, before and after ours (its README: 630-810 tasks/s on 2 cores).
        ys, noop_redis = (b.copy_yardsticks(), b.claim_redis(1)[0]) if a.noop_tasks else (None, 0)
        noop = [run_noop(b, ys, noop_redis, a.noop_tasks, "before")] if a.noop_tasks else []
        s = setup(b, a, sim)
        procs = dict(start_pipeline(b, a, s["env"]), web=s["web"])
        res["scan_to_label"] = measure(b, a, sim, s, procs)
        if a.noop_tasks:
            b.stop(*procs.values())  # the yardstick gets the machine to itself, as before ours
            noop.append(run_noop(b, ys, noop_redis, a.noop_tasks, "after"))
        res["scan_to_label"]["yardstick_noop_tasks_per_s"] = [x["tasks_per_s"] for x in noop]
    except BaseException as exc:
        b.abort(res, exc)
    finally:
        signal.alarm(0)
        sim.stop()
        b.cleanup()
    res["loadavg_end"] = os.getloadavg()
    out = BENCH / "results" / f"scan-to-label-{b.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"\nscan-to-label, run {b.run_id} on {os.cpu_count()} CPUs, load avg "
          f"{res['loadavg_start'][0]:.2f} -> {res['loadavg_end'][0]:.2f}")
    if "scan_to_label" in res:
        print(table(res["scan_to_label"]))
    print(f"\nresults: {out}")
    if "error" in res:
        print(f"ERROR: {res['error']}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
