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
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
YARDSTICKS = Path(os.environ.get("BENCH_YARDSTICKS", ROOT.parent / "shared" / "bench"))
YARDSTICK_FILES = ("naive_app.py", "celery_noop.py", "post_completion.lua", "README.md")
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Redis databases the run may claim (empty ones only). 13 is the test suite's, 14/15 are the
# yardsticks' defaults, 0 is everybody's: never used.
REDIS_CANDIDATES = [int(x) for x in os.environ.get("BENCH_REDIS_DBS",
                                                   "9,10,11,12,8,7,6,5,4,3,2,1").split(",")]
CLAIM_KEY = "nhbench:claimed-by"
SECRET = "bench-secret-key-not-for-production-0123456789abcdef"

TARGETS = {
    "ingest_ratio_min": 1.5,  # ours / naive, median req/s
    "pipeline_ratio_min": 0.5,  # ours completions/s / no-op tasks/s
    "post_p99_ms_max": 20.0,
    "accept_p99_ms_max": 200.0,
    "web_rss_mb_max": 120.0,
    "worker_rss_mb_max": 150.0,
}

FCT_ROUTING = [{"step": "FCT", "name": "FCT", "measurements": [
    {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
    {"name": "current_ma", "unit": "mA", "min": 30, "max": 50}]}]
GOOD = {"voltage": 3.31, "current_ma": 41.2}  # the same values post_completion.lua sends


class BenchError(RuntimeError):
    """The harness could not run a step (not a slow result: a broken set-up)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# Every web app measured here (ours and the naive yardstick alike) runs under these settings:
# those of `neurohub up` (WEB_WORKERS=2, WEB_THREADS=4, MALLOC_ARENA_MAX=2), keep-alive included.
GUNICORN_SETTINGS = ("-w", "2", "-k", "gthread", "--threads", "4")
GUNICORN_ENV = {"MALLOC_ARENA_MAX": "2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes

class Proc:
    """A child process in its own session (so its whole group can be stopped), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict, cwd: Path, log_dir: Path):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> "Proc":
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of the group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # e.g. prefork children left behind
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []


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


# --------------------------------------------------------------------------- HTTP helpers

def http_json(base: str, method: str, path: str, token: str | None = None,
              body: dict | None = None, headers: dict | None = None,
              timeout: float = 30) -> tuple[int, dict | None]:
    host, port, _ = loadgen._check_local(base)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, {"raw": raw[:500].decode(errors="replace")}


