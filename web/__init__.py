"""NeuroHub MES web application: ``create_app`` is the one factory (``gunicorn 'web:create_app()'``)."""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from flask import Flask, g, request

from .config import load_config

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


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Flask app: config, extensions, Celery, blueprints, error handlers, CLI."""
    app = Flask(__name__)
    cfg = load_config(overrides=test_config)
    app.config.update(cfg)
    app.config["MAX_CONTENT_LENGTH"] = cfg["MAX_CONTENT_LENGTH"]
    app.json.sort_keys = False
    if cfg["EMBEDDED"]:
        Path(cfg["NEUROHUB_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _sqlite_engine_options(cfg["DATABASE_URL"])
    else:
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "pool_size": cfg["DB_POOL_SIZE"], "max_overflow": 5, "pool_recycle": 1800,
            "pool_timeout": 10, "connect_args": {"connect_timeout": 5}}
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

    from .api import register_api
    from .openapi import docs_bp
    register_api(app)
    app.register_blueprint(docs_bp)

    from .cli import register_commands
    register_commands(app)
    return app
