"""Helpers for the backup tests: production-like rows, scratch PostgreSQL databases, comparisons."""
from __future__ import annotations

import uuid
from contextlib import contextmanager

import psycopg
from psycopg import sql

from tests.conftest import PG_ADMIN, _pg_url

ROUTING = [{"step": "SMT", "name": "SMT assembly"},
           {"step": "FCT", "name": "Functional test", "measurements": [
               {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4}]}]


def populate(app, factory, lots: int = 2, per_lot: int = 3) -> dict:
    """Products, stations, lots with serials and accepted completions (through the services)."""
    from web.services import completions
    from web.services.audit import Actor
    from web.services.completions.processing import process_completion
    uid, name = factory.user("operator")
    product = factory.product(routing=ROUTING)
    smt = factory.station(steps=["SMT"], printer_uri=None)
    made = {"lots": [], "completions": []}
    for _ in range(lots):
        serials = [f"SN-{uuid.uuid4().hex[:10]}" for _ in range(per_lot)]
        lot = factory.lot(product, quantity=per_lot, serials=serials)
        made["lots"].append(lot)
        with app.app_context():
            for serial in serials:
                c = completions.submit({"lot_no": lot, "step": "SMT", "station": smt,
                                        "unit_serial": serial}, uuid.uuid4().hex,
                                       Actor(uid, name))
                assert process_completion(c.id) == "accepted"
                made["completions"].append(c.id)
    return made


def plain(url: str) -> str:
    """A psycopg conninfo URL for a SQLAlchemy URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def scratch_database(prefix: str = "nh_scratch"):
    """An empty PostgreSQL database for one test (dropped afterwards); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


def counts(url: str) -> dict[str, int]:
    """Rows per table of the public schema."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t)))
                .fetchone()[0] for t in tables}


def rows(url: str, table: str, limit: int = 50, where: str = "true") -> list[tuple]:
    """A sample of a table's rows as JSON text (compares exactly), in a stable order."""
    with psycopg.connect(plain(url), autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(
            sql.SQL("SELECT to_jsonb(t)::text FROM {} t WHERE {} ORDER BY 1 LIMIT {}").format(
                sql.Identifier(table), sql.SQL(where), sql.Literal(limit)))]


def databases(prefix: str) -> list[str]:
    """Names of the databases starting with ``prefix``."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))]