def wait_http(base: str, path: str, proc: Proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            http_json(base, "GET", path, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"{proc.name} did not answer on {base}{path} within {timeout}s:\n{proc.tail()}")


def expect(status: int, body, want: int, what: str):
    if status != want:
        raise BenchError(f"{what}: HTTP {status} (expected {want}): {body}")
    return body


# --------------------------------------------------------------------------- the run

class Bench:
    """Owns every resource of one run: temp dir, processes, databases, Redis claims."""

    def __init__(self, args):
        self.args = args
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.tag = f"{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="nhbench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.procs: list[Proc] = []
        self.dbs: list[str] = []
        self.redis_dbs: list[int] = []
        self.conns: dict[str, psycopg.Connection] = {}
        self.src = ROOT
        self.results: dict = {"run_id": self.run_id, "targets": TARGETS, "args": vars(args)}
        self.failed = False

    # ---- resources
    def start(self, name: str, argv: list[str], env: dict, cwd: Path | None = None) -> Proc:
        p = Proc(name, argv, env, cwd or self.tmp, self.logs)
        self.procs.append(p)
        return p.start()

    def stop(self, *procs: Proc) -> None:
        for p in procs:
            p.stop()
            if p in self.procs:
                self.procs.remove(p)

    def create_db(self, role: str) -> str:
        name = f"nhbench_{self.tag}_{role}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.dbs.append(name)
        return name

    @staticmethod
    def db_url(name: str, driver: str = "postgresql+psycopg") -> str:
        base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
        return f"{driver}://{base}/{name}"

    def sql(self, dbname: str, query: str, params=None) -> list[tuple]:
        """Run a query on one persistent connection per database (polling must not add a
        backend start-up per poll to the load being measured)."""
        conn = self.conns.get(dbname)
        if conn is None or conn.closed:
            conn = self.conns[dbname] = psycopg.connect(self.db_url(dbname, "postgresql"),
                                                        autocommit=True, connect_timeout=5)
        return conn.execute(query, params).fetchall()

    def claim_redis(self, n: int) -> list[int]:
        for db in REDIS_CANDIDATES:
            if len(self.redis_dbs) == n:
                break
            if db in (0, 13, 14, 15):
                continue
            r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=3)
            if r.dbsize() == 0 and r.set(CLAIM_KEY, self.tag, nx=True, ex=4 * 3600):
                self.redis_dbs.append(db)
            r.close()
        if len(self.redis_dbs) < n:
            raise BenchError(f"could not claim {n} empty Redis databases among {REDIS_CANDIDATES}")
        return self.redis_dbs[-n:]

    def reset_redis(self, db: int) -> None:
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if r.get(CLAIM_KEY) == self.tag.encode():
            r.flushdb()
            r.set(CLAIM_KEY, self.tag, ex=4 * 3600)
        r.close()

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as exc:  # keep going: everything else must still be cleaned up
                log(f"stopping {p.name}: {exc}")
        self.procs.clear()
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:
                pass
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                for name in self.dbs:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:
            log(f"dropping databases {self.dbs}: {exc}")
        for db in self.redis_dbs:
            try:
                r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
                if r.get(CLAIM_KEY) == self.tag.encode():
                    r.flushdb()
                r.close()
            except Exception as exc:
                log(f"flushing Redis db {db}: {exc}")
        if self.failed or self.args.keep_tmp:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- product and yardstick processes
    def prepare_source(self) -> None:
        """--source worktree: measure /work/main as it is; --source REV: a `git archive REV`
        snapshot in the temp dir (read-only for the repo), when others' edits are mid-way."""
        rev = self.args.source
        info: dict = {"source": rev}
        if rev != "worktree":
            dest = self.tmp / "src"
            dest.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                                     capture_output=True, timeout=60)
            if archive.returncode != 0:
                raise BenchError(f"git archive {rev}: {archive.stderr.decode(errors='replace')}")
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True,
                           timeout=60)
            info["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev],
                                            capture_output=True, text=True).stdout.strip()
            self.src = dest
        env = self.product_env("unused", 0)
        check = subprocess.run([sys.executable, "-c", "import web; print(web.__file__)"], env=env,
                               cwd=self.tmp, capture_output=True, text=True, timeout=60)
        info["web_module"] = check.stdout.strip()
        if not info["web_module"].startswith(str(self.src)):
            raise BenchError(f"the product would be imported from {info['web_module']!r}, not "
                             f"{self.src}: {check.stderr[-500:]}")
        self.results["source"] = info

    def copy_yardsticks(self) -> Path:
        dest = self.tmp / "yardsticks"
        dest.mkdir(exist_ok=True)
        sums = {}
        for f in YARDSTICK_FILES:
            src = YARDSTICKS / f
            if not src.exists():
                raise BenchError(f"yardstick {src} not found (set BENCH_YARDSTICKS)")
            shutil.copyfile(src, dest / f)
            sums[f] = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
        self.results["yardsticks"] = {"dir": str(YARDSTICKS), "sha256_16": sums}
        return dest

    def product_env(self, dbname: str, redis_db: int) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("CELERY_BROKER_URL", "RATELIMIT_STORAGE_URI")}
        env.update(DATABASE_URL=self.db_url(dbname), REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
                   SECRET_KEY=SECRET, LOG_LEVEL="WARNING", ACCESS_TOKEN_EXPIRE_MINUTES="600",
                   LOGIN_RATE_LIMIT="1000 per minute", NEUROHUB_ENV="development",
                   NEUROHUB_DATA_DIR=str(self.tmp / "data"), PYTHONUNBUFFERED="1",
                   # the product source measured: the working tree (as tests/support/procs.py
                   # does) or a `git archive` snapshot (--source REV); either shadows the
                   # editable install
                   PYTHONPATH=os.pathsep.join([str(self.src)] + [p for p in os.environ.get(
                       "PYTHONPATH", "").split(os.pathsep) if p]))
        return env

    def cli(self, env: dict, *args: str, timeout: float = 120) -> str:
        r = subprocess.run([sys.executable, "-m", "web.cli", *args], env=env, cwd=self.tmp,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"neurohub {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def gunicorn(self, name: str, app: str, env: dict, cwd: Path | None = None) -> tuple[Proc, str]:
        port = free_port()
        argv = [sys.executable, "-m", "gunicorn", *GUNICORN_SETTINGS, "-b", f"127.0.0.1:{port}"]
        if cwd is not None:
            argv += ["--chdir", str(cwd)]
        proc = self.start(name, argv + [app], {**env, **GUNICORN_ENV}, cwd)
        return proc, f"http://127.0.0.1:{port}"

    def product_instance(self, role: str, redis_db: int) -> dict:
        """A migrated, seeded database with our web app on it, the BENCH product and tokens."""
        dbname = self.create_db(role)
        env = self.product_env(dbname, redis_db)
        self.cli(env, "db", "upgrade")
        self.cli(env, "seed-demo")
        web, base = self.gunicorn(f"web-{role}", "web:create_app()", env)
        wait_http(base, "/healthz", web)
        admin = expect(*http_json(base, "POST", "/api/v1/auth/token",
                                  body={"username": "admin", "password": "admin-demo-pw"}),
                       200, "admin login")["access_token"]
        expect(*http_json(base, "POST", "/api/v1/products", admin,
                          {"code": "BENCH", "name": "bench", "routing": FCT_ROUTING}),
               201, "create product BENCH")
        op = expect(*http_json(base, "POST", "/api/v1/auth/token",
                               body={"username": "operator", "password": "oper-demo-pw"}),
                    200, "operator login")["access_token"]
        return {"db": dbname, "env": env, "web": web, "base": base, "admin": admin, "op": op}

    def create_lot(self, inst: dict, quantity: int) -> str:
        return expect(*http_json(inst["base"], "POST", "/api/v1/lots", inst["admin"],
                                 {"product": "BENCH", "quantity": quantity}),
                      201, "create lot")["lot_no"]


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


def wait_celery(broker: str, proc: Proc, node_prefix: str, timeout: float = 90) -> None:
    from celery import Celery
    app = Celery("bench-ping", broker=broker)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise BenchError(f"{proc.name} exited during start-up:\n{proc.tail()}")
            replies = app.control.ping(timeout=1.0) or []
            if any(name.startswith(node_prefix) for r in replies for name in r):
                return
        raise BenchError(f"{proc.name} did not answer a ping within {timeout}s:\n{proc.tail()}")
    finally:
        app.close()


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


# --------------------------------------------------------------------------- report

def fmt(v, spec=".0f", none="-"):
    return none if v is None else format(v, spec)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def table(res: dict) -> str:
    rows: list[tuple[str, ...]] = [("benchmark", "ours", "yardstick", "ratio / value", "target",
                                    "result")]
    ing = res.get("ingest")
    if ing:
        for i, (o, n) in enumerate(zip(ing["rounds"]["ours"], ing["rounds"]["naive"])):
            rows.append((f"ingest req/s, round {i + 1}", fmt(o["rps"], ".1f"), fmt(n["rps"], ".1f"),
                         fmt(ing["pair_ratios"][i], ".2f") + "x",
                         f"load {o.get('loadavg_before', 0):.1f}/{n.get('loadavg_before', 0):.1f}",
                         "" if o["valid"] and n["valid"] else "INVALID"))
        rows.append(("ingest req/s, median", fmt(ing["median_rps"]["ours"], ".1f"),
                     fmt(ing["median_rps"]["naive"], ".1f"), fmt(ing["ratio"], ".2f") + "x",
                     f">= {TARGETS['ingest_ratio_min']}x",
                     verdict(ing["pass"]) if ing["valid"] else "INVALID"))
        mo = ing["probe"]["ours"]["status_mix"]
        mn = ing["probe"]["naive"]["status_mix"]
        non2 = (sum(r["non_2xx_3xx"] or 0 for r in ing["rounds"]["ours"]),
                sum(r["non_2xx_3xx"] or 0 for r in ing["rounds"]["naive"]))
        rows.append(("ingest status mix (probe)", json.dumps(mo), json.dumps(mn), "", "only 202",
                     verdict(mo is not None and set(mo) == {"202"})))
        rows.append(("ingest non-2xx, all rounds", str(non2[0]), str(non2[1]), "", "0",
                     verdict(non2[0] == 0)))
    pipe = res.get("pipeline")
    if pipe:
        rows.append((f"pipeline {pipe['n']} HTTP->accepted /s", fmt(pipe["completions_per_s"], ".1f"),
                     fmt(pipe["noop_tasks_per_s"], ".0f") + " noop", fmt(pipe["ratio"], ".2f") + "x",
                     f">= {TARGETS['pipeline_ratio_min']}x", verdict(pipe["pass"])))
        rows.append(("  no-op runs (before, after)", "",
                     ", ".join(str(x["tasks_per_s"]) for x in pipe["noop"]), "", "", ""))
        sc = pipe["status_counts"]
        rows.append(("  accepted/rejected/failed/received",
                     "/".join(str(sc.get(k, 0)) for k in ("accepted", "rejected", "failed",
                                                          "received")),
                     "", f"{pipe['end_to_end_seconds']}s", f"{pipe['n']} accepted",
                     verdict(pipe["all_accepted"])))
        rows.append((f"  POST phase req/s ({pipe['conns']} conns)", fmt(pipe["post_rps"], ".1f"), "",
                     f"{pipe['post_seconds']}s", "", ""))
    lat = res.get("latency")
    if lat:
        pm, am = lat["post_ms"], lat["received_to_accepted_ms"]
        rows.append((f"POST ms @{lat['rate']:g}/s p50 / p99", f"{fmt(pm['p50'], '.1f')} / "
                     f"{fmt(pm['p99'], '.1f')}", "", f"max {fmt(pm['max'], '.1f')}",
                     f"p99 < {TARGETS['post_p99_ms_max']:g}", verdict(lat["pass_post"])))
        sm = lat["post_from_schedule_ms"]
        rows.append(("  same, from scheduled send", f"{fmt(sm['p50'], '.1f')} / "
                     f"{fmt(sm['p99'], '.1f')}", "", f"{lat['achieved_rate']}/s achieved", "", ""))
        rows.append(("received->accepted ms p50 / p99", f"{fmt(am['p50'], '.1f')} / "
                     f"{fmt(am['p99'], '.1f')}", "", f"max {fmt(am['max'], '.1f')}",
                     f"p99 < {TARGETS['accept_p99_ms_max']:g}", verdict(lat["pass_accept"])))
    rss = res.get("rss")
    if rss:
        rows.append(("RSS gunicorn web worker MB (max)", fmt(rss["web_max_mb"], ".1f"),
                     fmt(rss.get("naive_max_mb"), ".1f") + " naive", "",
                     f"< {TARGETS['web_rss_mb_max']:g}", verdict(rss["web_pass"])))
        rows.append(("RSS celery pool child MB (max)", fmt(rss["worker_max_mb"], ".1f"), "", "",
                     f"< {TARGETS['worker_rss_mb_max']:g}", verdict(rss["worker_pass"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(res: dict) -> str:
    """A few lines under the table that help read it (where the CPU went, queue build-up)."""
    out = []
    pipe = res.get("pipeline")
    if pipe and pipe.get("cpu_ms_per_completion"):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in pipe["cpu_ms_per_completion"].items())
        out.append(f"pipeline CPU ms per completion: {parts}")
    lat = res.get("latency")
    if lat and lat.get("received_to_accepted_p50_by_second"):
        out.append("latency received->accepted p50 by second (ms): "
                   + " ".join(f"{v:.0f}" for v in lat["received_to_accepted_p50_by_second"]))
    src = res.get("source")
    if src:
        out.append(f"product source: {src.get('source')} {src.get('commit', '')} "
                   f"({src.get('web_module')})".replace("  ", " "))
    return "\n".join(out)


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
                    warm_lot = b.create_lot(inst, 1000)
                    loadgen.post_many(inst["base"] + "/api/v1/completions", inst["op"],
                                      [completion_body(warm_lot)] * 40,
                                      [f"warm-{b.tag}-{i}" for i in range(40)], conns=4)
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
        b.failed = True
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"run aborted: {res['error']}")
        for p in b.procs:
            if p.name.startswith(("worker", "relay", "web")):
                log(f"--- {p.name} log tail ---\n{p.tail(1500)}")
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
