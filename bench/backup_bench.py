#!/usr/bin/env python
"""Backup benchmark: a database holding 1,000,000 completions.

Our snapshot (``backups.snapshot_now``: exported snapshot + row counts, ``pg_dump -Fc`` piped
through sha256 into a private temp file, upload to local storage, read back and hashed,
``pg_restore --list``, manifest, Backup row) against bare ``pg_dump -Fc -f file`` — alternated in
the same run, ``--rounds`` times each, medians compared (target: overhead <= 10 %). Then restore
times: ``neurohub restore`` (download + sha256 + one-transaction restore with the row-count
check) against bare ``pg_restore -d`` into a fresh database, and the restore drill.

    python bench/backup_bench.py [--completions 1000000] [--rounds 3]

Rows are generated with ``generate_series`` in a scratch database migrated to head (dropped at
the end); results go to stdout and ``bench/results/backup-<timestamp>.json``.
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
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin(sql: str) -> None:
    import psycopg
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def url_of(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg://{base}/{name}"


def columns(conn, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s ORDER BY ordinal_position", (table,))]


def clone_sql(conn, table: str, template_id: int, overrides: dict[str, str], series: str) -> str:
    cols = [c for c in columns(conn, table) if c != "id"]
    exprs = [overrides.get(c, f"t.{c}") for c in cols]
    return (f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
            f"FROM {table} t, {series} WHERE t.id = {template_id}")


def populate(app, n_completions: int, n_lots: int) -> dict:
    """One lot and one completion made by the services, cloned with generate_series."""
    import psycopg
    from web.cli.demo import DEMO_ROUTING
    from web.extensions import db
    from web.services import completions, lots, products, stations, users
    from web.services.audit import Actor
    from web.services.completions.processing import process_completion
    system = Actor(None, "bench")
    with app.app_context():
        products.create_product("NH-100", "bench product", DEMO_ROUTING, system)
        stations.create_station("ST-01", "SMT", ["SMT"], None, system)
        u = users.create_user("bench-op", "correct-horse-battery", "operator", system)
        lot = lots.create_lot("NH-100", 1000, None, None, system)
        c = completions.submit({"lot_no": lot.lot_no, "step": "SMT", "station": "ST-01",
                                "qty_good": 1}, "bench-template", Actor(u.id, u.username))
        process_completion(c.id)
        lot_id, cid = lot.id, c.id
        db.engine.dispose()
    url = app.config["DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(clone_sql(conn, "lots", lot_id, {"lot_no": "'LOT-BENCH-' || g"},
                               f"generate_series(1, {n_lots - 1}) g"))
        first, last = conn.execute("SELECT min(id), max(id) FROM lots").fetchone()
        span = last - first + 1
        conn.execute(clone_sql(conn, "completions", cid, {
            "idempotency_key": "'bench-' || g",
            "lot_id": f"{first} + (g % {span})",
            "unit_serial": "'SN-' || lpad(g::text, 9, '0')",
            "measurements": "jsonb_build_object('voltage', 3.2 + (g % 20) / 100.0, "
                            "'current_ma', 30 + g % 20)",
            "received_at": "t.received_at - (g || ' seconds')::interval",
        }, f"generate_series(1, {n_completions - 1}) g"))
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                            ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM completions").fetchone()[0]
    return {"completions": rows, "lots": n_lots, "database_size": size,
            "generate_seconds": round(time.monotonic() - started, 1)}


def bare_dump(url: str, out: str) -> float:
    from web.services.backups import pg_params, pg_tool
    argv, env = pg_tool(url, "pg_dump", "--format=custom", "--file", out,
                        dbname=pg_params(url)["dbname"])
    t = time.monotonic()
    subprocess.run(argv, env=env, check=True)
    return time.monotonic() - t


def bare_restore(url: str, dump: str) -> float:
    from web.services.backups import pg_params, pg_tool
    argv, env = pg_tool(url, "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                        "--dbname", pg_params(url)["dbname"], dump)
    t = time.monotonic()
    subprocess.run(argv, env=env, check=True)
    return time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=1_000_000)
    ap.add_argument("--lots", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from flask_migrate import upgrade

    from web import create_app
    from web.extensions import db
    from web.services import backups
    from web.services.backups import restore
    from web.services.audit import Actor

    tag = uuid.uuid4().hex[:8]
    src, dst1, dst2, dst3 = (f"nh_bench_{x}_{tag}" for x in ("src", "ours", "bare", "x"))
    work = Path(tempfile.mkdtemp(prefix="nh-backup-bench-"))
    for name in (src, dst1, dst2):
        admin(f'CREATE DATABASE "{name}"')
    result: dict = {"machine": os.uname().nodename, "cpus": os.cpu_count()}
    try:
        app = create_app({"DATABASE_URL": url_of(src), "NEUROHUB_DATA_DIR": str(work / "var"),
                          "BACKUP_DIR": str(work / "backups"), "BACKUP_TMP_DIR": str(work / "tmp"),
                          "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
                          "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000"})
        with app.app_context():
            upgrade()
            db.engine.dispose()
        print(f"generating {args.completions:,} completions in {args.lots} lots ...", flush=True)
        result["data"] = populate(app, args.completions, args.lots)
        print(f"  {result['data']}", flush=True)
        ours, bare, last = [], [], None
        with app.app_context():
            for i in range(args.rounds):
                order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
                for which in order:
                    if which == "bare":
                        out = str(work / f"bare-{i}.dump")
                        bare.append(bare_dump(url_of(src), out))
                        size = os.path.getsize(out)
                        if i < args.rounds - 1:
                            os.unlink(out)
                        print(f"  round {i + 1}: bare pg_dump -Fc  {bare[-1]:7.2f} s "
                              f"({size / 2**20:.1f} MiB)", flush=True)
                    else:
                        t = time.monotonic()
                        last = backups.snapshot_now(Actor(None, "bench"))
                        ours.append(time.monotonic() - t)
                        assert last.state == "done", last.error
                        print(f"  round {i + 1}: our snapshot      {ours[-1]:7.2f} s "
                              f"({last.size / 2**20:.1f} MiB, verified)", flush=True)
            med_o, med_b = statistics.median(ours), statistics.median(bare)
            result["snapshot"] = {"ours_seconds": [round(x, 2) for x in ours],
                                  "bare_pg_dump_seconds": [round(x, 2) for x in bare],
                                  "ours_median": round(med_o, 2), "bare_median": round(med_b, 2),
                                  "overhead_percent": round(100 * (med_o / med_b - 1), 1),
                                  "dump_bytes": last.size, "rows_counted": sum(
                                      last.row_counts.values())}
            print(f"snapshot: ours {med_o:.2f} s vs bare pg_dump {med_b:.2f} s (median of "
                  f"{args.rounds}): overhead {result['snapshot']['overhead_percent']:+.1f} %",
                  flush=True)
            db.engine.dispose()
            t = time.monotonic()
            report = restore.restore(last.id, url_of(dst1))
            ours_restore = time.monotonic() - t
            bare_r = bare_restore(url_of(dst2), str(work / f"bare-{args.rounds - 1}.dump"))
            t = time.monotonic()
            drilled = restore.drill(last.id)
            drill_s = time.monotonic() - t
            assert drilled.drill_result == "passed", drilled.drill_detail
            result["restore"] = {"neurohub_restore_seconds": round(ours_restore, 2),
                                 "bare_pg_restore_seconds": round(bare_r, 2),
                                 "restore_drill_seconds": round(drill_s, 2),
                                 "rows": report["rows"]}
            print(f"restore: neurohub restore {ours_restore:.2f} s (one transaction + row-count "
                  f"check) vs bare pg_restore {bare_r:.2f} s; restore drill {drill_s:.2f} s",
                  flush=True)
            db.session.remove()
            db.engine.dispose()
    finally:
        for name in (src, dst1, dst2, dst3):
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(work)])
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"backup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
