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

pytest_plugins = ["tests.support.redis_server"]  # own_redis: a redis-server a test may restart

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


# Redis databases a test session may claim as its own (broker queues, rate limits). Sessions run
# side by side (pytest-xdist workers, several developers on one machine) and must never consume
# each other's tasks. A database is taken only when it is empty or a test session left it; one
# with anybody else's keys (a benchmark's, a yardstick's) is passed over, never flushed. The beat
# test claims its own from ISOLATED_DBS in test_beat_pipeline.py.
SESSION_DBS = (13, 12, 4, 3, 2, 1, 7, 6)
SESSION_CLAIM = "neurohub-test:session-claim"
SESSION_OWNED = b"neurohub-test:session-owned"  # left in a database a test session has used


def _drop_stale_claim(client: redis.Redis) -> None:
    """Release a claim whose session process has ended on this machine (killed, it could not)."""
    claim = client.get(SESSION_CLAIM)
    if claim is None:
        return
    pid = int(claim.split(b"-", 1)[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        client.delete(SESSION_CLAIM)  # a race with another session only costs it this DB
    except PermissionError:
        pass  # alive, another user's


def _claim_redis_db() -> tuple[str, redis.Redis, str]:
    """Claim the first free session DB (TEST_REDIS_URL's own first); empty it; return its URL."""
    base, _, first = REDIS_BASE.rpartition("/")
    candidates = [int(first)] + [n for n in SESSION_DBS if n != int(first)]
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for n in candidates:
        client = redis.Redis.from_url(f"{base}/{n}", socket_connect_timeout=3)
        try:
            _drop_stale_claim(client)
            if not client.set(SESSION_CLAIM, token, nx=True, ex=2 * 3600):
                continue
        except redis.RedisError as exc:
            pytest.fail(f"Redis is required for the tests and is not reachable at {REDIS_BASE}: "
                        f"{exc}", pytrace=False)
        # Kombu's queue bindings are all an idle broker leaves behind: not anybody's data.
        keys = [k for k in client.scan_iter(count=1000) if k != SESSION_CLAIM.encode()]
        if any(not k.startswith(b"_kombu.binding") for k in keys) and SESSION_OWNED not in keys:
            client.delete(SESSION_CLAIM)  # somebody else's data: leave it alone
            continue
        for key in keys:
            client.delete(key)
        client.set(SESSION_OWNED, "1")
        return f"{base}/{n}", client, token
    pytest.fail(f"no Redis database of {candidates} is free for a test session", pytrace=False)


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database of this session's own, as broker and rate-limit store (emptied at start)."""
    url, client, token = _claim_redis_db()
    yield url
    if client.get(SESSION_CLAIM) == token.encode():
        client.flushdb()
        client.set(SESSION_OWNED, "1")


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


# Modules whose tests must run on one xdist worker, in order: they share a module fixture that
# starts something big once (a whole stack), and their last test stops it.
# Modules whose module-scoped fixture starts processes: split across workers, each worker would
# start them again (seconds each).
ONE_WORKER_MODULES = ("tests/test_embedded.py", "tests/test_readme.py",
                      "tests/ops/test_dashboards.py", "tests/pipeline/test_pipeline.py",
                      "tests/stations/test_station_api_client.py", "tests/web/test_bodies_server.py",
                      "tests/console/test_browser_pipeline.py")


def pytest_xdist_make_scheduler(config, log):
    """Tests go out one at a time in collection order, but each module of ONE_WORKER_MODULES as
    one unit. (xdist's own loadgroup does this by a mark, which pytest 9.2's node ids break:
    pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    config.option.loadscopereorder = False  # keep the slow-first order below
    return OneWorkerModules(config, log)


def pytest_collection_modifyitems(items):
    """Tests marked slow (real processes for many seconds) run first: under pytest-xdist the
    quick ones then fill the other worker's time instead of one slow test ending the run late."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept


@pytest.fixture()
def sim():
    """A Zebra simulator on a free port (raw ZPL, ~HS), not rendering PNGs; modules that need
    another kind define their own ``sim``."""
    from printers import PrinterSimulator
    from tests.support.procs import free_port
    # Not port 0: the kernel hands a just-freed ephemeral port out again, and a printer URI an
    # earlier test left jobs pending on would then print them here too (one label too many).
    s = PrinterSimulator(port=free_port(), render=False).start()
    yield s
    s.stop()
