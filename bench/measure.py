"""Measuring instruments: CPU seconds and RSS of processes, PostgreSQL backends and Redis; wrk."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Bench  # noqa: E402


# --------------------------------------------------------------------------- processes

def rss_of(procs: list[psutil.Process]) -> list[dict]:
    out = []
    for p in procs:
        try:
            mi = p.memory_full_info()
            out.append({"pid": p.pid, "rss_mb": round(mi.rss / 2**20, 1),
                        "uss_mb": round(mi.uss / 2**20, 1)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def backend_cpu(b: "Bench", dbname: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to ``dbname`` (our servers keep
    pooled connections, so their backends live through a phase; other databases are excluded)."""
    pids = [r[0] for r in b.sql(dbname, "SELECT pid FROM pg_stat_activity WHERE datname = "
                                        "current_database() AND pid <> pg_backend_pid()")]
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def redis_cpu() -> float:
    return cpu_seconds([p for p in psutil.process_iter(["name"])
                        if p.info["name"] and p.info["name"].startswith("redis-server")])


# --------------------------------------------------------------------------- wrk

def parse_wrk(out: str) -> dict:
    def num(pattern, cast=float, default=None):
        m = re.search(pattern, out)
        return cast(m.group(1)) if m else default

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = dict(zip(("connect", "read", "write", "timeout"),
                      map(int, sock.groups()))) if sock else {}
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    lat_ms = None
    if lat:
        lat_ms = float(lat.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[lat.group(2)]
    mix = re.search(r"STATUS_MIX (\{.*\})", out)
    return {"rps": num(r"Requests/sec:\s+([\d.]+)"),
            "requests": num(r"(\d+) requests in", int),
            "non_2xx_3xx": num(r"Non-2xx or 3xx responses: (\d+)", int, 0),
            "socket_errors": errors,
            "latency_avg_ms": lat_ms,
            "status_mix": json.loads(mix.group(1)) if mix else None}


def run_wrk(url: str, script: Path, seconds: float, env_extra: dict) -> dict:
    env = dict(os.environ, **env_extra)
    argv = ["wrk", "-t2", "-c32", f"-d{seconds:g}s", "-s", str(script), url]
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    res = parse_wrk(r.stdout)
    res["returncode"] = r.returncode
    problems = []
    if r.returncode != 0 or res["rps"] is None:
        problems.append(f"wrk failed (rc {r.returncode}): {r.stderr.strip()[:300]}")
    if res["non_2xx_3xx"]:
        problems.append(f"{res['non_2xx_3xx']} non-2xx/3xx responses")
    if any(res["socket_errors"].values()):
        problems.append(f"socket errors {res['socket_errors']}")
    if res["status_mix"] is not None and set(res["status_mix"]) - {"202"}:
        problems.append(f"status mix {res['status_mix']}")
    res["valid"] = not problems
    res["problems"] = problems
    if problems:
        res["stdout"] = r.stdout[-1500:]
    return res
