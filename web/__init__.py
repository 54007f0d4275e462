"""NeuroHub MES web application: ``create_app`` is the one factory (``gunicorn 'web:create_app()'``)."""
from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

from flask import Flask, g, request
from flask.sessions import SessionInterface

from .config import CONFIG_EXIT_STATUS, ConfigError, load_config

__all__ = ["create_app"]


def _sqlite_engine_options(url: str) -> dict:
    return {"connect_args": {"timeout": 30, "check_same_thread": False}}


def _install_sqlite_pragmas(engine) -> None:
    """WAL + busy timeout, and BEGIN IMMEDIATE so concurrent writers queue instead of failing."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (pysqlite recipe)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        if conn.get_isolation_level() != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class _NoSessions(SessionInterface):
    """Every request gets Flask's null session; nothing is read from or written to cookies."""

    def open_session(self, app, request):
        return None  # Flask falls back to make_null_session()

    def save_session(self, app, session, response):
        return None


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Flask app: config, extensions, Celery, blueprints, error handlers, CLI."""
    app = Flask(__name__, static_folder=None)  # web/static/ is served by named routes only
    try:
        cfg = load_config(overrides=test_config)
    except ConfigError as exc:
        # Every process starts here: one line, no traceback, and a status gunicorn's master
        # reads as "app failed to load". (Under gunicorn, web/gunicorn_conf.py checks the same
        # configuration in the master first, so no worker is ever forked with a bad one.)
        print(exc.code, file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_EXIT_STATUS) from None
    app.config.update(cfg)
    app.config["MAX_CONTENT_LENGTH"] = cfg["MAX_CONTENT_LENGTH"]
    app.json.sort_keys = False
    if cfg["TRUSTED_PROXY_HOPS"] > 0:
        # The client address (login rate limit, logs) from X-Forwarded-For, only as many hops
        # deep as there are proxies we run: further left, anyone could have written it.
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = cfg["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    if cfg["EMBEDDED"]:
        Path(cfg["NEUROHUB_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _sqlite_engine_options(cfg["DATABASE_URL"])
    else:
        # pool_pre_ping: a pooled connection that died while idle (PostgreSQL restarted, a
        # proxy or firewall cut it) is replaced at checkout instead of failing one request.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_size": cfg["DB_POOL_SIZE"], "max_overflow": 5, "pool_recycle": 1800,
            "pool_timeout": 10, "pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # plugin chatter on every start

    from .extensions import db, limiter, migrate
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"),
                     render_as_batch=True, compare_type=True)
    app.config["RATELIMIT_STORAGE_URI"] = cfg["RATELIMIT_STORAGE_URI"]
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    # Only decorated views are limited (login), and their decorator checks them itself; the
    # app-wide hook would evaluate default limits we do not have on every request.
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)
    # The API is stateless (bearer tokens): no signed-cookie session to load on every request.
    app.session_interface = _NoSessions()
    if cfg["EMBEDDED"]:
        with app.app_context():
            _install_sqlite_pragmas(db.engine)

    from workers.celery_app import celery_init_app
    celery_init_app(app)

    from .errors import register_error_handlers
    register_error_handlers(app)

    @app.before_request
    def _request_id():
        rid = request.headers.get("X-Request-ID", "")
        g.request_id = rid[:64] if rid else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(resp):
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        return resp

    from .bodies import guard_bodies
    guard_bodies(app)  # body limits per endpoint, chunked bodies, unread rests

    from .api import register_api
    from .openapi import docs_bp
    register_api(app)
    app.register_blueprint(docs_bp)

    from .cli import register_commands
    register_commands(app)
    return app
