"""The admin console: server-rendered pages under /console on the same services as the API.

It is the only part of the app with a cookie session (scoped to /console, see ``session``) and
with CSRF protection (Flask-WTF, checked by the console's own hook): the API stays bearer-only.
"""
from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
PREFIX = "/console"


def init_console(app: Flask) -> None:
    """Attach the console: its blueprint, cookie session, CSRF, languages and error pages."""
    from . import i18n, session, views
    from .blueprint import bp
    views.load()
    secure = app.config["CONSOLE_SECURE_COOKIE"]
    app.config.update(
        SESSION_COOKIE_NAME="nh_console", SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=(app.config["NEUROHUB_ENV"] == "production"
                               if secure is None else secure),
        # Checked by the console's before_request only (web.console.blueprint), never app-wide:
        # a bearer API call has no session and no CSRF token to send.
        WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    app.session_interface = session.ConsoleSessions()
    csrf.init_app(app)
    i18n.init_app(app)
    app.register_blueprint(bp)
