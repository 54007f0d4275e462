"""Benchmark harness: settings and targets, child processes, HTTP helpers and the ``Bench`` run."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
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
sys.path.insert(1, str(ROOT))  # the product's process wrapper, from this checkout
from web.procs import ChildProcess  # noqa: E402
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

class Proc(ChildProcess):
    """A child process in its own session (so its whole group can be stopped), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict, cwd: Path, log_dir: Path):
        super().__init__(name, argv, env, cwd=cwd, log_path=log_dir / f"{name}.log")

    def alive(self) -> bool:
        """True while it runs."""
        return self.running()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left of the group (prefork pools)."""
        super().stop(timeout, group=True)

    def tail(self, n: int = 3000) -> str:
        """The end of its log."""
        return self.output(n)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []



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

    def abort(self, res: dict, exc: BaseException, tail: int = 1500,
              only: tuple[str, ...] = ()) -> None:
        """Record a run that ended in ``exc`` in ``res`` and log the processes' last output
        (``only``: the processes whose names start so)."""
        self.failed = True
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"run aborted: {res['error']}")
        for p in self.procs:
            if not only or p.name.startswith(only):
                log(f"--- {p.name} log tail ---\n{p.tail(tail)}")

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
                   LOGIN_RATE_LIMIT="1000 per minute", LOGIN_IP_RATE_LIMIT="1000 per minute",
                   NEUROHUB_ENV="development",
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

    def gunicorn(self, name: str, app: str, env: dict, cwd: Path | None = None,
                 config: str | None = None) -> tuple[Proc, str]:
        port = free_port()
        argv = [sys.executable, "-m", "gunicorn", *GUNICORN_SETTINGS, "-b", f"127.0.0.1:{port}"]
        if config is not None:  # e.g. the product's own hooks, "python:web.gunicorn_conf"
            argv += ["-c", config]
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
