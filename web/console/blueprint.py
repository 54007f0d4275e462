"""The console blueprint: who is logged in, CSRF on every state change, HTML error pages."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, flash, g, render_template, request
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError
from werkzeug.exceptions import HTTPException

from ..problems import ApiError
from ..services.plant_time import shown
from . import PREFIX, csrf
from .session import load_principal, role_at_least

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates",
               static_folder="static", static_url_path="/static")


@bp.before_request
def _session_and_csrf():
    """Load the user (idle timeout), then refuse a state change without a valid CSRF token."""
    # g outlives the request when an app context was pushed around it (tests, the CLI): the
    # user and the cached token must come from this request's session only.
    for key in ("principal", "csrf_token"):
        g.pop(key, None)
    load_principal()
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "csrf_from_header", False):
        # protect() would read request.form, i.e. the whole (streamed) upload, to look for it
        try:
            validate_csrf(request.headers.get("X-CSRFToken"))
        except ValidationError as exc:
            raise CSRFError(exc.args[0]) from None
    else:
        csrf.protect()  # raises CSRFError, answered 403 below


def csrf_from_header(view):
    """Mark a view whose CSRF token is checked from the X-CSRFToken header only."""
    view.csrf_from_header = True
    return view


@bp.after_request
def _no_store(resp):
    """Pages show who is logged in and live data: no shared or back-button caches."""
    if request.endpoint != "console.static":
        resp.headers.setdefault("Cache-Control", "no-store")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


@bp.app_context_processor
def _template_helpers():
    return {"principal": g.get("principal"), "role_at_least": role_at_least}


def error_page(status: int, detail: str | None = None):
    """An HTML error page for the console (the API answers problem+json instead)."""
    return render_template("console/error.html", status=status, detail=detail), status


@bp.errorhandler(CSRFError)
def _csrf_error(exc: CSRFError):
    """A forged or stale form: 403, never acted on."""
    return error_page(403, exc.description)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    """A service's refusal (unknown lot, wrong state) as a page."""
    return error_page(exc.status, exc.detail)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    """404, 405 ... inside the console as pages."""
    return error_page(exc.code or 500, exc.description)


@bp.app_template_filter("plant_time")
def _plant_time(value) -> str:
    """A stored UTC time as the plant's wall clock with its offset."""
    return shown(value)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    """Anything else: logged with its traceback, a plain 500 page (never the traceback)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_page(500)


@bp.app_template_filter("as_json")
def _as_json(value) -> str:
    """A JSON value as readable text (Hangul as is; autoescaped like any string)."""
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def attempt(change, ok_key: str, refused: tuple = (ApiError,)) -> bool:
    """Run a console change and say how it went: ``ok_key``'s message, or the refusal's own (a
    service's ApiError, or one of ``refused``); a 404 is no refusal but the page's answer."""
    try:
        change()
    except refused as exc:
        if isinstance(exc, ApiError) and exc.status == 404:
            raise
        flash(("error", str(exc)))  # an ApiError's str is its detail (or its title)
        return False
    flash(("ok", ok_key))
    return True
