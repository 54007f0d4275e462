#!/usr/bin/env python3
"""A year of production history in a PostgreSQL database, with the rows the real code writes.

    python bench/history.py build                      # 1,000,000 completions over 20,000 lots
    python bench/history.py build --completions 20000 --lots 400   # a small one
    python bench/history.py drop  --completions 20000 --lots 400

The database (``nhhist_<completions>_<lots>_<seed>``) is migrated and seeded by the product
(``neurohub db upgrade``, ``neurohub seed-demo``, then two more products and their stations
through the services), then filled with COPY: lots (serialised and batch) of 3 products with
4-6 steps, each unit or batch completed at each step, ~3 % rejects (out of spec -> hold ->
release, or a wrong or repeated step), label jobs where a step names a template (the ZPL the
template renders), and every audit row the web, the worker and the printer write on the way
(``completion.received`` / ``accepted`` / ``rejected``, ``lot.*``, ``label.queued`` / ``sent``
/ ``printed``). One lot, the biggest, has ``--big-units`` units. Secondary indexes are dropped
for the load and rebuilt from their own definitions, then ``VACUUM ANALYZE``.

Cached: a finished build writes its parameters as the database's comment; ``build`` does
nothing when a database of that name is already complete (``--force`` rebuilds it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-key-not-for-production-0123456789abcdef"
BIG_TABLES = ("lots", "lot_units", "completions", "label_jobs", "audit_events")

from history_rows import OPERATORS, PRODUCTS, STATIONS, STEPS, Gen, Out, log  # noqa: E402


def db_name(a) -> str:
    return f"nhhist_{a.completions}_{a.lots}_{a.seed}"


def db_url(name: str, driver: str = "postgresql") -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    return f"{driver}://{base}/{name}"


def product_env(name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL",)}
    env.update(DATABASE_URL=db_url(name, "postgresql+psycopg"), SECRET_KEY=SECRET,
               NEUROHUB_ENV="development", LOG_LEVEL="WARNING",
               REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
                   "PYTHONPATH", "").split(os.pathsep) if p]))
    return env


def seed_reference(name: str) -> dict:
    """seed-demo plus products NH-200/NH-300, their stations and operators; returns the ids."""
    env = product_env(name)
    for args in (["db", "upgrade"], ["seed-demo"]):
        r = subprocess.run([sys.executable, "-m", "web.cli", *args], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise SystemExit(f"neurohub {' '.join(args)}: {r.stdout}\n{r.stderr}")
    from web import create_app
    from web.extensions import db
    from web.models import Firmware, Product, RoutingStep, Station, User
    from web.services.labels import templates as tpl
    from web.services import products, stations, users
    from web.services.audit import CLI
    app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
                      "SECRET_KEY": SECRET})
    with app.app_context():
        printer = db.session.scalar(db.select(Station.printer_uri).where(Station.code == "ST-07"))
        for code, (pname, steps) in PRODUCTS.items():
            products.create_product(code, pname, [
                {"step": s, "name": STEPS[s][0], "measurements": STEPS[s][1],
                 "requires_firmware": STEPS[s][2], "label_template": STEPS[s][3]}
                for s in steps], CLI)
        for code, sname, steps in STATIONS:
            stations.create_station(code, sname, steps, printer, CLI)
        for op in OPERATORS:
            users.create_user(op, "oper-bench-pw", "operator", CLI)
        nh300 = db.session.scalar(db.select(Product).where(Product.code == "NH-300"))
        db.session.add(Firmware(product_id=nh300.id, version="3.0.0", storage_key="bench/nh300",
                                filename="nh300.bin", sha256="3" * 64, size=262144,
                                state="released", created_by="system:cli"))
        db.session.commit()
        tpl.sync_builtin_templates()
        ref = {"printer": printer, "products": {}, "stations": {}, "firmware": {}, "zpl": {},
               "users": {u.username: u.id for u in db.session.scalars(db.select(User))}}
        for p in db.session.scalars(db.select(Product)):
            rev = p.revisions[-1]
            ref["products"][p.code] = {"id": p.id, "name": p.name, "revision_id": rev.id,
                                       "steps": [(s.seq, s.code, s.measurements,
                                                  s.requires_firmware, s.label_template)
                                                 for s in rev.steps]}
        for st in db.session.scalars(db.select(Station).order_by(Station.id)):
            for s in st.steps:
                ref["stations"].setdefault(s, []).append((st.id, st.code))
        for fw in db.session.scalars(db.select(Firmware)):
            ref["firmware"][fw.product_id] = (fw.id, fw.version, fw.sha256)
        for t in ("unit", "box", "lot"):  # rendered once; lots and serials are put in by text
            data = {"product_code": "PCODE", "product_name": "PNAME", "lot_no": "LOTNUMBER",
                    "date": "2026-01-01", "serial": "SERIALNO", "quantity": 1234567,
                    "routing": "ROUTING"}
            template = tpl.get_template(t)
            declared = {v["name"] for v in template.variables}
            ref["zpl"][t] = (template.version, tpl.render(
                template, {k: v for k, v in data.items() if k in declared}).decode("ascii"))
        assert db.session.scalar(db.select(RoutingStep.id).limit(1)) is not None
        db.engine.dispose()
    return ref


def build(a) -> None:
    name = db_name(a)
    want = json.dumps({"completions": a.completions, "lots": a.lots, "seed": a.seed,
                       "big_units": a.big_units, "batch_parts": a.batch_parts, "wip": a.wip})
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        row = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            "WHERE datname = %s", (name,)).fetchone()
        if row and row[0] == want and not a.force:
            log(f"{name} is already built ({want}); --force rebuilds it")
            return
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    t0 = time.monotonic()
    log(f"{name}: migrate and seed")
    ref = seed_reference(name)
    with psycopg.connect(db_url(name)) as conn, tempfile.TemporaryDirectory(
            prefix="nhhist-") as tmp:
        start = {t: conn.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0]
                 for t in BIG_TABLES}
        out = Out(Path(tmp))
        log(f"generating {a.lots:,} lots")
        Gen(a, ref, out, start).run()
        log(f"generated in {time.monotonic() - t0:.0f}s; dropping secondary indexes, loading")
        defs = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = ANY(%s) AND NOT "
            "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            (list(BIG_TABLES),)).fetchall()
        for idx, _ in defs:
            conn.execute(f'DROP INDEX "{idx}"')
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        out.load(conn, ["lots", "lot_sequences", "lot_units", "completions", "label_jobs",
                        "audit_events"])
        t = time.monotonic()
        conn.execute("SET maintenance_work_mem = '256MB'")
        for idx, ddl in defs:
            conn.execute(ddl)
        for table in BIG_TABLES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
        conn.commit()
        log(f"indexes rebuilt in {time.monotonic() - t:.0f}s")
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{want}'")
    log(f"{name} built in {time.monotonic() - t0:.0f}s")


def drop(a) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name(a)}" WITH (FORCE)')
    log(f"dropped {db_name(a)}")


def add_args(p: argparse.ArgumentParser) -> None:
    """The history's size (shared with bench/reads.py, which names the database the same way)."""
    p.add_argument("--completions", type=int, default=1_000_000, help="about this many")
    p.add_argument("--lots", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--big-units", type=int, default=320,
                   help="units of the biggest lot (NH-100: 2 per-unit steps + 2 lot steps)")
    p.add_argument("--batch-parts", type=int, default=4, help="completions per step, batch lots")
    p.add_argument("--wip", type=int, default=8,
                   help="lots in process at once: their rows interleave in the tables")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["build", "drop"])
    add_args(p)
    p.add_argument("--force", action="store_true")
    a = p.parse_args()
    build(a) if a.command == "build" else drop(a)


if __name__ == "__main__":
    main()
