#!/usr/bin/env python3
"""Every read endpoint against a year of history: p50 / p99 per endpoint (target p99 < 100 ms).

    python bench/history.py build                  # once: nhhist_1000000_20000_1 (cached)
    python bench/reads.py --source HEAD            # measure HEAD's code on it
    python bench/reads.py --completions 20000 --lots 400 --requests 40   # a small smoke run

The database is the one ``bench/history.py`` builds with the same size arguments; its schema is
moved to the measured source's migration head first (``neurohub db upgrade``, or ``db
downgrade`` by this tree's migrations when the database is ahead of an older source). One
gunicorn with the settings of ``neurohub up`` (``harness.GUNICORN_SETTINGS`` and the product's
``-c python:web.gunicorn_conf``) serves it; one keep-alive client sends the requests one at a
time, the endpoints taking turns in ``--rounds`` rounds (so a burst of someone else's load
spreads over all of them). Ids, lot numbers and cursors are spread over the whole history
(oldest to newest) and cycled. Beside the latencies:
the CPU each request cost (web workers plus their PostgreSQL backends, from /proc). On a shared
machine the latency is that CPU stretched by everybody else's load; the CPU is not.

Yardstick in the same run (``../shared/bench/README.md``: the Flask "hello" JSON view under the
same gunicorn, the HTTP ceiling): a one-line Flask JSON view, measured the same way, is the
floor any endpoint's latency stands on.

``--explain`` adds EXPLAIN ANALYZE figures of every SELECT of every endpoint (rows scanned,
buffers, sequential scans of history tables; ``bench/read_plans.py``), ``--explain-only`` gives
only those.

Every GET path of the OpenAPI document is measured or listed in ``NOT_MEASURED`` with the
reason; a new GET route that is neither stops the run. Results: a table, and
``bench/results/reads-<time>.json``.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import history  # noqa: E402
import measure as instruments  # noqa: E402
import read_plans  # noqa: E402
from harness import Bench, BenchError, expect, http_json, log, wait_http  # noqa: E402

TARGET_P99_MS = 100.0
LOGIN = {"username": "admin", "password": "admin-demo-pw"}  # seed-demo's admin
HELLO_APP = '''from flask import Flask
app = Flask(__name__)


@app.get("/hello")
def hello():
    return {"hello": "world"}
'''
# GET paths of the spec that are not measured, and why.
NOT_MEASURED = {
    "/api/v1/files/{key}": "firmware bytes from storage, not from the database",
    "/api/v1/firmware/{firmware_id}/download": "firmware bytes from storage (or a redirect)",
    "/api/v1/stations/{code}/labels/next": "not a read: hands the next job out (marks it sent)",
    "/api/v1/backups/{backup_id}": "the history database has no backups",
}


def cursor(last_id: int) -> str:
    """The API's cursor format (web/services/plumbing.py)."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def spread(rows: list, n: int = 40) -> list:
    """n values taken evenly from oldest to newest."""
    if not rows:
        return []
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def endpoints(bench: Bench, db: str) -> list[tuple[str, str, list[str]]]:
    """(name, spec path, concrete paths cycled through) for every measured endpoint."""
    q = lambda sql: [r[0] for r in bench.sql(db, sql)]  # noqa: E731
    big = q("SELECT l.lot_no FROM lots l WHERE l.id = (SELECT lot_id FROM completions "
            "GROUP BY lot_id ORDER BY count(*) DESC LIMIT 1)")[0]
    max_lot = q("SELECT max(id) FROM lots")[0]
    lots = spread(q("SELECT lot_no FROM lots WHERE id % 97 = 0 ORDER BY id"))
    max_c = q("SELECT max(id) FROM completions")[0]
    comps = [max_c * k // 40 + 1 for k in range(40)]
    max_j = q("SELECT max(id) FROM label_jobs")[0]
    wanted = ",".join(str(max_j * k // 40 + 1) for k in range(40))
    jobs = q(f"SELECT id FROM label_jobs WHERE id IN ({wanted})")
    fw = q("SELECT id FROM firmware ORDER BY id")
    printer = q("SELECT printer_uri FROM label_jobs WHERE id = (SELECT max(id) FROM label_jobs)")[0]
    flash = q("SELECT code FROM stations WHERE steps::text LIKE '%FLASH%' ORDER BY id LIMIT 1")[0]
    mid_lots = [cursor(max_lot * k // 10 + 1) for k in range(1, 10)]
    mid_jobs = [cursor(max_j * k // 10 + 1) for k in range(1, 10)]
    enc = lambda s: s.replace(":", "%3A").replace("/", "%2F")  # noqa: E731
    L, J = "/api/v1/lots", "/api/v1/labels/jobs"
    return [
        ("lots: newest page", L, [L]),
        ("lots: cursor deep in history", L, [f"{L}?cursor={c}" for c in mid_lots]),
        ("lots: status=completed", L, [f"{L}?status=completed&cursor={c}" for c in mid_lots]),
        ("lots: product=NH-300", L, [f"{L}?product=NH-300&cursor={c}" for c in mid_lots]),
        ("lots: product+status", L, [f"{L}?product=NH-200&status=completed"]),
        ("lots: step=FCT", L, [f"{L}?step=FCT", f"{L}?step=PACK&status=in_process"]),
        ("lots: status=on_hold (rare)", L, [f"{L}?status=on_hold", f"{L}?status=scrapped"]),
        ("lot detail (spread)", L + "/{lot_no}", [f"{L}/{n}" for n in lots]),
        ("lot detail: biggest lot", L + "/{lot_no}", [f"{L}/{big}"]),
        ("DHR JSON: biggest lot", L + "/{lot_no}/dhr", [f"{L}/{big}/dhr"]),
        ("DHR CSV: biggest lot", L + "/{lot_no}/dhr", [f"{L}/{big}/dhr?format=csv"]),
        ("DHR JSON (spread)", L + "/{lot_no}/dhr", [f"{L}/{n}/dhr" for n in lots]),
        ("completion by id", "/api/v1/completions/{completion_id}",
         [f"/api/v1/completions/{c}" for c in comps]),
        ("label jobs: newest page", J, [J]),
        ("label jobs: cursor deep", J, [f"{J}?cursor={c}" for c in mid_jobs]),
        ("label jobs: state=printed", J, [f"{J}?state=printed&cursor={c}" for c in mid_jobs]),
        ("label jobs: state=queued", J, [f"{J}?state=queued", f"{J}?state=failed"]),
        ("label jobs: printer", J, [f"{J}?printer={enc(printer)}&cursor={c}" for c in mid_jobs]),
        ("label jobs: lot_no (biggest)", J, [f"{J}?lot_no={big}"]),
        ("label jobs: lot_no (spread)", J, [f"{J}?lot_no={n}" for n in lots]),
        ("label job by id", J + "/{job_id}", [f"{J}/{j}" for j in jobs]),
        ("label job preview.png", J + "/{job_id}/preview.png",
         [f"{J}/{j}/preview.png" for j in jobs[:5]]),
        ("label templates", "/api/v1/labels/templates", ["/api/v1/labels/templates"]),
        ("label font", "/api/v1/labels/font", ["/api/v1/labels/font"]),
        ("firmware list", "/api/v1/firmware", ["/api/v1/firmware"]),
        ("firmware by id", "/api/v1/firmware/{firmware_id}", [f"/api/v1/firmware/{i}" for i in fw]),
        ("station firmware", "/api/v1/stations/{code}/firmware",
         [f"/api/v1/stations/{flash}/firmware"]),
        ("stations", "/api/v1/stations", ["/api/v1/stations"]),
        ("products", "/api/v1/products", ["/api/v1/products"]),
        ("product by code", "/api/v1/products/{code}", ["/api/v1/products/NH-300"]),
        ("backups", "/api/v1/backups", ["/api/v1/backups"]),
        ("healthz", "/healthz", ["/healthz"]),
        ("readyz", "/readyz", ["/readyz"]),
        # Prometheus scrapes it every 15 s: the state it reads (label jobs by state, the
        # outbox, firmware assignments) must stay cheap with a year of history.
        ("metrics (a scrape)", "/metrics", ["/metrics"]),
    ]


def check_coverage(base: str, measured: set[str]) -> list[str]:
    """Every GET path of the spec is measured or explained; returns the spec's GET paths."""
    spec = expect(*http_json(base, "GET", "/api/v1/openapi.json"), 200, "openapi.json")
    gets = sorted(p for p, ops in spec["paths"].items() if "get" in ops)
    missing = [p for p in gets if p not in measured and p not in NOT_MEASURED]
    if missing:
        raise BenchError(f"GET paths neither measured nor in NOT_MEASURED: {missing}")
    return gets


class Client:
    """One keep-alive connection; times each GET (send -> body read) in milliseconds."""

    def __init__(self, base: str, token: str | None):
        host, port, _ = harness.loadgen._check_local(base)
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> tuple[int, float, int]:
        t = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, (time.perf_counter() - t) * 1000, len(body)

    def close(self) -> None:
        self.conn.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_probe(bench: Bench, web, db: str):
    """CPU seconds so far of the web server's processes and of the PostgreSQL backends on ``db``
    (what a request costs the machine, however busy it is: latency on a busy machine is that
    CPU stretched by everybody else's)."""
    def total() -> float:
        return (instruments.cpu_seconds(web.tree())
                + sum(instruments.backend_cpu(bench, db).values()))
    return total


def measure(client: Client, plan: list[tuple[str, str, list[str]]], requests: int,
            rounds: int, cpu=None) -> dict:
    times = {name: [] for name, _, _ in plan}
    cpu_used = {name: 0.0 for name, _, _ in plan}
    sizes, bad = {}, {}
    for name, _, paths in plan:  # warm-up: each path once (imports, plans, caches)
        for p in paths[:10]:
            client.get(p)
    per_round = max(1, requests // rounds)
    for r in range(rounds):
        for name, _, paths in plan:
            before = cpu() if cpu else 0.0
            for i in range(per_round):
                status, ms, size = client.get(paths[(r * per_round + i) % len(paths)])
                if status != 200:
                    bad.setdefault(name, []).append(status)
                times[name].append(ms)
                sizes[name] = size
            cpu_used[name] += (cpu() - before) if cpu else 0.0
        log(f"round {r + 1}/{rounds} done")
    out = {}
    for name, xs in times.items():
        out[name] = {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs),
                     "mean": statistics.fmean(xs), "bytes": sizes.get(name),
                     "cpu_ms_per_request": cpu_used[name] * 1000 / len(xs) if cpu else None,
                     "non_200": bad.get(name, [])[:5]}
    return out


def align_schema(bench: Bench, db: str) -> str:
    """Move the database to the measured source's migration head; returns that head."""
    versions = bench.src / "web" / "migrations" / "versions"
    revs, downs = set(), set()
    for f in versions.glob("*.py"):
        for line in f.read_text().splitlines():
            if line.startswith("revision = "):
                revs.add(line.split("=", 1)[1].strip().strip("'\""))
            if line.startswith("down_revision = "):
                downs.add(line.split("=", 1)[1].strip().strip("'\""))
    head, = revs - downs
    current = bench.sql(db, "SELECT version_num FROM alembic_version")[0][0]
    env = bench.product_env(db, 0)
    if current not in revs:  # ahead of this source: go back with the tree that knows the way
        env_here = dict(env, PYTHONPATH=str(harness.ROOT))
        bench.cli(env_here, "db", "downgrade", head, timeout=1800)
    else:
        bench.cli(env, "db", "upgrade", timeout=1800)
    with harness.psycopg.connect(bench.db_url(db, "postgresql"), autocommit=True) as conn:
        conn.execute("ANALYZE")  # statistics for the indexes a migration just made
    return head


def serve_history(bench: Bench, db: str):
    """The history database at the measured source's head, served by one gunicorn as `neurohub
    up` runs it, beside the yardstick (Flask hello under the same gunicorn); returns (schema
    head, product env, (web proc, its URL), (hello proc, its URL))."""
    if not bench.sql("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (db,)):
        raise BenchError(f"no database {db}: run bench/history.py build with the same sizes")
    bench.prepare_source()
    head = align_schema(bench, db)
    redis_db, = bench.claim_redis(1)
    env = bench.product_env(db, redis_db)
    web, base = bench.gunicorn("web", "web:create_app()", env,
                               config="python:web.gunicorn_conf")
    (bench.tmp / "hello_app.py").write_text(HELLO_APP)
    hello, hello_base = bench.gunicorn("hello", "hello_app:app", env, cwd=bench.tmp)
    wait_http(base, "/healthz", web)
    wait_http(hello_base, "/hello", hello)
    return head, env, (web, base), (hello, hello_base)


def table(res: dict, rows_key: str = "endpoints", first: str = "endpoint",
          target=lambda name: TARGET_P99_MS) -> str:
    """The results as a text table, the yardstick first; ``target(name)`` is a row's p99 bound
    (bench/console_reads.py passes its per-page ones)."""
    rows = [(first, "p50 ms", "p99 ms", "max ms", "CPU ms/req", "bytes", "target", "result")]
    cpu = lambda r: "-" if r.get("cpu_ms_per_request") is None else \
        f"{r['cpu_ms_per_request']:.1f}"  # noqa: E731
    hello = res["hello"]
    rows.append(("yardstick: Flask hello JSON", f"{hello['p50']:.1f}", f"{hello['p99']:.1f}",
                 f"{hello['max']:.1f}", cpu(hello), str(hello["bytes"]), "", ""))
    for name, r in res[rows_key].items():
        ok = r["p99"] < target(name) and not r["non_200"]
        rows.append((name, f"{r['p50']:.1f}", f"{r['p99']:.1f}", f"{r['max']:.1f}", cpu(r),
                     str(r["bytes"]), f"p99 < {target(name):.0f}",
                     ("PASS" if ok else "FAIL") + (f" {r['non_200']}" if r["non_200"] else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    history.add_args(p)
    p.add_argument("--source", default="worktree", help="worktree, or a git revision")
    p.add_argument("--requests", type=int, default=200, help="per endpoint")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--keep-tmp", action="store_true")
    p.add_argument("--explain", action="store_true",
                   help="also EXPLAIN ANALYZE every SELECT of every endpoint (bench/read_plans.py)")
    p.add_argument("--explain-only", action="store_true", help="only that, no latencies")
    args = p.parse_args()
    db = history.db_name(args)
    bench = Bench(args)
    try:
        head, env, (web, base), (hello, hello_base) = serve_history(bench, db)
        token = expect(*http_json(base, "POST", "/api/v1/auth/token", body=LOGIN), 200,
                       "login")["access_token"]
        plan = endpoints(bench, db)
        gets = check_coverage(base, {spec for _, spec, _ in plan})
        plans = None
        if args.explain or args.explain_only:
            plans = read_plans.explain_all(bench.src, env, LOGIN, plan)
            print(read_plans.table(plans))
            if args.explain_only:
                return 0 if not any(f["seq_scans"] for f in plans.values()) else 1
        log(f"{len(plan)} endpoints ({len(gets)} GET paths in the spec), "
            f"{args.requests} requests each, database {db} at {head}")
        hc = Client(hello_base, None)
        hello_cpu = lambda: instruments.cpu_seconds(hello.tree())  # noqa: E731
        hello_res = measure(hc, [("hello", "/hello", ["/hello"])], args.requests, 1,
                            hello_cpu)["hello"]
        client = Client(base, token)
        res = measure(client, plan, args.requests, args.rounds, cpu_probe(bench, web, db))
        hc2 = Client(hello_base, None)  # the yardstick again after: how busy was the machine
        hello_after = measure(hc2, [("hello", "/hello", ["/hello"])], args.requests, 1)["hello"]
        for c in (hc, client, hc2):
            c.close()
        counts = dict(bench.sql(db, "SELECT relname, n_live_tup FROM pg_stat_user_tables "
                                    "WHERE relname = ANY(%s)", (list(history.BIG_TABLES),)))
        out = {"database": db, "schema": head, "rows": counts, "source": bench.results["source"],
               "args": vars(args), "hello": hello_res, "hello_after": hello_after,
               "endpoints": res, "not_measured": NOT_MEASURED, "plans": plans,
               "loadavg": list(__import__("os").getloadavg())}
        print(table(out))
        print(f"yardstick after the run: hello p50 {hello_after['p50']:.1f} ms, "
              f"p99 {hello_after['p99']:.1f} ms; load average {out['loadavg'][0]:.1f}")
        results = harness.BENCH / "results"
        results.mkdir(exist_ok=True)
        path = results / f"reads-{bench.run_id}.json"
        path.write_text(json.dumps(out, indent=1, default=str))
        log(f"results: {path}")
        return 0 if all(r["p99"] < TARGET_P99_MS and not r["non_200"]
                        for r in res.values()) else 1
    except BenchError as exc:
        bench.failed = True
        log(f"ERROR: {exc}")
        return 2
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
