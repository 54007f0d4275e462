"""The console's cookie session: only under /console, with an idle timeout and role checks.

The session holds the user id and the time of the last request; the user is read again on
every request, so a disabled account or a changed role takes effect at once.
"""
from __future__ import annotations

import time
from functools import wraps

from flask import current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from ..auth import Principal
from ..models import ROLE_RANK
from ..services.users import get_active_user


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for /console requests; every other request gets none."""

    def open_session(self, app, request):
        """The console's session; None elsewhere (Flask then gives the null session)."""
        from . import PREFIX
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return None
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        """Write the cookie for console sessions only (the null session is never saved)."""
        if session is None or session.__class__ is not self.session_class:
            return None
        return super().save_session(app, session, response)


def log_in(user) -> None:
    """Start a fresh session for ``user`` (a new cookie: no fixation of a pre-login one)."""
    lang = session.get("lang")
    session.clear()
    g.pop("csrf_token", None)  # a new session, a new token
    session.update(uid=user.id, seen=time.time())
    if lang:
        session["lang"] = lang


def log_out() -> None:
    """End the session, keeping only the language choice."""
    lang = session.get("lang")
    session.clear()
    g.pop("csrf_token", None)
    g.pop("principal", None)
    if lang:
        session["lang"] = lang


def load_principal() -> Principal | None:
    """The logged-in user of this request (g.principal), or None; enforces the idle timeout."""
    uid, seen = session.get("uid"), session.get("seen", 0)
    if uid is None:
        return None
    idle = int(current_app.config["CONSOLE_IDLE_MINUTES"]) * 60
    if time.time() - float(seen) > idle:
        log_out()
        session["expired"] = True  # the login page says why (after the redirect)
        return None
    user = get_active_user(int(uid))
    if user is None:
        log_out()
        return None
    session["seen"] = time.time()
    g.principal = Principal(user.id, user.username, user.role)
    return g.principal


def role_at_least(role: str) -> bool:
    """Whether this request's user holds ``role`` or a higher one."""
    p = g.get("principal")
    return p is not None and ROLE_RANK[p.role] >= ROLE_RANK[role]


def login_required(min_role: str = "operator"):
    """Decorator: a logged-in user with at least ``min_role`` (else login page / 403 page)."""
    def deco(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if g.get("principal") is None:
                return redirect(url_for("console.login", next=request.full_path
                                        if request.method == "GET" else None))
            if not role_at_least(min_role):
                from .blueprint import error_page
                return error_page(403)
            return view(*args, **kwargs)
        wrapper.console_role = min_role
        return wrapper
    return deco
