#!/usr/bin/env python3
"""POST /api/v1/completions p50/p99: through nginx (deploy/nginx/neurohub.conf, HTTPS) against
straight to one gunicorn, interleaved in the same run on the same servers (issue #15).

python bench/nginx_p99.py [--posts 400] [--clients 4]. Scratch PostgreSQL database and a Redis
server of its own (free port); two gunicorns as deployed (`-c python:web.gunicorn_conf`), Debian's
nginx in front. Each client alternates: one POST direct, one through nginx, with keep-alive on
both. Prints a table and writes bench/results/nginx_p99.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import percentile  # noqa: E402
from tests.deploy.nginxrun import Nginx  # noqa: E402
from tests.support.live import LiveServer  # noqa: E402
from tests.support.procs import free_port, service_env, stop_all  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench-nginx-password-0123456789"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=400, help="POSTs per path (direct, nginx)")
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nh-nginx-bench-"))
    dbname = f"nh_bench_nginx_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(PG_ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{dbname}"')
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(work)],
                             stdout=subprocess.DEVNULL)
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    env = service_env(DATABASE_URL=f"postgresql+psycopg://{base}/{dbname}",
                      REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                      SECRET_KEY="bench-nginx-secret-key-0123456789-abcdefghij",
                      NEUROHUB_DATA_DIR=str(work / "data"), TRUSTED_PROXY_HOPS=1,
                      LOGIN_RATE_LIMIT="1000 per minute", LOG_LEVEL="WARNING")
    servers, nginx = [], None
    try:
        cli = [sys.executable, "-m", "web.cli"]
        subprocess.run(cli + ["db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(cli + ["create-user", "bench", "--role", "admin", "--password", PASSWORD],
                       env=env, check=True, capture_output=True)
        servers = [LiveServer(env, work).start(), LiveServer(env, work)]
        servers[1].proc.log_path = work / "gunicorn-b.log"
        servers[1].start()
        nginx = Nginx(work / "nginx", [f"127.0.0.1:{s.port}" for s in servers]).start()
        direct = servers[0].url
        r = requests.post(direct + "/api/v1/auth/token", json={"username": "bench",
                                                               "password": PASSWORD}, timeout=10)
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        requests.post(direct + "/api/v1/products", headers=headers, timeout=10, json={
            "code": "NB-1", "name": "bench", "routing": [{"step": "SMT", "name": "SMT"}]})
        requests.post(direct + "/api/v1/stations", headers=headers, timeout=10, json={
            "code": "NB-ST", "name": "bench", "steps": ["SMT"]})
        lots = [requests.post(direct + "/api/v1/lots", headers=headers, timeout=10, json={
            "product": "NB-1", "quantity": 100000}).json()["lot_no"] for _ in range(args.clients)]
        timings = {"direct": [], "nginx": []}
        errors: list = []
        lock = threading.Lock()

        def client(lot: str) -> None:
            sessions = {"direct": (requests.Session(), direct, None),
                        "nginx": (requests.Session(), nginx.url, nginx.cert)}
            for i in range(2 * (args.posts // args.clients) + 2):
                path = ("direct", "nginx")[i % 2]
                s, url, verify = sessions[path]
                body = {"lot_no": lot, "step": "SMT", "station": "NB-ST", "qty_good": 1}
                t0 = time.perf_counter()
                resp = s.post(url + "/api/v1/completions", json=body, timeout=30, verify=verify,
                              headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if resp.status_code != 202:
                        errors.append((path, resp.status_code))
                    elif i >= 2:  # the first of each: connection set-up (TLS handshake)
                        timings[path].append(dt)
        threads = [threading.Thread(target=client, args=(lot,)) for lot in lots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result = {path: {"n": len(v), "p50_ms": round(percentile(v, 50), 2),
                         "p90_ms": round(percentile(v, 90), 2),
                         "p99_ms": round(percentile(v, 99), 2),
                         "max_ms": round(max(v), 2)} for path, v in timings.items()}
        result["errors"] = errors
        result["clients"] = args.clients
        print(f"{'path':8} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for path in ("direct", "nginx"):
            r = result[path]
            print(f"{path:8} {r['n']:5d} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['max_ms']:8.2f}")
        print(f"non-202 answers: {len(errors)}")
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "nginx_p99.json").write_text(json.dumps(result, indent=2) + "\n")
        return 1 if errors else 0
    finally:
        stop_all(*([nginx.proc] if nginx else []), *[s.proc for s in servers])
        redis.terminate()
        redis.wait(10)
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
