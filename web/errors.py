"""One error shape for the whole API: RFC 9457 problem+json, from app-wide handlers.

Domain code raises ``ApiError`` subclasses that carry their HTTP status; anything else that
escapes is turned into a problem document too, so a client never sees an HTML error page.
"""
from __future__ import annotations

import logging

from flask import Flask, Response, g, json, request
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class ApiError(Exception):
    """An error with an HTTP status, a title and optional field errors."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, errors: list[dict] | None = None,
                 headers: dict | None = None, **extra):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    """Malformed request (not JSON, missing header)."""


class Unauthorized(ApiError):
    """Missing, expired or tampered credentials."""

    status, title = 401, "Unauthorized"


class Forbidden(ApiError):
    """Authenticated, but the role may not do this."""

    status, title = 403, "Forbidden"


class NotFound(ApiError):
    """The named resource does not exist."""

    status, title = 404, "Not found"


class Conflict(ApiError):
    """The request conflicts with the current state (duplicate code, in-flight retry)."""

    status, title = 409, "Conflict"


class Unprocessable(ApiError):
    """Well-formed but semantically wrong (unknown codes, bad values)."""

    status, title = 422, "Unprocessable content"


class ContentTooLarge(ApiError):
    """The request body is larger than the endpoint takes."""

    status, title = 413, "Content too large"


class ServiceUnavailable(ApiError):
    """A backing service (database, broker) is unreachable; retry later with the same key."""

    status, title = 503, "Service unavailable"


def field_error(field: str, message: str, cls: type[ApiError] = Unprocessable) -> ApiError:
    """An error about one request field, named in ``errors``."""
    return cls(f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem(status: int, title: str, detail: str | None = None, *, errors=None,
            headers=None, **extra) -> Response:
    """Build an application/problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status}
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
                       headers=exc.headers, **exc.extra)

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

    from .services.pagination import BadCursor

    @app.errorhandler(BadCursor)
    def _cursor(exc: BadCursor):
        return problem(400, "Bad request", str(exc),
                       errors=[{"field": "query.cursor", "message": str(exc)}])

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
