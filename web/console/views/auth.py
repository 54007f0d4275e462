"""Console login, logout and the language switch."""
from __future__ import annotations

from flask import current_app, g, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address

from ...extensions import limiter
from ...services.users import check_credentials, normalize_username
from ..blueprint import bp
from ..i18n import LANGUAGES
from ..session import log_in, log_out


def _account_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _address_limit() -> str:
    return current_app.config["LOGIN_IP_RATE_LIMIT"]


def _username_key() -> str:
    """Guesses per account (the API's LOGIN_RATE_LIMIT, counted for the console's form)."""
    return f"user:{normalize_username(request.form.get('username', ''))[:64]}"


def _address_key() -> str:
    return f"ip:{get_remote_address()}"


def _safe_next(target: str | None) -> str:
    """Only a console path is followed after login (no open redirect to another site)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return url_for("console.overview")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_address_limit, key_func=_address_key, methods=["POST"])
@limiter.limit(_account_limit, key_func=_username_key, methods=["POST"])
def login():
    """The login form; on POST check the password as the API does and start a session."""
    if request.method == "GET":
        if g.get("principal") is not None:
            return redirect(url_for("console.overview"))
        return render_template("console/login.html", expired=session.pop("expired", False),
                               next=request.args.get("next"))
    user = check_credentials(normalize_username(request.form.get("username", "")),
                             request.form.get("password", ""))
    if user is None:
        return render_template("console/login.html", failed=True,
                               next=request.form.get("next")), 401
    log_in(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    """End the session."""
    log_out()
    return redirect(url_for("console.login"))


@bp.post("/lang")
def language():
    """Switch the console's language (kept in the session, also before login)."""
    lang = request.form.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(_safe_next(request.form.get("next")))
