"""The embedded default at the seed's load: `neurohub up` (SQLite, SQLite broker) under paced POSTs.

The seed plans 100 users x 0.1 req/s = 10 completions/s with peaks of x5. This starts the product
as README's first command does (`neurohub up` on an empty environment, then `seed-demo`), creates
one fresh lot per completion (not measured), and then, for each rate, posts SMT completions open
loop from ``--clients`` connections for ``--seconds`` (each request due at t0 + i/rate, so a stall
shows up as latency, not as a lower rate). After each rate it waits until every completion is
decided, then reads from the database how long each took from received to decided.

Per rate: achieved rate, POST p99/max from its schedule, non-2xx answers (503 "database is locked"
is one), received->decided p99/max, completions that ended ``failed``, the drain time after the
load stopped, and "database is locked" lines in the product's log. The same-run yardstick is
celery_noop (../shared/bench), before and after, which says how fast this machine was.

    .venv/bin/python bench/embedded_load.py                      # 10, 50 and 100/s, 60 s each
    .venv/bin/python bench/embedded_load.py --rates 50 --seconds 20 --noop-tasks 0
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from harness import BENCH, ROOT, Bench, expect, free_port, http_json, log, wait_http  # noqa: E402
from phases import run_noop  # noqa: E402

TARGET_50 = {"achieved_min": 49, "non_2xx": 0, "post_p99_ms_max": 100, "decided_p99_s_max": 1.0,
             "failed": 0}


def start(b: Bench) -> dict:
    """`neurohub up` on the embedded default in a fresh folder, then the demo data."""
    home = b.tmp / "home"
    home.mkdir()
    port, sim_port = free_port(), free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(ROOT),
           "LANG": "C.UTF-8", "PRINTER_SIM_PORT": str(sim_port), "PYTHONUNBUFFERED": "1"}
    up = b.start("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, home)
    base = f"http://127.0.0.1:{port}"
    wait_http(base, "/healthz", up, timeout=120)
    for _ in range(240):
        if http_json(base, "GET", "/readyz")[0] == 200:
            break
        time.sleep(0.5)
    seed = subprocess.run([sys.executable, "-m", "web.cli", "seed-demo"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=300)
    if seed.returncode != 0:
        raise RuntimeError(f"seed-demo failed: {seed.stderr}")

    def token(user: str, pw: str) -> str:
        return expect(*http_json(base, "POST", "/api/v1/auth/token",
                                 body={"username": user, "password": pw}), 200,
                      f"login {user}")["access_token"]
    return {"base": base, "up": up, "db": home / "var" / "neurohub.sqlite3",
            "supervisor": token("supervisor", "super-demo-pw"),
            "operator": token("operator", "oper-demo-pw")}


def make_lots(s: dict, n: int) -> list[str]:
    """n fresh NH-100 lots (at SMT), four creators at a time (not measured)."""
    def one(_):
        return expect(*http_json(s["base"], "POST", "/api/v1/lots", s["supervisor"],
                                 {"product": "NH-100", "quantity": 1}), 201, "lot")["lot_no"]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def decided(db: Path, ids: list[int]) -> tuple[int, list[float], int]:
    """(still received, received->decided seconds of the decided ones, failed) for ``ids``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows += conn.execute(
                "SELECT status, received_at, processed_at FROM completions WHERE id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
    finally:
        conn.close()

    def ts(v: str) -> float:
        from datetime import datetime
        return datetime.fromisoformat(v).timestamp()
    pending = sum(1 for st, _, _ in rows if st == "received")
    lat = [ts(p) - ts(r) for st, r, p in rows if st != "received" and p]
    return pending, lat, sum(1 for st, _, _ in rows if st == "failed")


ROLES = (("gunicorn", "web"), ("fast@", "worker"), ("io@", "worker-io"), (" beat", "beat"),
         (" relay", "relay"), ("printer-sim", "printer-sim"))


def cpu_by_role(up) -> dict[str, float]:
    """CPU seconds so far of `up`'s children and their descendants, by role (pool children and
    gunicorn workers count to their parent's role)."""
    out: dict[str, float] = {}
    for child in up.children():
        try:
            cmd = " ".join(child.cmdline())
            role = next((name for key, name in ROLES if key in cmd), "other")
            for p in [child] + child.children(recursive=True):
                t = p.cpu_times()
                out[role] = out.get(role, 0.0) + t.user + t.system
        except Exception:  # a process that ended meanwhile
            continue
    return out


def locked_lines(up) -> int:
    return up.log_path.read_text(errors="replace").count("database is locked")


def one_rate(s: dict, a, rate: float) -> dict:
    """Paced POSTs at ``rate`` for a.seconds, then wait for every completion to be decided."""
    n = int(rate * a.seconds)
    lots = make_lots(s, n)
    locked_before, cpu_before = locked_lines(s["up"]), cpu_by_role(s["up"])
    log(f"{rate:g}/s: {n} lots ready; posting for {a.seconds:g} s")
    run = loadgen.paced(f"{s['base']}/api/v1/completions", s["operator"],
                        lambda i: {"lot_no": lots[i], "step": "SMT", "station": "ST-01"},
                        lambda i: str(uuid.uuid4()), rate, a.seconds, conns=a.clients)
    stopped = time.perf_counter()
    ok = [o for o in run.outcomes if o and 200 <= o.status < 300]
    late = [(o.done - o.due) * 1000 for o in run.outcomes if o and o.status]
    ids = run.ids()
    deadline = time.monotonic() + a.drain_timeout
    while True:
        pending, lat, failed = decided(s["db"], ids)
        if pending == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    last = max((o.done for o in ok), default=run.started_pc)
    cpu_after = cpu_by_role(s["up"])
    cpu_ms = {role: round((cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / max(n, 1), 2)
              for role in cpu_after}
    return {"rate": rate, "sent": n, "achieved_per_s": round(len(ok) / (last - run.started_pc), 1),
            "status_mix": run.status_mix(), "non_2xx": n - len(ok),
            "post_p50_ms": round(loadgen.percentile(late, 50) or 0, 1),
            "post_p99_ms": round(loadgen.percentile(late, 99) or 0, 1),
            "post_max_ms": round(max(late, default=0), 1),
            "decided_p50_s": round(loadgen.percentile(lat, 50) or 0, 3),
            "decided_p99_s": round(loadgen.percentile(lat, 99) or 0, 3),
            "decided_max_s": round(max(lat, default=0), 3),
            "undecided": pending, "failed": failed,
            "drain_s": round(time.perf_counter() - stopped, 1),
            "locked_log_lines": locked_lines(s["up"]) - locked_before,
            "cpu_ms_per_completion": cpu_ms,
            "client_errors": run.errors[:5]}


def table(rows: list[dict], noop: list[int]) -> str:
    head = ("| rate asked | achieved | non-2xx | POST p50 / p99 / max | "
            "received→decided p50 / p99 / max | failed | undecided | drain | 'locked' log lines |")
    out = [head, "|" + "---|" * 9]
    for r in rows:
        out.append(f"| {r['rate']:g}/s | {r['achieved_per_s']}/s | {r['non_2xx']} | "
                   f"{r['post_p50_ms']} / {r['post_p99_ms']} / {r['post_max_ms']} ms | "
                   f"{r['decided_p50_s']} / {r['decided_p99_s']} / {r['decided_max_s']} s | "
                   f"{r['failed']} | {r['undecided']} | {r['drain_s']} s | "
                   f"{r['locked_log_lines']} |")
    for r in rows:
        out.append(f"CPU ms per completion at {r['rate']:g}/s (POSTs to drained): "
                   + ", ".join(f"{k} {v}" for k, v in sorted(r["cpu_ms_per_completion"].items())))
    if noop:
        out.append(f"\nyardstick celery_noop, same run (before, after): "
                   f"{', '.join(f'{v} tasks/s' for v in noop)}")
    out.append(f"target at 50/s: {TARGET_50}")
    return "\n".join(out)


def main() -> int:
    """Run every rate once against one `neurohub up`; print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10,50,100")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--noop-tasks", type=int, default=5000)
    ap.add_argument("--pipeline-timeout", type=float, default=300)
    ap.add_argument("--keep-tmp", action="store_true")
    a = ap.parse_args()
    b = Bench(a)
    res = b.results
    res.update(loadavg_start=os.getloadavg(), rows=[])
    noop = []
    try:
        ys, noop_redis = (b.copy_yardsticks(), b.claim_redis(1)[0]) if a.noop_tasks else (None, 0)
        if a.noop_tasks:
            noop.append(run_noop(b, ys, noop_redis, a.noop_tasks, "before")["tasks_per_s"])
        s = start(b)
        for rate in (float(x) for x in a.rates.split(",")):
            row = one_rate(s, a, rate)
            log(json.dumps(row))
            res["rows"].append(row)
        b.stop(s["up"])
        if a.noop_tasks:
            noop.append(run_noop(b, ys, noop_redis, a.noop_tasks, "after")["tasks_per_s"])
    except BaseException as exc:
        b.abort(res, exc, tail=3000)
    finally:
        b.cleanup()
    res.update(loadavg_end=os.getloadavg(), yardstick_noop_tasks_per_s=noop)
    out = BENCH / "results" / f"embedded-load-{b.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"\nembedded default, run {b.run_id} on {os.cpu_count()} CPUs, load avg "
          f"{res['loadavg_start'][0]:.2f} -> {res['loadavg_end'][0]:.2f}")
    print(table(res["rows"], noop))
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
