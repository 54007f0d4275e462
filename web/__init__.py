"""NeuroHub MES web application: ``create_app`` is the one factory (``gunicorn 'web:create_app()'``)."""
from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask, g, request

from .config import CONFIG_EXIT_STATUS, ConfigError, load_config

__all__ = ["create_app"]


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Flask app: config, extensions, Celery, blueprints, error handlers, CLI."""
    app = Flask(__name__, static_folder=None)  # web/static/ is served by named routes only
    cfg = _load_config_or_exit(test_config)
    _configure(app, cfg)
    _init_extensions(app, cfg)

    from workers.celery_app import celery_init_app
    celery_init_app(app)

    from .errors import register_error_handlers
    register_error_handlers(app)
    _install_hooks(app)
    _register_blueprints(app)
    from .metrics.install import init_app as init_metrics
    init_metrics(app)  # METRICS_ENABLED: GET /metrics, request hooks, the pool gauge

    from .cli import register_commands
    register_commands(app)
    return app


def _load_config_or_exit(test_config: dict | None) -> dict:
    """Code defaults + environment (+ test overrides); a bad configuration ends the process."""
    try:
        return load_config(overrides=test_config)
    except ConfigError as exc:
        # Every process starts here: one line, no traceback, and a status gunicorn's master
        # reads as "app failed to load". (Under gunicorn, web/gunicorn_conf.py checks the same
        # configuration in the master first, so no worker is ever forked with a bad one.)
        print(exc.code, file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_EXIT_STATUS) from None


def _configure(app: Flask, cfg: dict) -> None:
    """Flask settings, the proxy hops we trust, the database engine options, logging."""
    app.config.update(cfg)
    app.config["MAX_CONTENT_LENGTH"] = cfg["MAX_CONTENT_LENGTH"]
    app.json.sort_keys = False
    if cfg["TRUSTED_PROXY_HOPS"] > 0:
        # The client address (login rate limit, logs) from X-Forwarded-For, only as many hops
        # deep as there are proxies we run: further left, anyone could have written it.
        from werkzeug.middleware.proxy_fix import ProxyFix
        hops = cfg["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(cfg)
    from . import logs
    logs.configure(cfg["LOG_LEVEL"], cfg["LOG_FORMAT"])  # JSON lines with role and request id


def _engine_options(cfg: dict) -> dict:
    """SQLAlchemy engine options: SQLite's (its data directory made) or PostgreSQL's pool."""
    if cfg["EMBEDDED"]:
        Path(cfg["NEUROHUB_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        from . import sqlite
        return sqlite.engine_options(cfg["DATABASE_URL"])
    # pool_pre_ping: a pooled connection that died while idle (PostgreSQL restarted, a
    # proxy or firewall cut it) is replaced at checkout instead of failing one request.
    return {"pool_size": cfg["DB_POOL_SIZE"], "max_overflow": 5, "pool_recycle": 1800,
            "pool_timeout": 10, "pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}


def _init_extensions(app: Flask, cfg: dict) -> None:
    """Bind the database, migrations and rate limiter; SQLite's pragmas. (Sessions: only the
    console has them, scoped to /console: web.console.session.)"""
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
    if cfg["EMBEDDED"]:
        from . import sqlite
        with app.app_context():
            sqlite.install_pragmas(db.engine)


def _install_hooks(app: Flask) -> None:
    """The request id (the station's X-Request-ID when it is a safe one, else a new one; echoed,
    and current for every log line and outbox message of the request) and the body guards."""
    from . import logs

    @app.before_request
    def _request_id():
        g.request_id = logs.valid_request_id(request.headers.get("X-Request-ID"))
        logs.bind_request_id(g.request_id)

    @app.after_request
    def _echo_request_id(resp):
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        return resp

    @app.teardown_request
    def _unbind_request_id(_exc):
        # The thread serves other requests next (gthread): none may log under this one's id.
        logs.bind_request_id(None)

    from .bodies import guard_bodies
    guard_bodies(app)  # body limits per endpoint, chunked bodies, unread rests


def _register_blueprints(app: Flask) -> None:
    """The API, its documentation and the admin console."""
    from .api import register_api
    from .console import init_console
    from .openapi import docs_bp
    init_console(app)  # first: register_api's id-range hook then sees the console's routes too
    register_api(app)
    app.register_blueprint(docs_bp)
