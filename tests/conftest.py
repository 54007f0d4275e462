"""Shared fixtures: a real PostgreSQL database and Redis DB per test session, the app, clients.

Services are never mocked and never skipped: if PostgreSQL or Redis is not reachable the
session fails at set-up with a message that says which one.
"""
from __future__ import annotations

import os
import uuid

import psycopg
import pytest
import redis

from tests.support.factories import Factory

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _pg_url(dbname: str, driver: str = "postgresql+psycopg") -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    return f"{driver}://{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this session, migrated to head, dropped afterwards."""
    name = f"nh_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the tests and is not reachable at {PG_ADMIN}: "
                    f"{exc}", pytrace=False)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    from web import create_app
    from flask_migrate import upgrade
    app = create_app({"DATABASE_URL": url, "REDIS_URL": REDIS_BASE})
    with app.app_context():
        upgrade()
        from web.extensions import db
        db.engine.dispose()
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def redis_url():
    """The Redis database the tests use as broker and rate-limit store (flushed at start)."""
    client = redis.Redis.from_url(REDIS_BASE, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for the tests and is not reachable at {REDIS_BASE}: {exc}",
                    pytrace=False)
    return REDIS_BASE


TEST_CONFIG = {
    "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
    "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    "OUTBOX_REDISPATCH_SECONDS": 2.0,
    "LOGIN_RATE_LIMIT": "1000 per minute",
    "LOGIN_IP_RATE_LIMIT": "1000 per minute",
    "PRINTER_STATUS_TIMEOUT": 1.5,  # short for the offline tests, long enough under load
}


@pytest.fixture(scope="session")
def app(pg_database, redis_url, tmp_path_factory):
    """The Flask app on the session's PostgreSQL database and Redis."""
    from web import create_app
    data = tmp_path_factory.mktemp("data")
    application = create_app(dict(TEST_CONFIG, DATABASE_URL=pg_database, REDIS_URL=redis_url,
                                  NEUROHUB_DATA_DIR=str(data)))
    application.testing = True
    return application


def empty_database(session) -> None:
    """Delete every row of every table but alembic_version, referencing tables first (committed).

    DELETE rather than TRUNCATE: TRUNCATE makes new files for every table and index, about half
    a second a test on this kind of machine; deleting the few rows a test wrote takes a few ms.
    Either way the sequences go on, so ids keep growing.
    """
    from graphlib import CycleError, TopologicalSorter

    from sqlalchemy import text
    tables = session.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                  "AND tablename <> 'alembic_version'")).all()
    order = TopologicalSorter({t: set() for t in tables})
    for child, parent in session.execute(text(
            "SELECT ch.relname, pa.relname FROM pg_constraint c "
            "JOIN pg_class ch ON ch.oid = c.conrelid JOIN pg_class pa ON pa.oid = c.confrelid "
            "JOIN pg_namespace n ON n.oid = ch.relnamespace "
            "WHERE c.contype = 'f' AND n.nspname = 'public'")):
        if child != parent and parent in tables:
            order.add(parent, child)  # the rows that reference a parent go before it
    try:
        ordered = list(order.static_order())
    except CycleError:  # tables that reference each other: TRUNCATE takes them all at once
        session.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        session.commit()
        return
    filled = set(session.scalars(text(" UNION ALL ".join(
        f"SELECT '{t}' WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables))))
    for table in ordered:
        if table in filled:
            session.execute(text(f'DELETE FROM "{table}"'))
    session.commit()


@pytest.fixture()
def db(app):
    """The database, emptied before each test (ids keep growing, so stale messages miss)."""
    from web.extensions import db as _db
    with app.app_context():
        empty_database(_db.session)
        yield _db
        _db.session.rollback()
        _db.session.remove()


@pytest.fixture()
def client(app, db):
    """A test client on an empty database."""
    return app.test_client()


@pytest.fixture()
def factory(app, db):
    """Model factories (users with tokens, products, stations, lots)."""
    return Factory(app)


@pytest.fixture()
def auth(factory):
    """auth("admin") -> Authorization headers for a fresh user of that role."""
    return factory.headers
