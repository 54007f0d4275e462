"""One error shape for the whole API: RFC 9457 problem+json, from app-wide handlers.

Endpoints and services raise ``ApiError`` subclasses (``web.problems``: each carries its
status, problem type and title; the services' own errors derive from them), answered by one
handler; library errors (storage, database, label previews, validation) are mapped here too,
and anything else that escapes becomes a 500 problem, so a client never sees an HTML error page.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, g, json, request
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from .problems import (ApiError, BadRequest, Conflict, ContentTooLarge, FieldError, Forbidden,
                       Gone, NotFound, ServiceUnavailable, Unauthorized, Unprocessable,
                       UnsupportedMediaType, field_error)

__all__ = ["PROBLEM", "ApiError", "BadRequest", "Conflict", "ContentTooLarge", "FieldError",
           "Forbidden", "Gone", "NotFound", "ServiceUnavailable", "Unauthorized",
           "Unprocessable", "UnsupportedMediaType", "field_error", "problem", "pydantic_errors",
           "register_error_handlers"]

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, *, errors=None,
            headers=None, type: str = "about:blank", **extra) -> Response:
    """Build an application/problem+json response."""
    body = {"type": type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    body.update(extra)
    rid = getattr(g, "request_id", None)
    if rid:
        body["request_id"] = rid
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def pydantic_errors(exc: ValidationError, location: str = "body") -> list[dict]:
    """Pydantic's errors as [{field, message}] with dotted field paths."""
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or location
        out.append({"field": path, "message": err["msg"], "type": err["type"]})
    return out


def _is_db_unreachable(exc: DBAPIError) -> bool:
    """Connection-level failures mean 'retry later', not 'bad request'."""
    return isinstance(exc, OperationalError) or exc.connection_invalidated


def register_error_handlers(app: Flask) -> None:
    """Install the app-wide handlers that turn every failure into problem+json."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return problem(exc.status, exc.title, exc.detail, errors=exc.errors,
                       headers=exc.headers, type=exc.type, **exc.extra)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        errors = pydantic_errors(exc)
        fields = ", ".join(e["field"] for e in errors)
        return problem(422, "Validation failed", f"invalid fields: {fields}", errors=errors)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return problem(exc.code or 500, exc.name, exc.description, headers=headers)

    from printers import PreviewError

    @app.errorhandler(PreviewError)
    def _preview(exc: PreviewError):  # zplkit cannot draw this label (the ZPL itself is fine)
        return _api_error(field_error("template", f"the label cannot be previewed: {exc}"))

    from storage import InvalidKey, ObjectNotFound, StorageError

    @app.errorhandler(StorageError)
    def _storage(exc: StorageError):
        if isinstance(exc, (ObjectNotFound, InvalidKey)):  # a key that cannot exist: not found
            return problem(404, "Not found", "no such stored file")
        log.warning("storage unavailable on %s %s: %s", request.method, request.path, exc)
        return problem(503, "Service unavailable", "the file storage is unavailable; retry "
                       "later", headers={"Retry-After": "30"}, service="storage")

    @app.errorhandler(DBAPIError)
    def _db(exc: DBAPIError):
        if isinstance(exc, DataError):  # e.g. a NUL character, which PostgreSQL cannot store
            return problem(400, "Bad request", "the request holds a value the database cannot "
                           "store (e.g. a NUL character)")
        if _is_db_unreachable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.path,
                        exc.orig)
            return problem(503, "Service unavailable", "the database is unreachable; retry "
                           "with the same Idempotency-Key", headers={"Retry-After": "5"})
        log.exception("database error")
        return problem(500, "Internal server error", "unexpected database error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "unexpected error; it has been logged")
