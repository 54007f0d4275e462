"""The error hierarchy of the API and the domain: each class carries its HTTP status, its
problem type and title (RFC 9457), so ``web.services`` raise them and one app-wide handler
(``web.errors``) turns any of them into the same problem+json answer.

Plain Python on purpose: services raise these without importing the HTTP layer (an
import-linter contract in setup.cfg keeps this module free of Flask and the app).
"""
from __future__ import annotations


class ApiError(Exception):
    """An error with an HTTP status, a problem type and title, and optional field errors."""

    status = 400
    title = "Bad request"
    type = "about:blank"  # the title is the status's own phrase (RFC 9457 section 4.2.1)

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


class Gone(ApiError):
    """The resource existed but may no longer be used."""

    status, title = 410, "Gone"


class ContentTooLarge(ApiError):
    """The request body is larger than the endpoint takes."""

    status, title = 413, "Content too large"


class UnsupportedMediaType(ApiError):
    """The body is not JSON."""

    status, title = 415, "Unsupported media type"


class Unprocessable(ApiError):
    """Well-formed but semantically wrong (unknown codes, bad values)."""

    status, title = 422, "Unprocessable content"


class ServiceUnavailable(ApiError):
    """A backing service (database, broker) is unreachable; retry later with the same key."""

    status, title = 503, "Service unavailable"


def field_error(field: str, message: str, cls: type[ApiError] = Unprocessable) -> ApiError:
    """An error about one request field, named in ``errors``."""
    return cls(f"{field}: {message}", errors=[{"field": field, "message": message}])


class FieldError(Unprocessable):
    """A service refuses the value of one request field (``field``), named in ``errors``.

    The answer is ``field_error``'s; ``str()`` is the message alone, as logs, audit rows and
    the CLI have always shown it.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.args = (message,)
        self.field = field
